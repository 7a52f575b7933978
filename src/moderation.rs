//! Moderation: roles on accounts (player, moderator, admin), bans and mutes that are stored, survive
//! restarts and expire by themselves, and the audit log of every moderation action.
//!
//! [`Sanctions`] holds, in memory, the roles that are not `player` and the bans and mutes in force:
//! loaded before the first tick, read by the tick (chat refuses a muted player, login a banned one) and
//! updated only from the outcomes of the [`ModerationStore`] thread, which finds the account, checks
//! that the actor outranks it, and stores the change with its audit entry in one transaction. The
//! commands plugin (`crate::commands`) turns what operators and moderators type into [`Action`]s; the
//! answers come back as [`Reply`] messages, for whoever asked.

use std::collections::HashMap;
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::Duration;

use bevy::ecs::system::SystemParam;
use bevy::prelude::*;
use bevy_renet::RenetServer;
use bevy_renet::renet::ClientId;
use crossbeam_channel::{Receiver, Sender};
use serde::{Deserialize, Serialize};

use crate::db::models::{AuditEntry, SanctionRow};
use crate::db::queries::{self, Moderation};
use crate::db::{self, Database, DbPool};
use crate::net::{self, Connection};
use crate::players::OnlineAccounts;
use crate::protocol::ServerMessage;
use crate::shutdown::ServerStopping;
use crate::time::{format_duration, format_utc, now_ms};

pub(crate) fn plugin(app: &mut App) {
    let pool = app.world().resource::<Database>().0.clone();
    app.insert_resource(ModerationStore::start(pool))
        .add_message::<Reply>()
        .add_message::<Changed>()
        .add_message::<ChangedElsewhere>()
        .add_systems(Update, (apply_outcomes, apply_changes_from_elsewhere))
        .add_observer(flush_store);
}

/// What an account may do. Ordered: a moderator outranks a player, an admin both.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub enum Role {
    #[default]
    Player,
    Moderator,
    Admin,
}

