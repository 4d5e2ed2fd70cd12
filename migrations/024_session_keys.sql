-- API keys minted for one browser session (services/auth/session-keys.ts): the dashboard runs
-- inference (compare) on the session with such a key, which the web service holds and never shows.
-- `session_jti` is the session token's id: logging that session out revokes its keys.

ALTER TABLE api_keys ADD COLUMN session_jti uuid;
CREATE INDEX api_keys_session_idx ON api_keys (session_jti) WHERE session_jti IS NOT NULL AND revoked_at IS NULL;
