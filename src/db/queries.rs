//! Every query the server runs. Each takes a connection, so it runs wherever the caller is: always a
//! worker thread, never the tick.

use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use super::models::{Account, ChatMessage, NewAccount};
use super::schema::{accounts, chat_messages};

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

/// The `limit` most recent chat lines, oldest first.
pub fn recent_chat_messages(
    conn: &mut SqliteConnection,
    limit: i64,
) -> QueryResult<Vec<ChatMessage>> {
    let mut lines: Vec<ChatMessage> = chat_messages::table
        .order(chat_messages::id.desc())
        .limit(limit)
        .select(ChatMessage::as_select())
        .load(conn)?;
    lines.reverse();
    Ok(lines)
}
