-- Join tokens an admin creates for workers: a worker that presents one is approved at once (and the
-- registry records which token admitted it). Only the SHA-256 is stored; the token is shown once.
CREATE TABLE worker_join_tokens (
  id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  token_hash char(64)     NOT NULL UNIQUE,
  prefix     varchar(16)  NOT NULL,
  label      varchar(100) NOT NULL,
  created_by uuid REFERENCES users(id) ON DELETE SET NULL,
  created_at timestamptz  NOT NULL DEFAULT now(),
  expires_at timestamptz,
  revoked_at timestamptz,
  uses       integer      NOT NULL DEFAULT 0,
  last_used_at timestamptz
);
