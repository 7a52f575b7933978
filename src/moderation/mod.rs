//! Moderation: bans and mutes that are stored, survive restarts and expire by themselves, roles on
//! accounts, and the operator's tools. Each command family is a file of its own that registers its
//! commands, with its usage, permission, parsing and running side by side: [`kick`], [`sanction`]
//! (`ban`, `unban`, `mute`, `unmute`), [`role`], [`operator`] (`list`, `audit`, `backup`), [`ipban`]
//! (`banip`, `unbanip`) and [`allow`] (`allow`, `disallow`, with `--allow-list`).
//!
//! [`Sanctions`] holds, in memory, the bans and mutes in force: loaded before the first tick, read by the
//! tick (chat refuses a muted player, login a banned one) and changed only by a [`Change`]: made here by
//! a command whose job on the commands' store thread found the account, checked that the actor outranks
//! it and stored the change with its audit entry in one transaction ([`Changed`]), or made on another
//! shard ([`ChangedElsewhere`]). Either is enforced the same way (`enforce_changes`): a ban kicks, a
//! mute or a new role tells the player.

pub mod allow;
pub mod ipban;
pub mod kick;
pub mod operator;
pub mod role;
pub mod sanction;

use std::collections::HashMap;
use std::time::Duration;

use bevy::ecs::system::SystemParam;
use bevy::prelude::*;
use serde::{Deserialize, Serialize};

use crate::access::{IpBan, IpNet};
use crate::commands::{Actor, OUTRANKED, Role, Roles};
use crate::db::models::{AuditEntry, SanctionRow};
use crate::db::queries::Moderation;
use crate::db::{self, Database, DbConn, DbPool, queries};
use crate::net::{self, Connection, Outbox};
use crate::players::OnlineAccounts;
use crate::protocol::ServerMessage;
use crate::schedule::ServerSystems;
use crate::time::{format_duration, format_utc, now_ms};

pub(crate) fn plugin(app: &mut App) {
    app.add_message::<Changed>()
        .add_message::<ChangedElsewhere>()
        .add_systems(Update, enforce_changes.in_set(ServerSystems::Commands))
        .add_plugins((
            kick::plugin,
            sanction::plugin,
            role::plugin,
            operator::plugin,
            ipban::plugin,
            allow::plugin,
        ));
}

/// The two kinds of sanction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SanctionKind {
    /// May not log in.
    Ban,
    /// May not chat or whisper.
    Mute,
}

impl SanctionKind {
    /// As stored (the `kind` column) and written in the audit log: `ban`, `mute`.
    pub fn as_str(self) -> &'static str {
        match self {
            SanctionKind::Ban => "ban",
            SanctionKind::Mute => "mute",
        }
    }

    /// As stored; `None` for a kind this build does not know.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "ban" => Some(SanctionKind::Ban),
            "mute" => Some(SanctionKind::Mute),
            _ => None,
        }
    }

    /// `banned`, `muted`.
    pub fn past(self) -> &'static str {
        match self {
            SanctionKind::Ban => "banned",
            SanctionKind::Mute => "muted",
        }
    }
}

/// A ban or a mute in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sanction {
    /// Unix ms; `None` until lifted.
    pub until_ms: Option<u64>,
    pub reason: String,
}

impl Sanction {
    pub fn from_row(row: &SanctionRow) -> Self {
        Self {
            until_ms: row.until_ms.map(|ms| ms.max(0) as u64),
            reason: row.reason.clone(),
        }
    }

    fn in_force(&self, now_ms: u64) -> bool {
        self.until_ms.is_none_or(|until| until > now_ms)
    }

    /// `until 2026-11-22 14:03 UTC` or `until lifted`.
    fn until(&self) -> String {
        match self.until_ms {
            Some(ms) => format!("until {}", format_utc(ms)),
            None => "until lifted".into(),
        }
    }

    fn with_reason(&self, text: String) -> String {
        if self.reason.is_empty() {
            text
        } else {
            format!("{text}: {}", self.reason)
        }
    }

    /// What a banned player is told at login: `You are banned until …: REASON`.
    pub fn banned_text(&self) -> String {
        self.with_reason(format!("You are banned {}", self.until()))
    }

