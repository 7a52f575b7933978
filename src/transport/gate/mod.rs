//! The packet gate: what the transport decides about each datagram before netcode decrypts anything.
//! The netcode thread ([`super::netcode`]) drains the socket as datagrams arrive, whether the tick
//! runs or sleeps (a flood arriving while the tick slept once overflowed the kernel's receive buffer,
//! dropping every player's packets with the flood's), and asks [`GateState::judge`] about each one.
//!
//! What it drops, counting each reason ([`Counters`]):
//! - datagrams no netcode peer would send (wrong length, unknown packet type, a connection request for
//!   another protocol or netcode version, or a packet type the sender's state does not allow);
//! - in token mode (secure netcode), connection requests whose connect token was not sealed with the
//!   server's key: only the server makes tokens, so these are forged (`forged`), and netcode never
//!   holds a pending slot for them;
//! - datagrams over the sender's budget: a token bucket per address (players get more than strangers,
//!   and all strangers together share one more bucket, so many addresses cannot crowd players out);
//! - everything from an address that sent more than twice its budget within a second, for a while
//!   (it is *blocked*; a player's connection is closed).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{KeyInit, Tag, XChaCha20Poly1305, XNonce};
use renetcode::NETCODE_MAX_PACKET_BYTES;

use crate::access::IpBans;
use crate::time::now_ms;
use crate::udp::connection_request as request;

/// The smallest packet netcode decodes: a prefix, one sequence byte and a MAC.
const SMALLEST_PACKET_BYTES: usize = 2 + 16;
/// The latest connection-request expiry accepted, from now: what netcode's client asks for (300 s),
/// plus 10 minutes of clock skew between client and server.
const MAX_EXPIRY_SECS: u64 = request::CLIENT_EXPIRY_SECS + 600;
/// Addresses tracked at once; beyond this, new addresses only share the strangers' bucket.
const MAX_TRACKED: usize = 65_536;
/// An address not heard from for this long is forgotten (unless it is blocked or a player).
const FORGET_AFTER: Duration = Duration::from_secs(10);

/// How much each address may send. See the module docs.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Datagrams a second (and at once) from a connected player's address. A game client sends one
    /// per frame plus resends, so this must stay above the fastest frame rate a client may run at.
    pub per_player: u32,
    /// Datagrams a second (and at once) from any other address: netcode's handshake sends 4 a second.
    pub per_stranger: u32,
    /// Datagrams a second (and at once) from all other addresses together.
    pub strangers: u32,
    /// How long an address that sent more than twice its budget within a second is ignored.
    pub block_for: Duration,
}

/// What netcode tells the gate about an address.
#[derive(Debug, Clone, Copy)]
pub enum Control {
    /// netcode connected a client at this address: it gets a player's budget.
    Connected(SocketAddr),
    /// The client at this address is gone.
    Disconnected(SocketAddr),
}

/// Running totals since the server started; read with [`Counters::snapshot`].
#[derive(Debug, Default)]
pub struct Counters {
    received: AtomicU64,
    malformed: AtomicU64,
    forged: AtomicU64,
    over_budget: AtomicU64,
    blocked: AtomicU64,
    blocks: AtomicU64,
    banned: AtomicU64,
}

/// A copy of [`Counters`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CountersSnapshot {
    /// Datagrams read from the socket; those not dropped were handed to the tick.
    pub received: u64,
    /// Dropped: no netcode peer sends this.
    pub malformed: u64,
    /// Dropped: a connection request not sealed with our key (token mode).
    pub forged: u64,
    /// Dropped: over the sender's budget.
    pub over_budget: u64,
    /// Dropped: the sender is blocked.
    pub blocked: u64,
    /// Times an address was blocked.
    pub blocks: u64,
    /// Dropped: the sender's address is banned (`banip`).
    pub banned: u64,
}

impl CountersSnapshot {
    /// Every datagram dropped, for whatever reason.
    pub fn dropped(&self) -> u64 {
        self.malformed + self.forged + self.over_budget + self.blocked + self.banned
    }
}

impl Counters {
    pub fn snapshot(&self) -> CountersSnapshot {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        CountersSnapshot {
            received: get(&self.received),
            malformed: get(&self.malformed),
            forged: get(&self.forged),
            over_budget: get(&self.over_budget),
            blocked: get(&self.blocked),
            blocks: get(&self.blocks),
            banned: get(&self.banned),
        }
    }

