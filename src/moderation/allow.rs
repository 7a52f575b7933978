//! The allow-list, for a private server: with `--allow-list`, only the account names on it may register
//! and log in; everyone else is told "This server is private" before any password is hashed. `allow
//! NAME` puts a name on it (before its account exists, if need be: friends register themselves), and
//! `disallow NAME` takes it off (and kicks that player, with the list in force). Stored with their
//! audit entry (the `allow_list` table), held on every shard (a [`Change`]).

use bevy::prelude::*;
use diesel::prelude::*;

use super::{Change, Changed, ChangedElsewhere, write};
use crate::access::{AllowList, PRIVATE};
use crate::commands::store::audit_entry;
use crate::commands::{
    Actor, AppCommands, Args, Call, CommandSpec, CommandStore, Later, Needs, Outcome,
};
use crate::db::models::AuditEntry;
use crate::db::queries::username_key;
use crate::db::schema::{allow_list, audit_log};
use crate::db::{self, Database, DbConn, DbPool};
use crate::net::{self, Connection, Outbox};
use crate::players::Player;
use crate::schedule::ServerSystems;
use crate::write_transaction;

pub(super) fn plugin(app: &mut App) {
    app.add_systems(Update, enforce.in_set(ServerSystems::Commands))
        .add_command(
            CommandSpec::new(
                "allow",
                Needs::Moderator,
                "allow NAME: let NAME register and log in while the allow-list is in force",
            ),
            allow,
        )
        .add_command(
            CommandSpec::new("disallow", Needs::Moderator, "disallow NAME"),
            disallow,
        );
}

/// The allow-list: in force (with what the `allow_list` table holds) when `enforced`, else open.
pub fn load(db: &Database, enforced: bool) -> Result<AllowList, String> {
    if !enforced {
        return Ok(AllowList::default());
    }
    let names: Vec<String> = db::with_connection(
        db,
        |conn| crate::on_backend!(conn, c => allow_list::table.select(allow_list::username_key).load(c)),
    )?;
    Ok(AllowList::enforced(names))
}

/// Puts `name` on the list (or takes it off) with its audit entry, in one transaction; whether the
/// list changed.
fn store(conn: &mut DbConn, name: &str, allowed: bool, entry: &AuditEntry) -> QueryResult<bool> {
    let key = username_key(name);
    write_transaction!(conn, c => {
        let changed = if allowed {
            diesel::insert_into(allow_list::table)
                .values((
                    allow_list::username_key.eq(&key),
                    allow_list::by_name.eq(&entry.actor),
                    allow_list::created_at_ms.eq(entry.at_ms),
                ))
                .on_conflict(allow_list::username_key)
                .do_nothing()
                .execute(c)?
        } else {
            diesel::delete(allow_list::table.find(&key)).execute(c)?
        };
        diesel::insert_into(audit_log::table).values(entry).execute(c)?;
        Ok(changed > 0)
    })
}

/// On the store thread: `allow` or `disallow` `name`.
fn run(pool: &DbPool, actor: &Actor, name: String, allowed: bool) -> Result<Later, String> {
    let action = if allowed { "allow" } else { "disallow" };
    let entry = audit_entry(actor, action, &name, String::new());
    let changed = write(pool, actor, action, |conn| {
        store(conn, &name, allowed, &entry)
    })?;
    info!(by = actor.name(), name, allowed, "allow-list changed");
    let answer = match (allowed, changed) {
        (true, true) => format!("{name} may log in"),
        (true, false) => format!("{name} was allowed already"),
        (false, true) => format!("{name} may no longer log in"),
        (false, false) => format!("{name} was not on the allow-list"),
    };
    Ok(Later::answer(answer).then_write(Changed(Change::Allowed { name, allowed })))
}

/// The name `allow` and `disallow` are about.
fn name(mut args: Args) -> Result<String, String> {
    let name = args.name()?;
    args.end()?;
    Ok(name)
}

fn allow(In(call): In<Call>, store: Res<CommandStore>) -> Outcome {
    let name = name(call.args())?;
    store.later(call.actor.clone(), move |pool, actor| {
        run(pool, actor, name, true)
    });
    Ok(None)
}

fn disallow(In(call): In<Call>, store: Res<CommandStore>) -> Outcome {
    let name = name(call.args())?;
    store.later(call.actor.clone(), move |pool, actor| {
        run(pool, actor, name, false)
    });
    Ok(None)
}

/// Applies allow-list changes made here or on other shards; a player taken off a list in force is
/// kicked.
fn enforce(
    mut here: MessageReader<Changed>,
    mut elsewhere: MessageReader<ChangedElsewhere>,
    list: Res<AllowList>,
    players: Query<(Entity, &Connection, &Player)>,
    mut commands: Commands,
    mut server: Outbox,
) {
    let changes = here
        .read()
        .map(|c| &c.0)
        .chain(elsewhere.read().map(|c| &c.0));
    for change in changes {
        let Change::Allowed { name, allowed } = change else {
            continue;
        };
        list.set(name, *allowed);
        if list.admits(name) {
            continue;
        }
        for (entity, connection, player) in &players {
            if player.name.eq_ignore_ascii_case(name) {
                net::kick(
                    &mut commands,
                    &mut server,
                    entity,
                    connection.client_id,
                    PRIVATE,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_takes_one_player_name() {
        let usage = "allow NAME";
        assert_eq!(name(Args::new("Bob", usage)), Ok("Bob".into()));
        assert_eq!(name(Args::new("", usage)), Err("Usage: allow NAME".into()));
        assert_eq!(
            name(Args::new("bob carol", usage)),
            Err("Usage: allow NAME".into())
        );
        assert_eq!(
            name(Args::new("../x", usage)),
            Err("../x is not a player name".into())
        );
    }
}
