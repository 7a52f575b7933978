//! The core's queries: accounts, sessions, chat history, positions, moderation. A gameplay plugin keeps
//! its own queries in its own file (docs/extending.md, section 6). Each takes a connection, so it runs
//! wherever the caller is: always a worker thread, never the tick.

use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use super::DbConn;
use super::models::{
    Account, AuditEntry, ChatMessage, NewAccount, NewSession, SanctionRow, SavedPosition,
};
use super::schema::{accounts, audit_log, chat_messages, positions, sanctions, sessions};
use crate::{on_backend, write_transaction};

/// The key an account name is unique under: its lowercase form.
pub fn username_key(username: &str) -> String {
    username.to_ascii_lowercase()
}

/// Why an account could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateAccountError {
    #[error("username is taken")]
    Taken,
    #[error(transparent)]
    Db(#[from] DieselError),
}

/// Inserts an account; the row is committed when this returns `Ok`.
pub fn create_account(
    conn: &mut DbConn,
    username: &str,
    password_hash: &str,
    now_ms: i64,
) -> Result<Account, CreateAccountError> {
    let key = username_key(username);
    let row = NewAccount {
        username,
        username_key: &key,
        password_hash,
        created_at_ms: now_ms,
    };
    on_backend!(conn, conn => diesel::insert_into(accounts::table)
        .values(&row)
        .returning(Account::as_returning())
        .get_result(conn))
    .map_err(|e| match e {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
            CreateAccountError::Taken
        }
        e => CreateAccountError::Db(e),
    })
}

/// Finds an account by name, whatever its case.
pub fn find_account(conn: &mut DbConn, username: &str) -> QueryResult<Option<Account>> {
    on_backend!(conn, conn => accounts::table
        .filter(accounts::username_key.eq(username_key(username)))
        .select(Account::as_select())
        .first(conn)
        .optional())
}

/// Replaces an account's password hash and revokes every session of it, in one transaction.
pub fn change_password(conn: &mut DbConn, account_id: i32, password_hash: &str) -> QueryResult<()> {
    write_transaction!(conn, conn => {
        diesel::update(accounts::table.find(account_id))
            .set(accounts::password_hash.eq(password_hash))
            .execute(conn)?;
        diesel::delete(sessions::table.filter(sessions::account_id.eq(account_id)))
            .execute(conn)?;
        Ok(())
    })
}

/// Stores a new session (committed when this returns `Ok`).
pub fn create_session(conn: &mut DbConn, session: &NewSession) -> QueryResult<()> {
    on_backend!(conn, conn => diesel::insert_into(sessions::table)
        .values(session)
        .execute(conn))
    .map(|_| ())
}

/// The account of the unexpired session with this token hash, marking the session used now. Expired
/// sessions of any account are deleted on the way (an indexed range, usually empty).
pub fn use_session(
    conn: &mut DbConn,
    token_hash: &str,
    now_ms: i64,
) -> QueryResult<Option<(Account, i64)>> {
    write_transaction!(conn, conn => {
        diesel::delete(sessions::table.filter(sessions::expires_at_ms.le(now_ms))).execute(conn)?;
        let found = sessions::table
            .inner_join(accounts::table)
            .filter(sessions::token_hash.eq(token_hash))
            .filter(sessions::expires_at_ms.gt(now_ms))
            .select((sessions::id, Account::as_select(), sessions::expires_at_ms))
            .first::<(i32, Account, i64)>(conn)
            .optional()?;
        let Some((id, account, expires_at_ms)) = found else {
            return Ok(None);
        };
        diesel::update(sessions::table.find(id))
            .set(sessions::last_used_at_ms.eq(now_ms))
            .execute(conn)?;
        Ok(Some((account, expires_at_ms)))
    })
}

/// Deletes the session with this token hash; whether there was one.
pub fn delete_session(conn: &mut DbConn, token_hash: &str) -> QueryResult<bool> {
    on_backend!(conn, conn => diesel::delete(sessions::table.filter(sessions::token_hash.eq(token_hash)))
        .execute(conn))
        .map(|n| n > 0)
}

