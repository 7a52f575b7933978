//! `--copy-to DB`: copies every row of the database at `--db` into another, SQLite to PostgreSQL when a
//! game outgrows one machine (or back, or SQLite to SQLite). Both are migrated first; the target must
//! hold no account. Every table is copied with its ids, in one transaction on the target (all or
//! nothing), then PostgreSQL's id sequences are moved past the copied ids so new rows do not collide.
//! The source is read table by table: stop the server first, or copy from a `backup`.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;

use super::models::{SanctionRow, SavedPosition};
use super::schema::{accounts, audit_log, chat_messages, positions, sanctions, sessions};
use super::{DbConn, Manager, migrate};
use crate::config::DbLocation;
use crate::on_backend;

/// Rows read and written at a time.
const BATCH: i64 = 1_000;

/// Why a copy stopped (nothing is left in the target when it does).
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("cannot open {location}: {detail}")]
    Open {
        location: DbLocation,
        detail: String,
    },
    #[error("{0} already has accounts: copy into a new or empty database")]
    NotEmpty(DbLocation),
    #[error("copying {table}: {source}")]
    Table {
        table: &'static str,
        source: diesel::result::Error,
    },
}

/// Every column of an account.
#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = accounts)]
struct AccountRow {
    id: i32,
    username: String,
    username_key: String,
    password_hash: String,
    created_at_ms: i64,
    role: String,
}

/// Every column of a session.
#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = sessions)]
struct SessionRow {
    id: i32,
    account_id: i32,
    token_hash: String,
    created_at_ms: i64,
    expires_at_ms: i64,
    last_used_at_ms: i64,
}

/// Every column of a chat line.
#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = chat_messages)]
struct ChatRow {
    id: i32,
    account_id: i32,
    sender: String,
    body: String,
    sent_at_ms: i64,
}

/// Every column of an audit entry.
#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = audit_log)]
struct AuditRow {
    id: i32,
    at_ms: i64,
    actor: String,
    action: String,
    target: String,
    detail: String,
}

/// Copies `$table`'s rows (`$row`, ordered by the integer column `$key`, field `$field`) from `$from`
/// to `$to`, [`BATCH`] at a time; how many.
macro_rules! copy_rows {
    ($from:expr, $to:expr, $table:ident, $row:ty, $key:expr, $field:ident) => {{
        let table = stringify!($table);
        let fail = |source| CopyError::Table { table, source };
        let mut copied = 0;
        let mut last = i32::MIN;
        loop {
            let rows: Vec<$row> = on_backend!(&mut *$from, c => $table::table
                .filter($key.gt(last))
                .order($key)
                .limit(BATCH)
                .select(<$row>::as_select())
                .load(c))
            .map_err(fail)?;
            let Some(end) = rows.last() else { break };
            last = end.$field;
            on_backend!(&mut *$to, c => diesel::insert_into($table::table).values(&rows).execute(c))
                .map_err(fail)?;
            copied += rows.len();
        }
        tracing::info!(table, rows = copied, "copied");
        (table, copied)
    }};
}

/// Copies everything in `from` into `to`; how many rows of each table.
pub fn copy(from: &DbLocation, to: &DbLocation) -> Result<Vec<(&'static str, usize)>, CopyError> {
    let open = |location: &DbLocation| {
        let error = |detail: String| CopyError::Open {
            location: location.clone(),
            detail,
        };
        let mut conn = Manager::connect_to(location).map_err(|e| error(e.to_string()))?;
        migrate(&mut conn).map_err(|e| error(e.to_string()))?;
        Ok::<_, CopyError>(conn)
    };
    let mut source = open(from)?;
    let mut target = open(to)?;
    let accounts_there: i64 = on_backend!(&mut target, c => accounts::table.count().get_result(c))
        .map_err(|source| CopyError::Table {
            table: "accounts",
            source,
        })?;
    if accounts_there > 0 {
        return Err(CopyError::NotEmpty(to.clone()));
    }
    // By hand rather than diesel's transaction: its body reads another connection of either backend.
    let begin = match target {
        DbConn::Sqlite(_) => "BEGIN IMMEDIATE",
        #[cfg(feature = "postgres")]
        DbConn::Postgres(_) => "BEGIN",
    };
    let statement = |conn: &mut DbConn, sql: &str| {
        on_backend!(conn, c => c.batch_execute(sql)).map_err(|source| CopyError::Table {
            table: "(transaction)",
            source,
        })
    };
    statement(&mut target, begin)?;
    let copied = copy_tables(&mut source, &mut target);
    match copied {
        Ok(counts) => {
            statement(&mut target, "COMMIT")?;
            reset_sequences(&mut target)?;
            Ok(counts)
        }
        Err(error) => {
            let _ = statement(&mut target, "ROLLBACK");
            Err(error)
        }
    }
}

/// Every table, parents (accounts) first.
fn copy_tables(
    from: &mut DbConn,
    to: &mut DbConn,
) -> Result<Vec<(&'static str, usize)>, CopyError> {
    Ok(vec![
        copy_rows!(from, to, accounts, AccountRow, accounts::id, id),
        copy_rows!(from, to, sessions, SessionRow, sessions::id, id),
        copy_rows!(
            from,
            to,
            positions,
            SavedPosition,
            positions::account_id,
            account_id
        ),
        copy_rows!(from, to, chat_messages, ChatRow, chat_messages::id, id),
        copy_rows!(from, to, audit_log, AuditRow, audit_log::id, id),
        // At most one ban and one mute per account: by account, both kinds in one batch.
        copy_sanctions(from, to)?,
    ])
}

/// The sanctions, whose key is (account, kind).
fn copy_sanctions(from: &mut DbConn, to: &mut DbConn) -> Result<(&'static str, usize), CopyError> {
    let fail = |source| CopyError::Table {
        table: "sanctions",
        source,
    };
    let rows: Vec<SanctionRow> = on_backend!(from, c => sanctions::table
        .order((sanctions::account_id, sanctions::kind))
        .select(SanctionRow::as_select())
        .load(c))
    .map_err(fail)?;
    for chunk in rows.chunks(BATCH as usize) {
        on_backend!(&mut *to, c => diesel::insert_into(sanctions::table).values(chunk).execute(c))
            .map_err(fail)?;
    }
    tracing::info!(table = "sanctions", rows = rows.len(), "copied");
    Ok(("sanctions", rows.len()))
}

/// On PostgreSQL, moves each id sequence past the highest id copied (the rows came with their ids, so
/// the sequences never moved).
fn reset_sequences(to: &mut DbConn) -> Result<(), CopyError> {
    #[cfg(feature = "postgres")]
    if let DbConn::Postgres(conn) = to {
        for table in ["accounts", "sessions", "chat_messages", "audit_log"] {
            conn.batch_execute(&format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), \
                 (SELECT COALESCE(MAX(id), 0) + 1 FROM {table}), false)"
            ))
            .map_err(|source| CopyError::Table { table, source })?;
        }
    }
    #[cfg(not(feature = "postgres"))]
    let _ = to;
    Ok(())
}
