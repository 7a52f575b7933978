//! Rows of the tables in [`super::schema`], as diesel reads and writes them.

use diesel::prelude::*;

use super::schema::{accounts, audit_log, chat_messages, positions, sanctions, sessions};

/// An account row.
#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = accounts)]
pub struct Account {
    pub id: i32,
    pub username: String,
    pub password_hash: String,
}

/// A new account row; `username_key` is the lowercase form that carries the UNIQUE index.
#[derive(Insertable)]
#[diesel(table_name = accounts)]
pub struct NewAccount<'a> {
    pub username: &'a str,
    pub username_key: &'a str,
    pub password_hash: &'a str,
    pub created_at_ms: i64,
}

/// A chat line, as stored for history.
#[derive(Queryable, Selectable, Insertable, Debug, Clone, PartialEq, Eq)]
#[diesel(table_name = chat_messages)]
pub struct ChatMessage {
    pub account_id: i32,
    pub sender: String,
    pub body: String,
    pub sent_at_ms: i64,
}

/// A new session row (token mode): only the token's hash is stored.
#[derive(Insertable)]
#[diesel(table_name = sessions)]
pub struct NewSession<'a> {
    pub account_id: i32,
    pub token_hash: &'a str,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub last_used_at_ms: i64,
}

/// Where an account stands in the world.
#[derive(Queryable, Selectable, Insertable, AsChangeset, Debug, Clone, Copy, PartialEq)]
#[diesel(table_name = positions)]
pub struct SavedPosition {
    pub account_id: i32,
    pub x: f32,
    pub y: f32,
    pub saved_at_ms: i64,
}

/// A ban or a mute of one account (`kind` "ban" or "mute"); `until_ms` `None` lasts until lifted.
#[derive(Queryable, Selectable, Insertable, AsChangeset, Debug, Clone, PartialEq, Eq)]
#[diesel(table_name = sanctions)]
#[diesel(treat_none_as_null = true)]
pub struct SanctionRow {
    pub account_id: i32,
    pub kind: String,
    pub until_ms: Option<i64>,
    pub reason: String,
    pub by_name: String,
    pub created_at_ms: i64,
}

/// One moderation action, as the audit log keeps it.
#[derive(Queryable, Selectable, Insertable, Debug, Clone, PartialEq, Eq)]
#[diesel(table_name = audit_log)]
pub struct AuditEntry {
    pub at_ms: i64,
    /// Who did it: an account name, or `console`.
    pub actor: String,
    /// What: kick, ban, unban, mute, unmute, role, say, shutdown, backup.
    pub action: String,
    /// Whom (an account name), or empty.
    pub target: String,
    /// Why, and the details (duration, new role).
    pub detail: String,
}
