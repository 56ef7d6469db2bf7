-- Two-factor login (TOTP, RFC 6238): the secret, encrypted by the server, pending until the
-- first code confirms it; the last step used (no code works twice); single-use recovery codes,
-- of which only hashes are stored.
CREATE TABLE two_factor (
    user_id    TEXT PRIMARY KEY NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    secret_enc BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    enabled_at INTEGER,
    last_step  INTEGER
);

CREATE TABLE recovery_codes (
    user_id   TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash BLOB NOT NULL,
    used_at   INTEGER,
    PRIMARY KEY (user_id, code_hash)
);
