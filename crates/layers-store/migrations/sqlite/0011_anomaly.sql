-- Anomaly rules (issue 16): a usage spike holds the account to a lower rate limit for a while;
-- the account's own override is kept here and put back when the hold ends.
CREATE TABLE anomaly_holds (
    user_id      TEXT PRIMARY KEY REFERENCES users (id),
    previous_rpm INTEGER,
    -- What the hold set: the release puts `previous_rpm` back only while this is still in force.
    held_rpm     INTEGER NOT NULL,
    until        INTEGER NOT NULL,
    created_at   INTEGER NOT NULL
);
