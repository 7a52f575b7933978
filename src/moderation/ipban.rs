//! `banip ADDR|RANGE [DURATION] [REASON]` and `unbanip ADDR|RANGE`: bans on addresses and ranges
//! (`203.0.113.7`, `203.0.113.0/24`, `2001:db8::/32`), for the player who makes account after account.
//! Stored with their audit entry (the `ip_bans` table), loaded at start, held on every shard (a
//! [`Change`]), and enforced before anything costly: the UDP gate drops a banned address's datagrams
//! before netcode reads them, the HTTPS endpoint answers it 403 before any handler, and players already
//! connected from it are kicked.

use std::time::Duration;

use bevy::prelude::*;
use diesel::prelude::*;

use super::{Change, Changed, ChangedElsewhere, write};
use crate::access::{IpBan, IpBans, IpNet};
use crate::commands::store::audit_entry;
use crate::commands::{
    Actor, AppCommands, Args, Call, CommandSpec, CommandStore, Later, Needs, Outcome,
};
use crate::db::models::AuditEntry;
use crate::db::schema::{audit_log, ip_bans};
use crate::db::{self, Database, DbConn, DbPool};
use crate::net::{self, Connection, Outbox};
use crate::schedule::ServerSystems;
use crate::time::{format_duration, now_ms};
use crate::{on_backend, write_transaction};

pub(super) fn plugin(app: &mut App) {
    app.add_systems(Update, enforce.in_set(ServerSystems::Commands))
        .add_command(
            CommandSpec::new(
                "banip",
                Needs::Moderator,
                "banip ADDRESS|RANGE [DURATION] [REASON]: refuse an address (203.0.113.7) or a range (203.0.113.0/24, 2001:db8::/32)",
            ),
            banip,
        )
        .add_command(
            CommandSpec::new("unbanip", Needs::Moderator, "unbanip ADDRESS|RANGE"),
            unbanip,
        );
}

/// A ban as the `ip_bans` table keeps it.
#[derive(Queryable, Selectable, Insertable, AsChangeset, Debug, Clone, PartialEq, Eq)]
#[diesel(table_name = ip_bans)]
#[diesel(treat_none_as_null = true)]
pub struct IpBanRow {
    pub network: String,
    pub until_ms: Option<i64>,
    pub reason: String,
    pub by_name: String,
    pub created_at_ms: i64,
}

/// The bans in force (once, at start, before the first tick; expired ones are deleted on the way).
pub fn load(db: &Database) -> Result<IpBans, String> {
    let now = now_ms() as i64;
    let rows: Vec<IpBanRow> = db::with_connection(db, |conn| {
        write_transaction!(conn, c => {
            diesel::delete(ip_bans::table.filter(ip_bans::until_ms.le(now))).execute(c)?;
            ip_bans::table.select(IpBanRow::as_select()).load(c)
        })
    })?;
    let bans = IpBans::default();
    for row in rows {
        // A row this build cannot read (written by hand) is skipped rather than stopping the start.
        if let Ok(net) = row.network.parse::<IpNet>() {
            bans.insert(
                net,
                IpBan {
                    until_ms: row.until_ms.map(|ms| ms.max(0) as u64),
                    reason: row.reason,
                },
            );
        }
    }
    Ok(bans)
}

/// A parsed `banip`.
#[derive(Debug, PartialEq)]
struct BanIp {
    net: IpNet,
    duration: Option<Duration>,
    reason: String,
}

impl BanIp {
    fn parse(mut args: Args) -> Result<Self, String> {
        let net = args
            .required()?
            .parse::<IpNet>()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            net,
            duration: args.optional_duration(),
            reason: args.rest(),
        })
    }

    /// On the store thread: stores the ban with its audit entry; the tick then enforces it.
    fn run(self, pool: &DbPool, actor: &Actor) -> Result<Later, String> {
        let now = now_ms();
        let until_ms = self.duration.map(|d| now + d.as_millis() as u64);
        let row = IpBanRow {
            network: self.net.to_string(),
            until_ms: until_ms.map(|ms| ms as i64),
            reason: self.reason.clone(),
            by_name: actor.name().to_owned(),
            created_at_ms: now as i64,
        };
        let mut detail = match self.duration {
            Some(d) => format!("for {}", format_duration(d)),
            None => "until lifted".to_owned(),
        };
        if !self.reason.is_empty() {
            detail += &format!(": {}", self.reason);
        }
        let entry = audit_entry(actor, "banip", &row.network, detail);
        write(pool, actor, "banip", |conn| store_ban(conn, &row, &entry))?;
        info!(by = actor.name(), network = row.network, until = ?until_ms, reason = self.reason, "address banned");
        let ban = IpBan {
            until_ms,
            reason: self.reason,
        };
        let until = match until_ms {
            Some(_) => format!("for {}", format_duration(self.duration.unwrap_or_default())),
            None => "until lifted".to_owned(),
        };
        let answer = format!("{} is banned {until}", self.net);
        let change = Change::IpBanned { net: self.net, ban };
        Ok(Later::answer(answer).then_write(Changed(change)))
    }
}