    /// What a muted player is told on chat: `You are muted for 9m 58s: REASON`.
    pub fn muted_text(&self, now_ms: u64) -> String {
        let left = match self.until_ms {
            Some(until) => format!("for {}", format_duration(left(until, now_ms))),
            None => "until a moderator lifts it".into(),
        };
        self.with_reason(format!("You are muted {left}"))
    }
}

/// The time from `now_ms` to `until_ms`, in whole seconds rounded up (a fresh 10-minute mute reads
/// "10m", not "9m 59s").
fn left(until_ms: u64, now_ms: u64) -> Duration {
    Duration::from_secs(until_ms.saturating_sub(now_ms).div_ceil(1000))
}

/// Bans and mutes in force, by account id (see the module docs).
#[derive(Resource, Debug, Default)]
pub struct Sanctions {
    bans: HashMap<i32, Sanction>,
    mutes: HashMap<i32, Sanction>,
}

impl Sanctions {
    /// Reads the bans and mutes in force (once, at start, before the first tick).
    pub fn load(db: &Database) -> Result<Self, String> {
        let now = now_ms() as i64;
        let rows = db::with_connection(db, |conn| queries::active_sanctions(conn, now))?;
        let mut sanctions = Self::default();
        for row in &rows {
            if let Some(kind) = SanctionKind::parse(&row.kind) {
                sanctions
                    .of_mut(kind)
                    .insert(row.account_id, Sanction::from_row(row));
            }
        }
        Ok(sanctions)
    }

    fn of_mut(&mut self, kind: SanctionKind) -> &mut HashMap<i32, Sanction> {
        match kind {
            SanctionKind::Ban => &mut self.bans,
            SanctionKind::Mute => &mut self.mutes,
        }
    }

    /// The account's ban, if in force.
    pub fn ban(&self, account_id: i32) -> Option<&Sanction> {
        self.bans.get(&account_id).filter(|b| b.in_force(now_ms()))
    }

    /// The account's mute, if in force at `now_ms`.
    pub fn mute(&self, account_id: i32, now_ms: u64) -> Option<&Sanction> {
        self.mutes.get(&account_id).filter(|m| m.in_force(now_ms))
    }
}

/// On the commands' store thread: the account called `name`, if `actor` outranks it: its id, display
/// name and role. The error is what the actor is told.
pub fn target(pool: &DbPool, actor: &Actor, name: &str) -> Result<(i32, String, Role), String> {
    let found =
        db::with_conn(pool, |conn| queries::find_account_role(conn, name)).map_err(|error| {
            error!(%error, "cannot look up an account");
            SERVER_ERROR.to_owned()
        })?;
    let (id, name, role) = found.ok_or_else(|| format!("There is no account named {name}"))?;
    let role = Role::parse(&role).unwrap_or_default();
    if !actor.outranks(role) {
        return Err(OUTRANKED.to_owned());
    }
    Ok((id, name, role))
}

/// What a moderator is told when the database failed (logged in full).
pub const SERVER_ERROR: &str = "Server error, nothing was changed";

/// On the commands' store thread: stores `change` with its audit entry in one transaction (for a lift,
/// whether there was something in force). The error is what the actor is told; it is logged in full.
fn store(
    pool: &DbPool,
    actor: &Actor,
    change: Moderation,
    entry: &AuditEntry,
) -> Result<bool, String> {
    write(pool, actor, &entry.action, |conn| {
        queries::moderate(conn, &change, entry)
    })
}

/// On the commands' store thread: runs `query`, a write of the command `action` (its audit entry
/// included). The error is what the actor is told; it is logged in full.
fn write<T>(
    pool: &DbPool,
    actor: &Actor,
    action: &str,
    query: impl FnOnce(&mut DbConn) -> diesel::QueryResult<T>,
) -> Result<T, String> {
    db::with_conn(pool, query).map_err(|error| {
        error!(%error, actor = actor.name(), action, "cannot store a moderation action");
        SERVER_ERROR.to_owned()
    })
}

