-- Roles, bans and mutes, and the audit log of moderation (issue 12).

-- Every account is a player unless an operator makes it more (`role NAME moderator|admin`).
ALTER TABLE accounts ADD COLUMN role TEXT NOT NULL DEFAULT 'player'
    CHECK (role IN ('player', 'moderator', 'admin'));

-- At most one ban and one mute per account; a new one replaces the old, unban/unmute deletes it.
-- `until_ms` NULL: until lifted. Expired rows are ignored (and deleted when next replaced or lifted).
CREATE TABLE sanctions (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('ban', 'mute')),
    until_ms BIGINT,
    reason TEXT NOT NULL,
    by_name TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (account_id, kind)
);

-- Who did what to whom, when and why: every moderation action, from the console or from chat.
CREATE TABLE audit_log (
    id SERIAL PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