    /// Counts a datagram read from the socket and what was decided about it.
    pub fn record(&self, verdict: Verdict) {
        Self::add(&self.received);
        let counter = match verdict {
            Verdict::Pass => return,
            Verdict::Malformed => &self.malformed,
            Verdict::Forged => &self.forged,
            Verdict::OverBudget => &self.over_budget,
            Verdict::Blocked => &self.blocked,
            Verdict::Banned => &self.banned,
            Verdict::NewlyBlocked { .. } => {
                Self::add(&self.blocks);
                &self.blocked
            }
        };
        Self::add(counter);
    }

    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the gate does with one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Malformed,
    /// From a banned address (`banip`): dropped before anything else looks at it.
    Banned,
    /// A connection request whose token we did not seal (token mode).
    Forged,
    OverBudget,
    Blocked,
    /// Over twice its budget: blocked from now on, for [`Limits::block_for`].
    NewlyBlocked {
        player: bool,
    },
}

/// The gate's decisions, without the socket: what each address may still send.
#[derive(Debug)]
pub struct GateState {
    protocol_id: u64,
    limits: Limits,
    /// Token mode: connect tokens must be sealed with this key.
    token_key: Option<SealKey>,
    addresses: HashMap<SocketAddr, Budget>,
    strangers: Bucket,
    last_sweep: Instant,
    /// Addresses refused outright; players connected from one are kicked by the tick when banned.
    bans: IpBans,
}

/// netcode's private key, ready to open tokens (never printed).
struct SealKey(XChaCha20Poly1305);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(..)")
    }
}

#[derive(Debug)]
struct Budget {
    player: bool,
    bucket: Bucket,
    window_started: Instant,
    dropped_in_window: u32,
    blocked_until: Option<Instant>,
}

impl Budget {
    fn new(player: bool, rate: u32, now: Instant) -> Self {
        Self {
            player,
            bucket: Bucket::full(rate, now),
            window_started: now,
            dropped_in_window: 0,
            blocked_until: None,
        }
    }
}

/// A token bucket: `rate` tokens a second, holding at most `rate`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl Bucket {
    fn full(rate: u32, now: Instant) -> Self {
        Self {
            tokens: f64::from(rate),
            refilled: now,
        }
    }

    fn take(&mut self, rate: u32, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * f64::from(rate)).min(f64::from(rate));
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl GateState {
    pub fn new(protocol_id: u64, limits: Limits) -> Self {
        let now = Instant::now();
        Self {
            protocol_id,
            limits,
            token_key: None,
            addresses: HashMap::new(),
            strangers: Bucket::full(limits.strangers, now),
            last_sweep: now,
            bans: IpBans::default(),
        }
    }

    /// From now on, datagrams from an address `bans` holds are dropped (unless it is a connected
    /// player's: the tick kicks those, with a reason).
    pub fn refusing(mut self, bans: IpBans) -> Self {
        self.bans = bans;
        self
    }

    /// Token mode: from now on, connection requests must carry a token sealed with `key` (netcode's
    /// private key).
    pub fn require_tokens_sealed_with(mut self, key: &[u8; 32]) -> Self {
        self.token_key = Some(SealKey(XChaCha20Poly1305::new(key.into())));
        self
    }

    /// The verdict on a datagram of an acceptable shape that spent its budget: a connection request in
    /// token mode must also open with our key (one AEAD over 1 KiB, about a microsecond, paid only
    /// by requests within their sender's budget).
    fn genuine(&self, bytes: &[u8]) -> Verdict {
        match &self.token_key {
            Some(SealKey(key))
                if bytes[0] & 0x0F == 0 && !sealed_with(key, self.protocol_id, bytes) =>
            {
                Verdict::Forged
            }
            _ => Verdict::Pass,
        }
    }

    pub fn apply(&mut self, change: Control) {
        let now = Instant::now();
        match change {
            Control::Connected(addr) => {
                // A stranger until now (its handshake): keep its block and window, refill as a player.
                let rate = self.limits.per_player;
                let budget = self
                    .addresses
                    .entry(addr)
                    .or_insert_with(|| Budget::new(true, rate, now));
                budget.player = true;
                budget.bucket = Bucket::full(rate, now);
            }
            Control::Disconnected(addr) => {
                if let Some(budget) = self.addresses.get_mut(&addr) {
                    budget.player = false;
                }
            }
        }
    }

    /// Decides what happens to `bytes` from `addr`, spending its budget.
    pub fn judge(&mut self, addr: SocketAddr, bytes: &[u8], now: Instant) -> Verdict {
        self.sweep(now);
        let limits = self.limits;
        let tracked = self.addresses.len() < MAX_TRACKED || self.addresses.contains_key(&addr);
        if !tracked {
            // Too many addresses at once: the newcomers share the strangers' bucket only.
            if !shape_ok(self.protocol_id, bytes, false) {
                return Verdict::Malformed;
            }
            return if self.strangers.take(limits.strangers, now) {
                self.genuine(bytes)
            } else {
                Verdict::OverBudget
            };
        }
        let player = self
            .addresses
            .get(&addr)
            .is_some_and(|budget| budget.player);
        if !player && self.bans.is_banned(addr.ip(), now_ms()) {
            return Verdict::Banned;
        }
        let budget = self
            .addresses
            .entry(addr)
            .or_insert_with(|| Budget::new(false, limits.per_stranger, now));
        if let Some(until) = budget.blocked_until {
            if now < until {
                return Verdict::Blocked;
            }
            budget.blocked_until = None;
        }
        let rate = if budget.player {
            limits.per_player
        } else {
            limits.per_stranger
        };
        let player = budget.player;
        let within = budget.bucket.take(rate, now);
        let within = within && (player || self.strangers.take(limits.strangers, now));
        // The shape is checked after the budget: junk spends budget too, so junk floods get blocked.
        if within {
            return if shape_ok(self.protocol_id, bytes, player) {
                self.genuine(bytes)
            } else {
                Verdict::Malformed
            };
        }
        if now.saturating_duration_since(budget.window_started) >= Duration::from_secs(1) {
            budget.window_started = now;
            budget.dropped_in_window = 0;
        }
        budget.dropped_in_window += 1;
        if budget.dropped_in_window > rate {
            budget.blocked_until = Some(now + limits.block_for);
            budget.dropped_in_window = 0;
            return Verdict::NewlyBlocked { player };
        }
        Verdict::OverBudget
    }

    /// Forgets addresses that went quiet (not players, not blocked), at most once a second.
    fn sweep(&mut self, now: Instant) {
        if now.saturating_duration_since(self.last_sweep) < Duration::from_secs(1) {
            return;
        }
        self.last_sweep = now;
        self.addresses.retain(|_, budget| {
            budget.player
                || budget.blocked_until.is_some_and(|until| until > now)
                || now.saturating_duration_since(budget.bucket.refilled) < FORGET_AFTER
        });
    }

    /// Addresses the gate currently tracks (for tests).
    pub fn tracked(&self) -> usize {
        self.addresses.len()
    }
}

