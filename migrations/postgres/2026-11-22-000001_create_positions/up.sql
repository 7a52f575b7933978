-- Where each account stands in the world (world units), saved while it walks, at logout and at shutdown.
-- An account without a row has never entered the world: it starts at the spawn point.
CREATE TABLE positions (
    account_id INTEGER PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    x REAL NOT NULL,
    y REAL NOT NULL,
    saved_at_ms BIGINT NOT NULL
);
