-- Logged-out sessions: a session JWT carries a jti; logging out records it here until the token would
-- have expired anyway, and auth refuses it everywhere (web, CLI, gateway proxies).
CREATE TABLE revoked_sessions (
  jti        uuid PRIMARY KEY,
  user_id    uuid REFERENCES users(id) ON DELETE CASCADE,
  expires_at timestamptz NOT NULL,
  revoked_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX revoked_sessions_expiry_idx ON revoked_sessions (expires_at);
