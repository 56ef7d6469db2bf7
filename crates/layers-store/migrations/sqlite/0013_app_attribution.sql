-- App attribution (issue 17): the app a request came from, as OpenRouter's attribution headers
-- name it (`X-Title`, and the origin of `HTTP-Referer`), shown on the dashboard.
ALTER TABLE usage_logs ADD COLUMN app_title TEXT;
ALTER TABLE usage_logs ADD COLUMN app_origin TEXT;