/// Stores `row` (replacing a ban on the same network) and its audit entry, in one transaction.
fn store_ban(conn: &mut DbConn, row: &IpBanRow, entry: &AuditEntry) -> QueryResult<()> {
    write_transaction!(conn, c => {
        diesel::insert_into(ip_bans::table)
            .values(row)
            .on_conflict(ip_bans::network)
            .do_update()
            .set(row)
            .execute(c)?;
        diesel::insert_into(audit_log::table).values(entry).execute(c)?;
        Ok(())
    })
}

/// Deletes the ban on `network` and stores the audit entry; whether there was one.
fn delete_ban(conn: &mut DbConn, network: &str, entry: &AuditEntry) -> QueryResult<bool> {
    write_transaction!(conn, c => {
        let deleted = diesel::delete(ip_bans::table.find(network)).execute(c)?;
        diesel::insert_into(audit_log::table).values(entry).execute(c)?;
        Ok(deleted > 0)
    })
}

fn banip(In(call): In<Call>, store: Res<CommandStore>) -> Outcome {
    let ban = BanIp::parse(call.args())?;
    store.later(call.actor.clone(), move |pool, actor| ban.run(pool, actor));
    Ok(None)
}

fn unbanip(In(call): In<Call>, store: Res<CommandStore>) -> Outcome {
    let mut args = call.args();
    let net = args
        .required()?
        .parse::<IpNet>()
        .map_err(|e| e.to_string())?;
    args.end()?;
    store.later(call.actor.clone(), move |pool, actor| {
        let network = net.to_string();
        let entry = audit_entry(actor, "unbanip", &network, String::new());
        let was = write(pool, actor, "unbanip", |conn| {
            delete_ban(conn, &network, &entry)
        })?;
        info!(by = actor.name(), network, "address unbanned");
        let answer = match was {
            true => format!("{net} is no longer banned"),
            false => format!("{net} was not banned"),
        };
        Ok(Later::answer(answer).then_write(Changed(Change::IpUnbanned { net })))
    });
    Ok(None)
}

/// Applies bans made here or on other shards: the list the gate and the HTTPS endpoint read, and a
/// kick for every connection from a banned address.
fn enforce(
    mut here: MessageReader<Changed>,
    mut elsewhere: MessageReader<ChangedElsewhere>,
    bans: Res<IpBans>,
    connections: Query<(Entity, &Connection)>,
    mut commands: Commands,
    mut server: Outbox,
) {
    let changes = here
        .read()
        .map(|c| &c.0)
        .chain(elsewhere.read().map(|c| &c.0));
    for change in changes {
        match change {
            Change::IpBanned { net, ban } => {
                bans.insert(*net, ban.clone());
                for (entity, connection) in &connections {
                    let from = connection.addr;
                    if from.is_some_and(|addr| net.contains(addr.ip())) {
                        let text = ban.text();
                        net::kick(
                            &mut commands,
                            &mut server,
                            entity,
                            connection.client_id,
                            &text,
                        );
                    }
                }
            }
            Change::IpUnbanned { net } => {
                bans.remove(net);
            }
            _ => {}
        }
    }
}

/// The bans in the database (for tests and tools).
pub fn stored(conn: &mut DbConn) -> QueryResult<Vec<IpBanRow>> {
    on_backend!(conn, c => ip_bans::table
        .order(ip_bans::network)
        .select(IpBanRow::as_select())
        .load(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banip_takes_an_address_or_a_range_then_maybe_a_duration_and_a_reason() {
        let usage = "banip ADDRESS|RANGE [DURATION] [REASON]";
        let ban = BanIp::parse(Args::new("203.0.113.0/24 2h alt accounts", usage)).unwrap();
        assert_eq!(ban.net.to_string(), "203.0.113.0/24");
        assert_eq!(ban.duration, Some(Duration::from_secs(7_200)));
        assert_eq!(ban.reason, "alt accounts");
        let forever = BanIp::parse(Args::new("2001:db8::1 spam", usage)).unwrap();
        assert_eq!((forever.duration, forever.reason.as_str()), (None, "spam"));
        assert_eq!(
            BanIp::parse(Args::new("", usage)),
            Err(format!("Usage: {usage}"))
        );
        assert!(
            BanIp::parse(Args::new("example.com", usage))
                .unwrap_err()
                .starts_with("example.com is not an address or a range")
        );
    }
}