impl Role {
    /// As stored and typed: `player`, `moderator`, `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Player => "player",
            Role::Moderator => "moderator",
            Role::Admin => "admin",
        }
    }

    /// With its article: `a player`, `a moderator`, `an admin`.
    pub fn a(self) -> &'static str {
        match self {
            Role::Player => "a player",
            Role::Moderator => "a moderator",
            Role::Admin => "an admin",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "player" => Some(Role::Player),
            "moderator" | "mod" => Some(Role::Moderator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who runs a command: the operator at the server's console, or a player in chat.
#[derive(Debug, Clone)]
pub enum Actor {
    Console,
    Player {
        entity: Entity,
        client_id: ClientId,
        account_id: i32,
        name: String,
        role: Role,
    },
}

impl Actor {
    /// As the audit log and the players it acts on name it.
    pub fn name(&self) -> &str {
        match self {
            Actor::Console => "console",
            Actor::Player { name, .. } => name,
        }
    }

    /// Whether this actor may act on an account of `role`: the console on anyone, a player only on
    /// lower roles (a moderator on players, an admin on players and moderators).
    pub fn outranks(&self, role: Role) -> bool {
        match self {
            Actor::Console => true,
            Actor::Player { role: mine, .. } => *mine > role,
        }
    }
}

/// The answer to a command, for whoever ran it: the console prints it, a player sees it in chat.
#[derive(Message, Debug, Clone)]
pub struct Reply {
    pub actor: Actor,
    pub answer: Result<String, String>,
}

/// What a moderator refused for rank is told.
pub const OUTRANKED: &str = "You cannot do that to a moderator or an admin";

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

/// Roles and sanctions in force, by account id (see the module docs).
#[derive(Resource, Debug, Default)]
pub struct Sanctions {
    roles: HashMap<i32, Role>,
    bans: HashMap<i32, Sanction>,
    mutes: HashMap<i32, Sanction>,
}

impl Sanctions {
    /// Reads the staff's roles and the bans and mutes in force (once, at start, before the first tick).
    pub fn load(pool: &DbPool) -> Result<Self, String> {
        let now = now_ms() as i64;
        let (staff, rows) = db::with_conn(pool, |conn| {
            Ok((
                queries::staff_roles(conn)?,
                queries::active_sanctions(conn, now)?,
            ))
        })?;
        let mut sanctions = Self::default();
        for (account_id, role) in staff {
            sanctions
                .roles
                .insert(account_id, Role::parse(&role).unwrap_or_default());
        }
        for row in &rows {
            let map = match row.kind.as_str() {
                "ban" => &mut sanctions.bans,
                _ => &mut sanctions.mutes,
            };
            map.insert(row.account_id, Sanction::from_row(row));
        }
        Ok(sanctions)
    }

    pub fn role(&self, account_id: i32) -> Role {
        self.roles.get(&account_id).copied().unwrap_or_default()
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

/// What the store thread is asked to do.
#[derive(Debug, Clone)]
pub enum Action {
    Ban {
        name: String,
        duration: Option<Duration>,
        reason: String,
    },
    Unban {
        name: String,
    },
    Mute {
        name: String,
        duration: Duration,
        reason: String,
    },
    Unmute {
        name: String,
    },
    SetRole {
        name: String,
        role: Role,
    },
    /// Something done on the tick (kick, say, shutdown) that only needs its audit entry.
    Note {
        action: &'static str,
        target: String,
        detail: String,
    },
    /// The `limit` latest audit entries.
    ReadAudit {
        limit: i64,
    },
    /// A consistent copy of the database at `path`.
    Backup {
        path: PathBuf,
    },
}

/// What the store thread did.
#[derive(Debug)]
enum Done {
    Sanctioned {
        account_id: i32,
        name: String,
        kind: &'static str,
        sanction: Sanction,
    },
    Lifted {
        account_id: i32,
        name: String,
        kind: &'static str,
        was_in_force: bool,
    },
    RoleSet {
        account_id: i32,
        name: String,
        role: Role,
    },
    Noted,
    Audit(Vec<AuditEntry>),
    BackedUp {
        path: PathBuf,
        bytes: u64,
    },
}

struct Job {
    actor: Actor,
    action: Action,
}

struct Outcome {
    actor: Actor,
    result: Result<Done, String>,
}

/// The moderation store thread and its channels.
#[derive(Resource)]
pub struct ModerationStore {
    jobs: Option<Sender<Job>>,
    outcomes: Receiver<Outcome>,
    thread: Option<JoinHandle<()>>,
}

impl ModerationStore {
    fn start(pool: DbPool) -> Self {
        let (jobs_tx, jobs) = crossbeam_channel::unbounded::<Job>();
        let (outcomes_tx, outcomes) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name("moderation".into())
            .spawn(move || {
                for Job { actor, action } in jobs {
                    let result = run(&pool, &actor, action);
                    let _ = outcomes_tx.send(Outcome { actor, result });
                }
            })
            .expect("spawning the moderation thread");
        Self {
            jobs: Some(jobs_tx),
            outcomes,
            thread: Some(thread),
        }
    }

    /// Queues `action` on behalf of `actor`; its answer comes back as a [`Reply`].
    pub fn request(&self, actor: Actor, action: Action) {
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(Job { actor, action });
        }
    }

    /// Runs every queued job, then stops the thread.
    fn flush(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            error!("the moderation thread panicked");
        }
    }
}

impl Drop for ModerationStore {
    fn drop(&mut self) {
        self.flush();
    }
}

/// On the store thread: one action, with its rank check and audit entry.
fn run(pool: &DbPool, actor: &Actor, action: Action) -> Result<Done, String> {
    let now = now_ms();
    let audit = |action: &str, target: &str, detail: String| AuditEntry {
        at_ms: now as i64,
        actor: actor.name().to_owned(),
        action: action.to_owned(),
        target: target.to_owned(),
        detail,
    };
    let store = |change: Moderation, entry: AuditEntry| {
        db::with_conn(pool, |conn| queries::moderate(conn, &change, &entry)).map_err(|error| {
            error!(%error, actor = actor.name(), action = entry.action, "cannot store a moderation action");
            "Server error, nothing was changed".to_owned()
        })
    };
    // The account an action is about, if the actor outranks it.
    let target = |name: &str| -> Result<(i32, String, Role), String> {
        let found = db::with_conn(pool, |conn| queries::find_account_role(conn, name)).map_err(
            |error| {
                error!(%error, "cannot look up an account");
                "Server error, nothing was changed".to_owned()
            },
        )?;
        let (id, name, role) = found.ok_or_else(|| format!("There is no account named {name}"))?;
        let role = Role::parse(&role).unwrap_or_default();
        if !actor.outranks(role) {
            return Err(OUTRANKED.to_owned());
        }
        Ok((id, name, role))
    };
    let sanction = |kind: &'static str, name: &str, duration: Option<Duration>, reason: String| {
        let (account_id, name, _) = target(name)?;
        let until_ms = duration.map(|d| now + d.as_millis() as u64);
        let row = SanctionRow {
            account_id,
            kind: kind.to_owned(),
            until_ms: until_ms.map(|ms| ms as i64),
            reason: reason.clone(),
            by_name: actor.name().to_owned(),
            created_at_ms: now as i64,
        };
        let mut detail = match duration {
            Some(d) => format!("for {}", format_duration(d)),
            None => "until lifted".to_owned(),
        };
        if !reason.is_empty() {
            detail += &format!(": {reason}");
        }
        store(Moderation::Sanction(row), audit(kind, &name, detail))?;
        Ok(Done::Sanctioned {
            account_id,
            name,
            kind,
            sanction: Sanction { until_ms, reason },
        })
    };
    let lift = |kind: &'static str, action: &str, name: &str| {
        let (account_id, name, _) = target(name)?;
        let was_in_force = store(
            Moderation::Lift(account_id, kind),
            audit(action, &name, String::new()),
        )?;
        Ok(Done::Lifted {
            account_id,
            name,
            kind,
            was_in_force,
        })
    };
    match action {
        Action::Ban {
            name,
            duration,
            reason,
        } => sanction("ban", &name, duration, reason),
        Action::Mute {
            name,
            duration,
            reason,
        } => sanction("mute", &name, Some(duration), reason),
        Action::Unban { name } => lift("ban", "unban", &name),
        Action::Unmute { name } => lift("mute", "unmute", &name),
        Action::SetRole { name, role } => {
            if !actor.outranks(role) {
                return Err(format!("You cannot make anyone {}", role.a()));
            }
            let (account_id, name, _) = target(&name)?;
            store(
                Moderation::SetRole(account_id, role.as_str()),
                audit("role", &name, role.as_str().to_owned()),
            )?;
            Ok(Done::RoleSet {
                account_id,
                name,
                role,
            })
        }
        Action::Note {
            action,
            target,
            detail,
        } => store(Moderation::Note, audit(action, &target, detail)).map(|_| Done::Noted),
        Action::ReadAudit { limit } => {
            db::with_conn(pool, |conn| queries::recent_audit(conn, limit))
                .map(Done::Audit)
                .map_err(|error| format!("Cannot read the audit log: {error}"))
        }
        Action::Backup { path } => {
            let text = path.to_string_lossy().into_owned();
            if path.exists() {
                return Err(format!("{text} exists already: give a new file"));
            }
            db::with_conn(pool, |conn| queries::backup_into(conn, &text))
                .map_err(|error| format!("Backup to {text} failed: {error}"))?;
            let bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
            store(Moderation::Note, audit("backup", "", text))?;
            Ok(Done::BackedUp { path, bytes })
        }
    }
}

