-- Token mode's sessions: what "Remember me" keeps. Only the SHA-256 of the token is stored (the token
-- itself has 256 random bits, so a plain hash is enough: a leaked table gives no usable token).
-- A session is revoked by deleting its row (logout), or every row of its account (password change).
CREATE TABLE sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    last_used_at_ms BIGINT NOT NULL
);
CREATE INDEX sessions_account ON sessions (account_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at_ms);
