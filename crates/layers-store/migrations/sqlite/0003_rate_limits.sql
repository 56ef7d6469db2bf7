-- Per-account overrides of the tier's rate limits (issue 5).
ALTER TABLE users ADD COLUMN requests_per_minute INTEGER CHECK (requests_per_minute IS NULL OR requests_per_minute >= 0);
ALTER TABLE users ADD COLUMN tokens_per_minute INTEGER CHECK (tokens_per_minute IS NULL OR tokens_per_minute >= 0);
