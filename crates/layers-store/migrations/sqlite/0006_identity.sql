-- Accounts people sign up for themselves (SPEC §6.1): single-use links sent by e-mail
-- (confirmation, password reset, e-mail change), of which only a hash is stored.
CREATE TABLE email_tokens (
    token_hash BLOB PRIMARY KEY NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL CHECK (purpose IN ('confirm', 'reset', 'change_email')),
    new_email  TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
);
CREATE INDEX email_tokens_user_idx ON email_tokens (user_id, purpose);
