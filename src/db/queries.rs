//! Every query the server runs. Each takes a connection, so it runs wherever the caller is: always a
//! worker thread, never the tick.

use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use super::models::{Account, ChatMessage, NewAccount, NewSession, SavedPosition};
use super::schema::{accounts, chat_messages, positions, sessions};

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
    conn: &mut SqliteConnection,
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
    diesel::insert_into(accounts::table)
        .values(&row)
        .returning(Account::as_returning())
        .get_result(conn)
        .map_err(|e| match e {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                CreateAccountError::Taken
            }
            e => CreateAccountError::Db(e),
        })
}

/// Finds an account by name, whatever its case.
pub fn find_account(conn: &mut SqliteConnection, username: &str) -> QueryResult<Option<Account>> {
    accounts::table
        .filter(accounts::username_key.eq(username_key(username)))
        .select(Account::as_select())
        .first(conn)
        .optional()
}

/// Replaces an account's password hash and revokes every session of it, in one transaction.
pub fn change_password(
    conn: &mut SqliteConnection,
    account_id: i32,
    password_hash: &str,
) -> QueryResult<()> {
    conn.immediate_transaction(|conn| {
        diesel::update(accounts::table.find(account_id))
            .set(accounts::password_hash.eq(password_hash))
            .execute(conn)?;
        diesel::delete(sessions::table.filter(sessions::account_id.eq(account_id)))
            .execute(conn)?;
        Ok(())
    })
}

/// Stores a new session (committed when this returns `Ok`).
pub fn create_session(conn: &mut SqliteConnection, session: &NewSession) -> QueryResult<()> {
    diesel::insert_into(sessions::table)
        .values(session)
        .execute(conn)
        .map(|_| ())
}

/// The account of the unexpired session with this token hash, marking the session used now. Expired
/// sessions of any account are deleted on the way (an indexed range, usually empty).
pub fn use_session(
    conn: &mut SqliteConnection,
    token_hash: &str,
    now_ms: i64,
) -> QueryResult<Option<(Account, i64)>> {
    conn.immediate_transaction(|conn| {
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
pub fn delete_session(conn: &mut SqliteConnection, token_hash: &str) -> QueryResult<bool> {
    diesel::delete(sessions::table.filter(sessions::token_hash.eq(token_hash)))
        .execute(conn)
        .map(|n| n > 0)
}

/// Stores a batch of chat lines in one transaction.
pub fn insert_chat_messages(
    conn: &mut SqliteConnection,
    lines: &[ChatMessage],
) -> QueryResult<usize> {
    conn.immediate_transaction(|conn| {
        diesel::insert_into(chat_messages::table)
            .values(lines)
            .execute(conn)
    })
}

/// Deletes at most `batch` chat lines said before `before_ms` (the oldest first), in one short
/// transaction; how many it deleted. Called until it deletes fewer than `batch`, so the database is
/// never locked for long.
pub fn prune_chat_messages(
    conn: &mut SqliteConnection,
    before_ms: i64,
    batch: i64,
) -> QueryResult<usize> {
    conn.immediate_transaction(|conn| {
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
    conn: &mut SqliteConnection,
    limit: i64,
    since_ms: i64,
) -> QueryResult<Vec<ChatMessage>> {
    let mut lines: Vec<ChatMessage> = chat_messages::table
        .filter(chat_messages::sent_at_ms.ge(since_ms))
        .order(chat_messages::id.desc())
        .limit(limit)
        .select(ChatMessage::as_select())
        .load(conn)?;
    lines.reverse();
    Ok(lines)
}

/// Where `account_id` last stood, if it ever entered the world.
pub fn saved_position(
    conn: &mut SqliteConnection,
    account_id: i32,
) -> QueryResult<Option<SavedPosition>> {
    positions::table
        .find(account_id)
        .select(SavedPosition::as_select())
        .first(conn)
        .optional()
}

/// Stores a batch of positions (each replacing the account's last) in one transaction.
pub fn save_positions(conn: &mut SqliteConnection, batch: &[SavedPosition]) -> QueryResult<()> {
    conn.immediate_transaction(|conn| {
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
