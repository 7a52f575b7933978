-- Accounts (PostgreSQL; the same schema as migrations/sqlite). `username` keeps the display form the
-- player chose; `username_key` is its lowercase form and carries the UNIQUE index, so "Alice" and "alice"
-- cannot both exist. `password_hash` is an argon2id PHC string; plain-text passwords are never stored.
CREATE TABLE accounts (
    id SERIAL PRIMARY KEY,
    username TEXT NOT NULL,
    username_key TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
