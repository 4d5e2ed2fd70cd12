-- Users, API keys, request logs and daily usage (seed 003), plus what auth and the gateway need:
-- key prefix/scopes/tier/expiry/revocation, per-request token counts, an audit log.

CREATE TABLE users (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  username      varchar(50)  NOT NULL,
  email         varchar(254) NOT NULL,
  password_hash text         NOT NULL,
  tier          text         NOT NULL DEFAULT 'default' CHECK (tier IN ('default', 'premium')),
  role          text         NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
  created_at    timestamptz  NOT NULL DEFAULT now(),
  is_active     boolean      NOT NULL DEFAULT true
);
CREATE UNIQUE INDEX users_username_key ON users (lower(username));
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE api_keys (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id      uuid         NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  key_hash     char(64)     NOT NULL UNIQUE,
  prefix       varchar(16)  NOT NULL,
  name         varchar(100) NOT NULL,
  scopes       text[]       NOT NULL DEFAULT ARRAY['inference', 'models'],
  tier         text         NOT NULL DEFAULT 'default' CHECK (tier IN ('default', 'premium')),
  created_at   timestamptz  NOT NULL DEFAULT now(),
  expires_at   timestamptz,
  revoked_at   timestamptz,
  last_used_at timestamptz,
  is_active    boolean      NOT NULL DEFAULT true
);
CREATE INDEX api_keys_user_idx ON api_keys (user_id, created_at);

CREATE TABLE request_logs (
  id               uuid PRIMARY KEY,
  user_id          uuid REFERENCES users(id) ON DELETE SET NULL,
  api_key_id       uuid REFERENCES api_keys(id) ON DELETE SET NULL,
  prompt_hash      char(64)    NOT NULL,
  model_used       varchar(200) NOT NULL,
  worker           char(64),
  response_time_ms integer     NOT NULL,
  ttft_ms          integer,
  tokens_in        integer     NOT NULL DEFAULT 0,
  tokens_out       integer     NOT NULL DEFAULT 0,
  tokens_used      integer     NOT NULL DEFAULT 0,
  status           varchar(20) NOT NULL CHECK (status IN ('success', 'error', 'timeout', 'cancelled')),
  error_code       text,
  created_at       timestamptz NOT NULL DEFAULT now()
);
-- the rate limiter restores a key's last hour from here after a gateway restart
CREATE INDEX request_logs_key_time_idx ON request_logs (api_key_id, created_at);
CREATE INDEX request_logs_user_time_idx ON request_logs (user_id, created_at);

CREATE TABLE usage_stats (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id       uuid    NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  api_key_id    uuid    NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,
  date          date    NOT NULL,
  request_count integer NOT NULL DEFAULT 0,
  error_count   integer NOT NULL DEFAULT 0,
  tokens_in     bigint  NOT NULL DEFAULT 0,
  tokens_out    bigint  NOT NULL DEFAULT 0,
  tokens_used   bigint  NOT NULL DEFAULT 0,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  UNIQUE (api_key_id, date)
);
CREATE INDEX usage_stats_user_date_idx ON usage_stats (user_id, date);

CREATE TABLE audit_log (
  id         bigserial PRIMARY KEY,
  user_id    uuid REFERENCES users(id) ON DELETE SET NULL,
  action     text        NOT NULL,
  target     text,
  details    jsonb       NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_user_idx ON audit_log (user_id, created_at);
