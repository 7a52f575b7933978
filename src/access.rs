//! Who may come in at all, checked before anything costly (a handshake, a password hash): IP bans
//! ([`IpBans`]: addresses and ranges, IPv4 and IPv6, with an end or none) and the allow-list
//! ([`AllowList`]: with `--allow-list`, only the account names on it may register and log in). Both are
//! shared handles: the UDP gate's thread, the HTTPS endpoint and the tick read the same lists, which
//! moderation's `banip`, `unbanip`, `allow` and `disallow` commands change (`crate::moderation`), here
//! and on every shard.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use bevy::prelude::Resource;
use serde::{Deserialize, Serialize};

use crate::time::format_utc;

/// What a player whose name is not on the allow-list is told.
pub const PRIVATE: &str = "This server is private";

/// An address (`203.0.113.7`, `2001:db8::1`) or a range of them (`203.0.113.0/24`, `2001:db8::/32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IpNet {
    /// The first address of the range (the bits past the prefix are zero).
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` is in the range. An IPv4 address seen through an IPv6 socket (`::ffff:a.b.c.d`)
    /// is the IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                mask(u128::from(u32::from(ip)), 32, self.prefix) == u128::from(u32::from(net))
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask(u128::from(ip), 128, self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }
}

/// `bits` (an address of `width` bits) with everything past `prefix` cleared.
fn mask(bits: u128, width: u8, prefix: u8) -> u128 {
    if prefix == 0 {
        return 0;
    }
    let host = u32::from(width - prefix.min(width));
    bits >> host << host
}

/// `ip`, an IPv4-mapped IPv6 address as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Why text is not an address or a range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} is not an address or a range (such as 203.0.113.7, 203.0.113.0/24 or 2001:db8::/32)")]
pub struct IpNetError(String);

impl FromStr for IpNet {
    type Err = IpNetError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || IpNetError(text.to_owned());
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix.parse::<u8>().map_err(|_| error())?)),
            None => (text, None),
        };
        let addr = canonical(addr.parse::<IpAddr>().map_err(|_| error())?);
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(width);
        if prefix > width {
            return Err(error());
        }
        let addr = match addr {
            IpAddr::V4(v4) => {
                IpAddr::V4((mask(u128::from(u32::from(v4)), 32, prefix) as u32).into())
            }
            IpAddr::V6(v6) => IpAddr::V6(mask(u128::from(v6), 128, prefix).into()),
        };
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let full = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.prefix == full {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

/// A ban on an address or a range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpBan {
    /// Unix ms; `None` until lifted.
    pub until_ms: Option<u64>,
    pub reason: String,
}

impl IpBan {
    fn in_force(&self, now_ms: u64) -> bool {
        self.until_ms.is_none_or(|until| until > now_ms)
    }

    /// What a client from a banned address is told (over HTTPS; UDP gets nothing).
    pub fn text(&self) -> String {
        let until = match self.until_ms {
            Some(ms) => format!("until {}", format_utc(ms)),
            None => "until lifted".to_owned(),
        };
        match self.reason.as_str() {
            "" => format!("This address is banned {until}"),
            reason => format!("This address is banned {until}: {reason}"),
        }
    }
}

/// The IP bans in force (see the module docs). Cheap to clone: the clones share the list.
#[derive(Resource, Clone, Default, Debug)]
pub struct IpBans(Arc<RwLock<BTreeMap<IpNet, IpBan>>>);

impl IpBans {
    /// The ban `ip` is under at `now_ms`, if any (the first range holding it).
    pub fn ban(&self, ip: IpAddr, now_ms: u64) -> Option<IpBan> {
        let bans = self.0.read().unwrap_or_else(|p| p.into_inner());
        if bans.is_empty() {
            return None;
        }
        bans.iter()
            .find(|(net, ban)| net.contains(ip) && ban.in_force(now_ms))
            .map(|(_, ban)| ban.clone())
    }

    /// Whether `ip` is banned at `now_ms` (for the gate: one read lock, nothing copied).
    pub fn is_banned(&self, ip: IpAddr, now_ms: u64) -> bool {
        let bans = self.0.read().unwrap_or_else(|p| p.into_inner());
        !bans.is_empty()
            && bans
                .iter()
                .any(|(net, ban)| net.contains(ip) && ban.in_force(now_ms))
    }

    pub fn insert(&self, net: IpNet, ban: IpBan) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(net, ban);
    }

    /// Lifts the ban on exactly `net`; whether there was one.
    pub fn remove(&self, net: &IpNet) -> bool {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(net)
            .is_some()
    }
}

/// The allow-list (see the module docs): `None` without `--allow-list` (everyone may come in), else the
/// lowercase names allowed. Cheap to clone: the clones share the list.
#[derive(Resource, Clone, Default, Debug)]
pub struct AllowList(Arc<RwLock<Option<HashSet<String>>>>);

impl AllowList {
    /// An allow-list in force, holding `names`.
    pub fn enforced(names: impl IntoIterator<Item = String>) -> Self {
        let names = names.into_iter().map(|n| n.to_ascii_lowercase()).collect();
        Self(Arc::new(RwLock::new(Some(names))))
    }

    /// Whether the account called `name` (any case) may register and log in.
    pub fn admits(&self, name: &str) -> bool {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_none_or(|names| names.contains(&name.to_ascii_lowercase()))
    }

    /// Whether the list is in force (`--allow-list`).
    pub fn is_enforced(&self) -> bool {
        self.0.read().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// Adds or removes `name` (kept even while the list is not in force: it is stored either way).
    pub fn set(&self, name: &str, allowed: bool) {
        if let Some(names) = self.0.write().unwrap_or_else(|p| p.into_inner()).as_mut() {
            if allowed {
                names.insert(name.to_ascii_lowercase());
            } else {
                names.remove(&name.to_ascii_lowercase());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> IpNet {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ranges_hold_what_their_prefix_says_in_both_families() {
        assert!(net("203.0.113.0/24").contains(ip("203.0.113.200")));
        assert!(!net("203.0.113.0/24").contains(ip("203.0.114.1")));
        assert!(net("203.0.113.7").contains(ip("203.0.113.7")));
        assert!(!net("203.0.113.7").contains(ip("203.0.113.8")));
        assert!(net("0.0.0.0/0").contains(ip("8.8.8.8")));
        assert!(net("2001:db8::/32").contains(ip("2001:db8:ffff::1")));
        assert!(!net("2001:db8::/32").contains(ip("2001:db9::1")));
        assert!(net("::1").contains(ip("::1")));
        assert!(!net("::1").contains(ip("127.0.0.1")), "families never mix");
        // An IPv4 client seen through an IPv6 socket is the IPv4 address.
        assert!(net("127.0.0.0/8").contains(ip("::ffff:127.0.0.1")));
        assert_eq!(
            net("10.1.2.3/8").to_string(),
            "10.0.0.0/8",
            "host bits cleared"
        );
        assert_eq!(net("2001:db8::1/128").to_string(), "2001:db8::1");
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "host.example",
            "1.2.3.4/x",
        ] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn bans_hold_until_they_end_or_are_lifted() {
        let bans = IpBans::default();
        assert!(!bans.is_banned(ip("10.0.0.1"), 0));
        bans.insert(
            net("10.0.0.0/8"),
            IpBan {
                until_ms: Some(1_000),
                reason: "spam".into(),
            },
        );
        assert!(bans.is_banned(ip("10.9.9.9"), 999));
        assert!(!bans.is_banned(ip("10.9.9.9"), 1_000), "over");
        assert!(
            bans.ban(ip("10.0.0.1"), 0)
                .unwrap()
                .text()
                .ends_with(": spam")
        );
        assert!(bans.remove(&net("10.0.0.0/8")));
        assert!(!bans.is_banned(ip("10.9.9.9"), 0));
    }

    #[test]
    fn the_allow_list_admits_everyone_until_it_is_enforced() {
        let open = AllowList::default();
        assert!(open.admits("anyone"));
        let list = AllowList::enforced(["Alice".to_owned()]);
        assert!(list.admits("ALICE") && !list.admits("bob"));
        list.set("Bob", true);
        assert!(list.admits("bob"));
        list.set("alice", false);
        assert!(!list.admits("Alice"));
    }
}