/// Stores a batch of chat lines in one transaction.
pub fn insert_chat_messages(conn: &mut DbConn, lines: &[ChatMessage]) -> QueryResult<usize> {
    write_transaction!(conn, conn => {
        diesel::insert_into(chat_messages::table)
            .values(lines)
            .execute(conn)
    })
}

/// Deletes at most `batch` chat lines said before `before_ms` (the oldest first), in one short
/// transaction; how many it deleted. Called until it deletes fewer than `batch`, so the database is
/// never locked for long.
pub fn prune_chat_messages(conn: &mut DbConn, before_ms: i64, batch: i64) -> QueryResult<usize> {
    write_transaction!(conn, conn => {
        let oldest: Vec<i32> = chat_messages::table
            .filter(chat_messages::sent_at_ms.lt(before_ms))
            .order(chat_messages::id.asc())
            .limit(batch)
            .select(chat_messages::id)
            .load(conn)?;
        diesel::delete(chat_messages::table.filter(chat_messages::id.eq_any(oldest))).execute(conn)
    })
}

/// The `limit` most recent chat lines said at `since_ms` or later, oldest first.
pub fn recent_chat_messages(
    conn: &mut DbConn,
    limit: i64,
    since_ms: i64,
) -> QueryResult<Vec<ChatMessage>> {
    let mut lines: Vec<ChatMessage> = on_backend!(conn, conn => chat_messages::table
        .filter(chat_messages::sent_at_ms.ge(since_ms))
        .order(chat_messages::id.desc())
        .limit(limit)
        .select(ChatMessage::as_select())
        .load(conn))?;
    lines.reverse();
    Ok(lines)
}

/// Where `account_id` last stood, if it ever entered the world.
pub fn saved_position(conn: &mut DbConn, account_id: i32) -> QueryResult<Option<SavedPosition>> {
    on_backend!(conn, conn => positions::table
        .find(account_id)
        .select(SavedPosition::as_select())
        .first(conn)
        .optional())
}

/// Stores a batch of positions (each replacing the account's last) in one transaction.
pub fn save_positions(conn: &mut DbConn, batch: &[SavedPosition]) -> QueryResult<()> {
    write_transaction!(conn, conn => {
        for position in batch {
            diesel::insert_into(positions::table)
                .values(position)
                .on_conflict(positions::account_id)
                .do_update()
                .set(position)
                .execute(conn)?;
        }
        Ok(())
    })
}

/// An account's id, display name and role, found by name whatever its case.
pub fn find_account_role(
    conn: &mut DbConn,
    username: &str,
) -> QueryResult<Option<(i32, String, String)>> {
    on_backend!(conn, conn => accounts::table
        .filter(accounts::username_key.eq(username_key(username)))
        .select((accounts::id, accounts::username, accounts::role))
        .first(conn)
        .optional())
}

/// Every account whose role is not `player`: (id, role).
pub fn staff_roles(conn: &mut DbConn) -> QueryResult<Vec<(i32, String)>> {
    on_backend!(conn, conn => accounts::table
        .filter(accounts::role.ne("player"))
        .select((accounts::id, accounts::role))
        .load(conn))
}

/// Every ban and mute still in force at `now_ms` (expired ones are deleted on the way).
pub fn active_sanctions(conn: &mut DbConn, now_ms: i64) -> QueryResult<Vec<SanctionRow>> {
    write_transaction!(conn, conn => {
        diesel::delete(sanctions::table.filter(sanctions::until_ms.le(now_ms))).execute(conn)?;
        sanctions::table.select(SanctionRow::as_select()).load(conn)
    })
}

