-- IP bans and the allow-list (issue 22).

-- An address or a range (`203.0.113.7`, `203.0.113.0/24`, `2001:db8::/32`, as `banip` wrote it) whose
-- clients are refused before anything costly; `until_ms` NULL: until `unbanip`.
CREATE TABLE ip_bans (
    network TEXT PRIMARY KEY NOT NULL,
    until_ms BIGINT,
    reason TEXT NOT NULL,
    by_name TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

-- With --allow-list, only the account names here (lowercase) may register and log in. A name may be
-- allowed before its account exists: friends invited to a private server register themselves.
CREATE TABLE allow_list (
    username_key TEXT PRIMARY KEY NOT NULL,
    by_name TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
