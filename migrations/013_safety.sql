-- The safety layer. A key's and an account's safety policy (NULL: the next level's applies: key,
-- then account, then the operator's default). A key can be suspended pending an admin's review
-- (an anomaly the operator suspends on); its last anomaly alert is kept for the dashboard's badge.
ALTER TABLE api_keys ADD COLUMN safety_policy text CHECK (safety_policy IN ('off', 'flag', 'redact', 'block'));
ALTER TABLE api_keys ADD COLUMN suspended_at timestamptz;
ALTER TABLE api_keys ADD COLUMN anomaly_at timestamptz;
ALTER TABLE api_keys ADD COLUMN anomaly_score real;
ALTER TABLE users ADD COLUMN safety_policy text CHECK (safety_policy IN ('off', 'flag', 'redact', 'block'));

-- Every safety decision: which request, which key, what was found and what was done. Never the text.
CREATE TABLE safety_events (
  id         bigserial PRIMARY KEY,
  request_id uuid        NOT NULL,
  api_key_id uuid REFERENCES api_keys(id) ON DELETE CASCADE,
  user_id    uuid REFERENCES users(id) ON DELETE CASCADE,
  stage      text        NOT NULL CHECK (stage IN ('input', 'output', 'key')),
  detector   text        NOT NULL,
  category   text        NOT NULL,
  action     text        NOT NULL CHECK (action IN ('flag', 'redact', 'block', 'filter', 'suspend', 'slow', 'alert')),
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX safety_events_user_idx ON safety_events (user_id, created_at);
CREATE INDEX safety_events_created_idx ON safety_events (created_at);
