//! The operator's tools at the console: `list` (who is online, with role, time connected and address),
//! `audit [N]` (the latest moderation actions) and `backup PATH` (a consistent copy of the live
//! database). Players are refused them.

use std::path::PathBuf;
use std::time::Instant;

use bevy::prelude::*;

use super::store;
use crate::commands::store::audit_entry;
use crate::commands::{
    Actor, AppCommands, Args, Call, CommandSpec, CommandStore, Later, Needs, Outcome, Roles, answer,
};
use crate::db::queries::{self, Moderation};
use crate::db::{self, DbPool};
use crate::net::Connection;
use crate::players::Player;
use crate::time::{format_duration, format_utc};

pub(super) fn plugin(app: &mut App) {
    app.add_command(
        CommandSpec::new(
            "list",
            Needs::Console,
            "list: online players with role, time connected and address",
        ),
        list,
    )
    .add_command(
        CommandSpec::new(
            "audit",
            Needs::Console,
            "audit [N]: the N latest moderation actions (20)",
        ),
        audit,
    )
    .add_command(
        CommandSpec::new(
            "backup",
            Needs::Console,
            "backup PATH: a consistent copy of the live database",
        ),
        backup,
    );
}

/// Most audit entries one `audit` shows.
pub const MAX_AUDIT: i64 = 1_000;

fn list(In(_): In<Call>, players: Query<(&Connection, &Player)>, roles: Res<Roles>) -> Outcome {
    let now = Instant::now();
    let mut rows: Vec<_> = players.iter().collect();
    rows.sort_unstable_by_key(|(_, p)| p.name.to_ascii_lowercase());
    let mut text = format!("{} online", rows.len());
    for (connection, player) in rows {
        let addr = connection
            .addr
            .map_or_else(|| "?".into(), |a| a.to_string());
        text += &format!(
            "\n  {} {} {} {} {}",
            player.name,
            roles.role(player.account_id),
            format_duration(now.saturating_duration_since(connection.connected_at)),
            connection.via,
            addr
        );
    }
    answer(text)
}

/// How many entries `audit` shows: 20, or 1 to [`MAX_AUDIT`].
fn audit_limit(mut args: Args) -> Result<i64, String> {
    let usage = args.usage();
    let Some(word) = args.word() else {
        return Ok(20);
    };
    let limit = word
        .parse::<i64>()
        .ok()
        .filter(|n| (1..=MAX_AUDIT).contains(n));
    args.end()?;
    limit.ok_or(usage)
}

fn audit(In(call): In<Call>, store: Res<CommandStore>) -> Outcome {
    let limit = audit_limit(call.args())?;
    store.later(call.actor.clone(), move |pool, _| read_audit(pool, limit));
    Ok(None)
}

/// On the store thread: the `limit` latest entries, newest first.
fn read_audit(pool: &DbPool, limit: i64) -> Result<Later, String> {
    let entries = db::with_conn(pool, |conn| queries::recent_audit(conn, limit))
        .map_err(|error| format!("Cannot read the audit log: {error}"))?;
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
    Ok(Later::answer(text))
}

fn backup(In(call): In<Call>, store: Res<CommandStore>) -> Outcome {
    let path = PathBuf::from(call.args().text()?);
    store.later(call.actor.clone(), move |pool, actor| {
        back_up(pool, actor, path)
    });
    Ok(None)
}

/// On the store thread: copies the database to `path` (a new file) and records it.
fn back_up(pool: &DbPool, actor: &Actor, path: PathBuf) -> Result<Later, String> {
    let text = path.to_string_lossy().into_owned();
    if path.exists() {
        return Err(format!("{text} exists already: give a new file"));
    }
    db::with_conn(pool, |conn| queries::backup_into(conn, &text))
        .map_err(|error| format!("Backup to {text} failed: {error}"))?;
    let bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
    store(
        pool,
        actor,
        Moderation::Note,
        &audit_entry(actor, "backup", "", text),
    )?;
    info!(path = %path.display(), bytes, "backed up the database");
    Ok(Later::answer(format!(
        "Backed up the database to {} ({bytes} bytes)",
        path.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_shows_twenty_or_what_is_asked_within_bounds() {
        let usage = "audit [N]: the N latest moderation actions (20)";
        assert_eq!(audit_limit(Args::new("", usage)), Ok(20));
        assert_eq!(audit_limit(Args::new(" 5 ", usage)), Ok(5));
        for bad in ["0", "-5", "1001", "x", "5 6"] {
            assert_eq!(
                audit_limit(Args::new(bad, usage)),
                Err(format!("Usage: {usage}")),
                "{bad}"
            );
        }
    }
}