/// A change to roles and sanctions, applied here and, with `--bus`, sent to the other shards (which
/// apply it the same way: their players are kicked, told, refused alike).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Sanctioned {
        account_id: i32,
        kind: SanctionKind,
        sanction: Sanction,
    },
    Lifted {
        account_id: i32,
        kind: SanctionKind,
    },
    Role {
        account_id: i32,
        role: Role,
    },
    /// An address or a range banned ([`ipban`]).
    IpBanned {
        net: IpNet,
        ban: IpBan,
    },
    /// The ban on exactly this address or range lifted.
    IpUnbanned {
        net: IpNet,
    },
    /// A name put on the allow-list, or taken off it ([`allow`]).
    Allowed {
        name: String,
        allowed: bool,
    },
}

/// A change made on this shard (the bus relays it).
#[derive(Message, Debug, Clone)]
pub struct Changed(pub Change);

/// A change made on another shard (the bus delivers it).
#[derive(Message, Debug, Clone)]
pub struct ChangedElsewhere(pub Change);

/// What applying a change needs.
#[derive(SystemParam)]
struct Enforce<'w, 's> {
    commands: Commands<'w, 's>,
    sanctions: ResMut<'w, Sanctions>,
    roles: ResMut<'w, Roles>,
    online: Res<'w, OnlineAccounts>,
    connections: Query<'w, 's, &'static Connection>,
    server: Outbox<'w>,
}

impl Enforce<'_, '_> {
    /// Updates [`Sanctions`] and [`Roles`] and acts on the account if it plays here: a ban kicks it, a
    /// mute, its lifting or a new role tells it.
    fn apply(&mut self, change: &Change) {
        if let Change::IpBanned { .. } | Change::IpUnbanned { .. } | Change::Allowed { .. } = change
        {
            return; // ipban.rs and allow.rs apply these
        }
        let online_client = |account_id: i32| {
            let entity = self.online.entity(account_id)?;
            Some((entity, self.connections.get(entity).ok()?.client_id))
        };
        let now = now_ms();
        let (account_id, notice) = match change {
            Change::Sanctioned {
                account_id,
                kind: SanctionKind::Ban,
                sanction,
            } => {
                if let Some((entity, client_id)) = online_client(*account_id) {
                    let text = sanction.banned_text();
                    net::kick(
                        &mut self.commands,
                        &mut self.server,
                        entity,
                        client_id,
                        &text,
                    );
                }
                (*account_id, None)
            }
            Change::Sanctioned {
                account_id,
                kind: SanctionKind::Mute,
                sanction,
            } => (*account_id, Some(sanction.muted_text(now))),
            Change::Lifted { account_id, kind } => {
                let was_muted =
                    *kind == SanctionKind::Mute && self.sanctions.mute(*account_id, now).is_some();
                (
                    *account_id,
                    was_muted.then(|| "You may chat again".to_owned()),
                )
            }
            Change::Role { account_id, role } => {
                (*account_id, Some(format!("You are now {}", role.a())))
            }
            Change::IpBanned { .. } | Change::IpUnbanned { .. } | Change::Allowed { .. } => return,
        };
        match change {
            Change::Sanctioned {
                account_id,
                kind,
                sanction,
            } => {
                self.sanctions
                    .of_mut(*kind)
                    .insert(*account_id, sanction.clone());
            }
            Change::Lifted { account_id, kind } => {
                self.sanctions.of_mut(*kind).remove(account_id);
            }
            Change::Role { account_id, role } => self.roles.set(*account_id, *role),
            Change::IpBanned { .. } | Change::IpUnbanned { .. } | Change::Allowed { .. } => {}
        }
        if let (Some(text), Some((_, client_id))) = (notice, online_client(account_id)) {
            net::send(&mut self.server, client_id, &ServerMessage::System { text });
        }
    }
}

/// Applies what moderators did, here or on other shards (see [`Enforce::apply`]).
fn enforce_changes(
    mut here: MessageReader<Changed>,
    mut elsewhere: MessageReader<ChangedElsewhere>,
    mut enforce: Enforce,
) {
    for Changed(change) in here.read() {
        enforce.apply(change);
    }
    for ChangedElsewhere(change) in elsewhere.read() {
        enforce.apply(change);
    }
}
