-- Chat history: every line the server accepted, with the sender's name as it was when said.
CREATE TABLE chat_messages (
    id SERIAL PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (id),
    sender TEXT NOT NULL,
    body TEXT NOT NULL,
    sent_at_ms BIGINT NOT NULL
);
CREATE INDEX chat_messages_sent_at ON chat_messages (sent_at_ms);