/// The account's ban, if one is in force at `now_ms`.
pub fn active_ban(
    conn: &mut DbConn,
    account_id: i32,
    now_ms: i64,
) -> QueryResult<Option<SanctionRow>> {
    on_backend!(conn, conn => sanctions::table
        .filter(sanctions::account_id.eq(account_id))
        .filter(sanctions::kind.eq("ban"))
        .filter(
            sanctions::until_ms
                .is_null()
                .or(sanctions::until_ms.gt(now_ms)),
        )
        .select(SanctionRow::as_select())
        .first(conn)
        .optional())
}

/// One moderation change, stored with its audit entry in one transaction.
#[derive(Debug, Clone)]
pub enum Moderation {
    /// Ban or mute (replacing the account's previous one of the kind); a ban also revokes every
    /// session of the account, so token mode hands out no new connect token.
    Sanction(SanctionRow),
    /// Unban or unmute: `(account_id, kind)`.
    Lift(i32, &'static str),
    /// `(account_id, role)`.
    SetRole(i32, &'static str),
    /// Nothing to store but the audit entry (kick, say, shutdown, backup).
    Note,
}

/// Applies `change` and records `audit`, in one transaction. For a lift, whether there was a sanction
/// still in force to lift (`now_ms`); otherwise `true`.
pub fn moderate(conn: &mut DbConn, change: &Moderation, audit: &AuditEntry) -> QueryResult<bool> {
    write_transaction!(conn, conn => {
        let changed = match change {
            Moderation::Sanction(row) => {
                diesel::insert_into(sanctions::table)
                    .values(row)
                    .on_conflict((sanctions::account_id, sanctions::kind))
                    .do_update()
                    .set(row)
                    .execute(conn)?;
                if row.kind == "ban" {
                    diesel::delete(sessions::table.filter(sessions::account_id.eq(row.account_id)))
                        .execute(conn)?;
                }
                true
            }
            Moderation::Lift(account_id, kind) => {
                let in_force = sanctions::account_id
                    .eq(*account_id)
                    .and(sanctions::kind.eq(*kind));
                let active = sanctions::table
                    .filter(in_force)
                    .filter(
                        sanctions::until_ms
                            .is_null()
                            .or(sanctions::until_ms.gt(audit.at_ms)),
                    )
                    .count()
                    .get_result::<i64>(conn)?;
                diesel::delete(sanctions::table.filter(in_force)).execute(conn)?;
                active > 0
            }
            Moderation::SetRole(account_id, role) => {
                diesel::update(accounts::table.find(*account_id))
                    .set(accounts::role.eq(*role))
                    .execute(conn)?;
                true
            }
            Moderation::Note => true,
        };
        diesel::insert_into(audit_log::table)
            .values(audit)
            .execute(conn)?;
        Ok(changed)
    })
}

/// The `limit` most recent audit entries, newest first.
pub fn recent_audit(conn: &mut DbConn, limit: i64) -> QueryResult<Vec<AuditEntry>> {
    on_backend!(conn, conn => audit_log::table
        .order(audit_log::id.desc())
        .limit(limit)
        .select(AuditEntry::as_select())
        .load(conn))
}

/// What `backup` answers on PostgreSQL, whose own tools copy a live database.
pub const USE_PG_DUMP: &str = "backup copies an SQLite database; back PostgreSQL up with pg_dump \
     (or its replication)";

/// Writes a consistent copy of the whole database to `path` (SQLite's `VACUUM INTO`: one read
/// transaction, so writers carry on meanwhile). Fails if `path` exists and is not empty, and on
/// PostgreSQL ([`USE_PG_DUMP`]).
pub fn backup_into(conn: &mut DbConn, path: &str) -> QueryResult<()> {
    match conn {
        DbConn::Sqlite(conn) => diesel::sql_query("VACUUM INTO ?")
            .bind::<diesel::sql_types::Text, _>(path)
            .execute(conn)
            .map(|_| ()),
        #[cfg(feature = "postgres")]
        DbConn::Postgres(_) => Err(DieselError::QueryBuilderError(USE_PG_DUMP.into())),
    }
}