/// A change to roles and sanctions, applied here and, with `--bus`, sent to the other shards (which
/// apply it the same way: their players are kicked, told, refused alike).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Ban {
        account_id: i32,
        sanction: Sanction,
    },
    Mute {
        account_id: i32,
        sanction: Sanction,
    },
    /// `kind`: `ban` or `mute`.
    Lift {
        account_id: i32,
        kind: String,
    },
    Role {
        account_id: i32,
        role: Role,
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
    online: Res<'w, OnlineAccounts>,
    connections: Query<'w, 's, &'static Connection>,
    server: ResMut<'w, RenetServer>,
}

impl Enforce<'_, '_> {
    /// Updates [`Sanctions`] and acts on the account if it plays here: a ban kicks it, a mute, its
    /// lifting or a new role tells it.
    fn apply(&mut self, change: &Change) {
        let online_client = |account_id: i32| {
            let entity = self.online.entity(account_id)?;
            Some((entity, self.connections.get(entity).ok()?.client_id))
        };
        let now = now_ms();
        let (account_id, notice) = match change {
            Change::Ban {
                account_id,
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
                self.sanctions.bans.insert(*account_id, sanction.clone());
                (*account_id, None)
            }
            Change::Mute {
                account_id,
                sanction,
            } => {
                self.sanctions.mutes.insert(*account_id, sanction.clone());
                (*account_id, Some(sanction.muted_text(now)))
            }
            Change::Lift { account_id, kind } => {
                let was_muted = kind == "mute" && self.sanctions.mute(*account_id, now).is_some();
                match kind.as_str() {
                    "ban" => self.sanctions.bans.remove(account_id),
                    _ => self.sanctions.mutes.remove(account_id),
                };
                (
                    *account_id,
                    was_muted.then(|| "You may chat again".to_owned()),
                )
            }
            Change::Role { account_id, role } => {
                match role {
                    Role::Player => self.sanctions.roles.remove(account_id),
                    role => self.sanctions.roles.insert(*account_id, *role),
                };
                (*account_id, Some(format!("You are now {}", role.a())))
            }
        };
        if let (Some(text), Some((_, client_id))) = (notice, online_client(account_id)) {
            net::send(&mut self.server, client_id, &ServerMessage::System { text });
        }
    }
}

