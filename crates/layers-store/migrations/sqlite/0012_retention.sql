-- Usage retention (issue 16): usage rows older than the configured days are pruned (the
-- ledger, the spend roll-ups and the audit trail are kept).
CREATE INDEX usage_logs_created_idx ON usage_logs (created_at);