/// Whether netcode could accept `bytes` at all, judged from the length and the first byte: its packet
/// type (low four bits) and sequence length (high four bits). Connected players send keep-alives,
/// payloads and disconnects; others send connection requests (of our protocol) and challenge responses.
pub fn shape_ok(protocol_id: u64, bytes: &[u8], player: bool) -> bool {
    if bytes.len() < SMALLEST_PACKET_BYTES || bytes.len() > NETCODE_MAX_PACKET_BYTES {
        return false;
    }
    let (kind, sequence_bytes) = (bytes[0] & 0x0F, bytes[0] >> 4);
    match kind {
        0 => {
            !player
                && bytes.len() == request::BYTES
                && bytes[request::VERSION] == request::VERSION_INFO[..]
                && bytes[request::PROTOCOL_ID] == protocol_id.to_le_bytes()
                && expiry_plausible(&bytes[request::EXPIRY])
        }
        3 => sequence_bytes <= 8,
        4..=6 => player && sequence_bytes <= 8,
        _ => false,
    }
}

/// Whether the connect token in a connection request (of [`shape_ok`]'s shape) opens with `key`: what
/// netcode checks first, with the same additional data (version, protocol id, expiry).
fn sealed_with(key: &XChaCha20Poly1305, protocol_id: u64, request_bytes: &[u8]) -> bool {
    let Some(sealed) = request_bytes.get(request::TOKEN) else {
        return false;
    };
    let Ok(expiry) = request_bytes[request::EXPIRY].try_into() else {
        return false;
    };
    let additional = request::additional_data(protocol_id, expiry);
    let (sealed_text, tag) = sealed.split_at(sealed.len() - 16);
    // Opened on the stack: this runs for every connection request within its sender's budget.
    let mut text = [0u8; request::BYTES - request::TOKEN.start - 16];
    text.copy_from_slice(sealed_text);
    key.decrypt_in_place_detached(
        XNonce::from_slice(&request_bytes[request::NONCE]),
        &additional,
        &mut text,
        Tag::from_slice(tag),
    )
    .is_ok()
}

/// Whether a connection request's expiry (seconds since the Unix epoch) is no later than a client
/// would set it ([`MAX_EXPIRY_SECS`] allows for clock skew).
/// netcode itself keeps a half-open handshake until its expiry, so a forged far-future one would hold a
/// pending slot for good.
fn expiry_plausible(bytes: &[u8]) -> bool {
    let Ok(bytes) = <[u8; 8]>::try_from(bytes) else {
        return false;
    };
    u64::from_le_bytes(bytes) <= request::unix_secs().saturating_add(MAX_EXPIRY_SECS)
}

#[cfg(test)]
mod tests;