/// Applies what the store thread did (see [`Enforce::apply`]) and answers whoever asked.
fn apply_outcomes(
    store: Res<ModerationStore>,
    mut enforce: Enforce,
    mut replies: MessageWriter<Reply>,
    mut changed: MessageWriter<Changed>,
) {
    for Outcome { actor, result } in store.outcomes.try_iter() {
        let answer = result.map(|done| {
            let (change, answer) = describe(&actor, done);
            if let Some(change) = change {
                enforce.apply(&change);
                changed.write(Changed(change));
            }
            answer
        });
        // A note has no answer of its own: the command answered when it ran.
        if answer.as_ref().is_ok_and(String::is_empty) {
            continue;
        }
        replies.write(Reply { actor, answer });
    }
}

/// Applies what moderators on other shards did.
fn apply_changes_from_elsewhere(
    mut changes: MessageReader<ChangedElsewhere>,
    mut enforce: Enforce,
) {
    for ChangedElsewhere(change) in changes.read() {
        enforce.apply(change);
    }
}

/// What a finished job changes, and the answer for whoever asked.
fn describe(actor: &Actor, done: Done) -> (Option<Change>, String) {
    match done {
        Done::Sanctioned {
            account_id,
            name,
            kind: "ban",
            sanction,
        } => {
            info!(by = actor.name(), name, until = ?sanction.until_ms, reason = sanction.reason, "banned");
            let answer = sanction.with_reason(format!("{name} is banned {}", sanction.until()));
            (
                Some(Change::Ban {
                    account_id,
                    sanction,
                }),
                answer,
            )
        }
        Done::Sanctioned {
            account_id,
            name,
            sanction,
            ..
        } => {
            info!(by = actor.name(), name, until = ?sanction.until_ms, reason = sanction.reason, "muted");
            let now = now_ms();
            let left = left(sanction.until_ms.unwrap_or(now), now);
            let answer =
                sanction.with_reason(format!("{name} is muted for {}", format_duration(left)));
            (
                Some(Change::Mute {
                    account_id,
                    sanction,
                }),
                answer,
            )
        }
        Done::Lifted {
            account_id,
            name,
            kind,
            was_in_force,
        } => {
            info!(by = actor.name(), name, kind, "lifted");
            let word = if kind == "ban" { "banned" } else { "muted" };
            let answer = if was_in_force {
                format!("{name} is no longer {word}")
            } else {
                format!("{name} was not {word}")
            };
            let change = Change::Lift {
                account_id,
                kind: kind.to_owned(),
            };
            (Some(change), answer)
        }
        Done::RoleSet {
            account_id,
            name,
            role,
        } => {
            info!(by = actor.name(), name, %role, "role set");
            let answer = format!("{name} is now {}", role.a());
            (Some(Change::Role { account_id, role }), answer)
        }
        Done::Noted => (None, String::new()),
        Done::Audit(entries) => {
            let mut text = format!("{} audit entries, newest first", entries.len());
            for entry in entries {
                text += &format!(
                    "\n  {} {} {} {} {}",
                    format_utc(entry.at_ms.max(0) as u64),
                    entry.actor,
                    entry.action,
                    entry.target,
                    entry.detail
                );
            }
            (None, text)
        }
        Done::BackedUp { path, bytes } => {
            info!(path = %path.display(), bytes, "backed up the database");
            let answer = format!(
                "Backed up the database to {} ({bytes} bytes)",
                path.display()
            );
            (None, answer)
        }
    }
}

fn flush_store(_: On<ServerStopping>, mut store: ResMut<ModerationStore>) {
    store.flush();
}
