//! Rows of the tables in [`super::schema`], as diesel reads and writes them.

use diesel::prelude::*;

use super::schema::{accounts, chat_messages, positions, sessions};

/// An account row.
#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = accounts)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite))]
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
#[diesel(check_for_backend(diesel::sqlite::Sqlite))]
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
#[diesel(check_for_backend(diesel::sqlite::Sqlite))]
pub struct SavedPosition {
    pub account_id: i32,
    pub x: f32,
    pub y: f32,
    pub saved_at_ms: i64,
}
