-- The network's worker token, where every gateway reads it: SHA-256 only, one active at a time. The
-- first gateway to start seeds it from HYPERINFER_WORKER_TOKEN; `hyperinfer worker-token rotate`
-- retires it and adds a new one. A retired token admits no new worker; approvals already made stay.
CREATE TABLE network_worker_tokens (
  id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  token_hash char(64)    NOT NULL UNIQUE,
  source     text        NOT NULL CHECK (source IN ('config', 'rotated')),
  created_by uuid REFERENCES users(id) ON DELETE SET NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  retired_at timestamptz
);
CREATE UNIQUE INDEX network_worker_tokens_one_active ON network_worker_tokens ((true)) WHERE retired_at IS NULL;

-- A worker names its join token by its prefix (it proves the token, never sends it).
CREATE INDEX worker_join_tokens_prefix ON worker_join_tokens (prefix);
