-- GENERATED FILE, DO NOT EDIT BY HAND: regenerate with `npm run schema` (scripts/schema.ts).
-- The whole schema that migrations/NNN_*.sql build, as of the migrations listed below, so today's
-- tables and SQL functions read in one place. The numbered migrations stay the source of truth; this
-- file is never applied, and test/schema.test.ts fails when it no longer matches them.
--
-- Migrations: 001_init.sql, 002_accounting.sql, 003_sessions.sql, 004_accounting_sets.sql, 005_join_tokens.sql, 007_admin_roles.sql, 008_network_worker_tokens.sql, 009_accounting_leases.sql, 013_safety.sql, 015_response_cache.sql, 016_learned_routing.sql, 017_idempotency.sql, 018_operators.sql, 019_usage_receipts.sql, 024_session_keys.sql, 025_idempotency_batches.sql, 026_receipts_as_json.sql


-- Tables

CREATE TABLE accounting_leases (
  gateway    character(64) NOT NULL,
  name       text NOT NULL,
  amount     bigint DEFAULT 0 NOT NULL,
  exact      boolean DEFAULT false NOT NULL,
  recall     bigint DEFAULT 0 NOT NULL,
  ack        bigint DEFAULT 0 NOT NULL,
  renewed_at timestamp with time zone DEFAULT now() NOT NULL,
  CONSTRAINT accounting_leases_pkey PRIMARY KEY (gateway, name),
  CONSTRAINT accounting_leases_amount_check CHECK (amount >= 0)
);
CREATE INDEX accounting_leases_name_idx ON accounting_leases USING btree (name);

CREATE TABLE idempotency_keys (
  scope      text NOT NULL,
  key        text NOT NULL,
  body_hash  character(64) NOT NULL,
  state      text NOT NULL,
  gateway    character(64) NOT NULL,
  response   jsonb,
  created_at timestamp with time zone DEFAULT now() NOT NULL,
  renewed_at timestamp with time zone DEFAULT now() NOT NULL,
  expires_at timestamp with time zone NOT NULL,
  CONSTRAINT idempotency_keys_pkey PRIMARY KEY (scope, key),
  CONSTRAINT idempotency_keys_state_check CHECK (state = ANY (ARRAY['running'::text, 'done'::text]))
);
CREATE INDEX idempotency_keys_expires_idx ON idempotency_keys USING btree (expires_at);

CREATE TABLE quota_counters (
  name       text NOT NULL,
  cap        bigint NOT NULL,
  used       bigint DEFAULT 0 NOT NULL,
  held       bigint DEFAULT 0 NOT NULL,
  expires_at timestamp with time zone,
  CONSTRAINT quota_counters_pkey PRIMARY KEY (name),
  CONSTRAINT quota_counters_held_check CHECK (held >= 0),
  CONSTRAINT quota_counters_used_check CHECK (used >= 0)
);
CREATE INDEX quota_counters_expiry_idx ON quota_counters USING btree (expires_at);

CREATE TABLE response_cache (
  scope      text NOT NULL,
  key        character(64) NOT NULL,
  model      character varying(200) NOT NULL,
  entry      jsonb NOT NULL,
  embedding  real[],
  params_key character(64),
  bytes      integer NOT NULL,
  created_at timestamp with time zone DEFAULT now() NOT NULL,
  expires_at timestamp with time zone NOT NULL,
  hits       integer DEFAULT 0 NOT NULL,
  warm       boolean DEFAULT false NOT NULL,
  CONSTRAINT response_cache_pkey PRIMARY KEY (scope, key)
);
CREATE INDEX response_cache_expiry_idx ON response_cache USING btree (expires_at);
CREATE INDEX response_cache_semantic_idx ON response_cache USING btree (scope, params_key, created_at) WHERE (embedding IS NOT NULL);

CREATE TABLE routing_arms (
  context    text NOT NULL,
  model      character varying(200) NOT NULL,
  n          double precision DEFAULT 0 NOT NULL,
  ok_n       double precision DEFAULT 0 NOT NULL,
  speed_sum  double precision DEFAULT 0 NOT NULL,
  cost_sum   double precision DEFAULT 0 NOT NULL,
  q_n        double precision DEFAULT 0 NOT NULL,
  q_sum      double precision DEFAULT 0 NOT NULL,
  updated_at timestamp with time zone DEFAULT now() NOT NULL,
  CONSTRAINT routing_arms_pkey PRIMARY KEY (context, model)
);

CREATE TABLE schema_migrations (
  name       text NOT NULL,
  checksum   character(64) NOT NULL,
  applied_at timestamp with time zone DEFAULT now() NOT NULL,
  CONSTRAINT schema_migrations_pkey PRIMARY KEY (name)
);

CREATE TABLE users (
  id                   uuid DEFAULT gen_random_uuid() NOT NULL,
  username             character varying(50) NOT NULL,
  email                character varying(254) NOT NULL,
  password_hash        text NOT NULL,
  tier                 text DEFAULT 'default'::text NOT NULL,
  role                 text DEFAULT 'user'::text NOT NULL,
  created_at           timestamp with time zone DEFAULT now() NOT NULL,
  is_active            boolean DEFAULT true NOT NULL,
  role_source          text,
  sessions_valid_after timestamp with time zone,
  safety_policy        text,
  CONSTRAINT users_pkey PRIMARY KEY (id),
  CONSTRAINT users_role_check CHECK (role = ANY (ARRAY['user'::text, 'admin'::text])),
  CONSTRAINT users_role_source_check CHECK (role_source = ANY (ARRAY['config'::text, 'bootstrap'::text])),
  CONSTRAINT users_safety_policy_check CHECK (safety_policy = ANY (ARRAY['off'::text, 'flag'::text, 'redact'::text, 'block'::text])),
  CONSTRAINT users_tier_check CHECK (tier = ANY (ARRAY['default'::text, 'premium'::text]))
);
CREATE UNIQUE INDEX users_email_key ON users USING btree (lower((email)::text));
CREATE UNIQUE INDEX users_username_key ON users USING btree (lower((username)::text));

CREATE TABLE api_keys (
  id            uuid DEFAULT gen_random_uuid() NOT NULL,
  user_id       uuid NOT NULL,
  key_hash      character(64) NOT NULL,
  prefix        character varying(16) NOT NULL,
  name          character varying(100) NOT NULL,
  scopes        text[] DEFAULT ARRAY['inference'::text, 'models'::text] NOT NULL,
  tier          text DEFAULT 'default'::text NOT NULL,
  created_at    timestamp with time zone DEFAULT now() NOT NULL,
  expires_at    timestamp with time zone,
  revoked_at    timestamp with time zone,
  last_used_at  timestamp with time zone,
  is_active     boolean DEFAULT true NOT NULL,
  budget_nusd   bigint,
  models        text[],
  safety_policy text,
  suspended_at  timestamp with time zone,
  anomaly_at    timestamp with time zone,
  anomaly_score real,
  session_jti   uuid,
  CONSTRAINT api_keys_pkey PRIMARY KEY (id),
  CONSTRAINT api_keys_key_hash_key UNIQUE (key_hash),
  CONSTRAINT api_keys_user_id_fkey FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE,
  CONSTRAINT api_keys_budget_nusd_check CHECK (budget_nusd IS NULL OR budget_nusd >= 0),
  CONSTRAINT api_keys_safety_policy_check CHECK (safety_policy = ANY (ARRAY['off'::text, 'flag'::text, 'redact'::text, 'block'::text])),
  CONSTRAINT api_keys_tier_check CHECK (tier = ANY (ARRAY['default'::text, 'premium'::text]))
);
CREATE INDEX api_keys_session_idx ON api_keys USING btree (session_jti) WHERE ((session_jti IS NOT NULL) AND (revoked_at IS NULL));
CREATE INDEX api_keys_user_idx ON api_keys USING btree (user_id, created_at);

CREATE TABLE audit_log (
  id         bigserial NOT NULL,
  user_id    uuid,
  action     text NOT NULL,
  target     text,
  details    jsonb DEFAULT '{}'::jsonb NOT NULL,
  created_at timestamp with time zone DEFAULT now() NOT NULL,
  CONSTRAINT audit_log_pkey PRIMARY KEY (id),
  CONSTRAINT audit_log_user_id_fkey FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE SET NULL
);
CREATE INDEX audit_log_user_idx ON audit_log USING btree (user_id, created_at);

CREATE TABLE cache_key_settings (
  api_key_id uuid NOT NULL,
  semantic   boolean DEFAULT false NOT NULL,
  threshold  real,
  updated_at timestamp with time zone DEFAULT now() NOT NULL,
  CONSTRAINT cache_key_settings_pkey PRIMARY KEY (api_key_id),
  CONSTRAINT cache_key_settings_api_key_id_fkey FOREIGN KEY (api_key_id) REFERENCES api_keys(id) ON DELETE CASCADE,
  CONSTRAINT cache_key_settings_threshold_check CHECK (threshold IS NULL OR threshold > 0::double precision AND threshold <= 1::double precision)
);

CREATE TABLE credit_accounts (
  user_id      uuid NOT NULL,
  balance_nusd bigint DEFAULT 0 NOT NULL,
  held_nusd    bigint DEFAULT 0 NOT NULL,
  updated_at   timestamp with time zone DEFAULT now() NOT NULL,
  CONSTRAINT credit_accounts_pkey PRIMARY KEY (user_id),
  CONSTRAINT credit_accounts_user_id_fkey FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE,
  CONSTRAINT credit_accounts_balance_nusd_check CHECK (balance_nusd >= 0),
  CONSTRAINT credit_accounts_held_nusd_check CHECK (held_nusd >= 0)
);

CREATE TABLE credit_ledger (
  id          bigserial NOT NULL,
  user_id     uuid,
  kind        text NOT NULL,
  amount_nusd bigint NOT NULL,
  request_id  uuid,
  api_key_id  uuid,
  actor       uuid,
  note        text,
  created_at  timestamp with time zone DEFAULT now() NOT NULL,
  CONSTRAINT credit_ledger_pkey PRIMARY KEY (id),
  CONSTRAINT credit_ledger_user_id_fkey FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE,
  CONSTRAINT credit_ledger_account_check CHECK ((user_id IS NULL) = (kind = 'fee'::text)),
  CONSTRAINT credit_ledger_check CHECK ((kind = 'debit'::text) = (amount_nusd < 0) OR amount_nusd = 0),
  CONSTRAINT credit_ledger_kind_check CHECK (kind = ANY (ARRAY['grant'::text, 'debit'::text, 'refund'::text, 'earning'::text, 'fee'::text]))
);
CREATE INDEX credit_ledger_payout_idx ON credit_ledger USING btree (created_at) WHERE (kind = ANY (ARRAY['earning'::text, 'fee'::text]));
CREATE UNIQUE INDEX credit_ledger_request_debit_key ON credit_ledger USING btree (request_id) WHERE (kind = 'debit'::text);
CREATE UNIQUE INDEX credit_ledger_request_earning_key ON credit_ledger USING btree (request_id) WHERE (kind = 'earning'::text);
CREATE UNIQUE INDEX credit_ledger_request_fee_key ON credit_ledger USING btree (request_id) WHERE (kind = 'fee'::text);
CREATE INDEX credit_ledger_user_idx ON credit_ledger USING btree (user_id, id);

CREATE TABLE network_worker_tokens (
  id         uuid DEFAULT gen_random_uuid() NOT NULL,
  token_hash character(64) NOT NULL,
  source     text NOT NULL,
  created_by uuid,
  created_at timestamp with time zone DEFAULT now() NOT NULL,
  retired_at timestamp with time zone,
  CONSTRAINT network_worker_tokens_pkey PRIMARY KEY (id),
  CONSTRAINT network_worker_tokens_token_hash_key UNIQUE (token_hash),
  CONSTRAINT network_worker_tokens_created_by_fkey FOREIGN KEY (created_by) REFERENCES users(id) ON DELETE SET NULL,
  CONSTRAINT network_worker_tokens_source_check CHECK (source = ANY (ARRAY['config'::text, 'rotated'::text]))
);
CREATE UNIQUE INDEX network_worker_tokens_one_active ON network_worker_tokens USING btree ((true)) WHERE (retired_at IS NULL);

CREATE TABLE operator_prices (
  owner       uuid NOT NULL,
  model       character varying(200) NOT NULL,
  input_nusd  bigint NOT NULL,
  output_nusd bigint NOT NULL,
  updated_at  timestamp with time zone DEFAULT now() NOT NULL,
  CONSTRAINT operator_prices_pkey PRIMARY KEY (owner, model),
  CONSTRAINT operator_prices_owner_fkey FOREIGN KEY (owner) REFERENCES users(id) ON DELETE CASCADE,
  CONSTRAINT operator_prices_input_nusd_check CHECK (input_nusd >= 0),
  CONSTRAINT operator_prices_output_nusd_check CHECK (output_nusd >= 0)
);

CREATE TABLE price_bounds (
  model      character varying(200) NOT NULL,
  min_input  bigint NOT NULL,
  max_input  bigint NOT NULL,
  min_output bigint NOT NULL,
  max_output bigint NOT NULL,
  updated_by uuid,
  updated_at timestamp with time zone DEFAULT now() NOT NULL,
  CONSTRAINT price_bounds_pkey PRIMARY KEY (model),
  CONSTRAINT price_bounds_updated_by_fkey FOREIGN KEY (updated_by) REFERENCES users(id) ON DELETE SET NULL,
  CONSTRAINT price_bounds_check CHECK (max_input >= min_input),
  CONSTRAINT price_bounds_check1 CHECK (max_output >= min_output),
  CONSTRAINT price_bounds_min_input_check CHECK (min_input >= 0),
  CONSTRAINT price_bounds_min_output_check CHECK (min_output >= 0)
);

CREATE TABLE request_feedback (
  request_id uuid NOT NULL,
  user_id    uuid NOT NULL,
  score      real NOT NULL,
  comment    text,
  created_at timestamp with time zone DEFAULT now() NOT NULL,
  CONSTRAINT request_feedback_pkey PRIMARY KEY (request_id),
  CONSTRAINT request_feedback_user_id_fkey FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE,
  CONSTRAINT request_feedback_score_check CHECK (score >= 0::double precision AND score <= 1::double precision)
);

CREATE TABLE request_logs (
  id               uuid NOT NULL,
  user_id          uuid,
  api_key_id       uuid,
  prompt_hash      character(64) NOT NULL,
  model_used       character varying(200) NOT NULL,
  worker           character(64),
  response_time_ms integer,
  ttft_ms          integer,
  tokens_in        integer DEFAULT 0 NOT NULL,
  tokens_out       integer DEFAULT 0 NOT NULL,
  tokens_used      integer DEFAULT 0 NOT NULL,
  status           character varying(20) NOT NULL,
  error_code       text,
  created_at       timestamp with time zone DEFAULT now() NOT NULL,
  kind             text DEFAULT 'chat'::text NOT NULL,
  cost_nusd        bigint DEFAULT 0 NOT NULL,
  trace_id         text,
  gateway          character(64),
  error_message    text,
  hold             jsonb,
  finished_at      timestamp with time zone,
  cache            text,
  cached_from      uuid,
  CONSTRAINT request_logs_pkey PRIMARY KEY (id),
  CONSTRAINT request_logs_api_key_id_fkey FOREIGN KEY (api_key_id) REFERENCES api_keys(id) ON DELETE SET NULL,
  CONSTRAINT request_logs_user_id_fkey FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE SET NULL,
  CONSTRAINT request_logs_cache_check CHECK (cache IS NULL OR (cache = ANY (ARRAY['local'::text, 'shared'::text, 'semantic'::text]))),
  CONSTRAINT request_logs_status_check CHECK (status::text = ANY (ARRAY['processing'::character varying, 'success'::character varying, 'failed'::character varying, 'cancelled'::character varying]::text[]))
);
CREATE INDEX request_logs_cache_idx ON request_logs USING btree (created_at) WHERE (cache IS NOT NULL);
CREATE INDEX request_logs_key_time_idx ON request_logs USING btree (api_key_id, created_at);
CREATE INDEX request_logs_processing_idx ON request_logs USING btree (created_at) WHERE ((status)::text = 'processing'::text);
CREATE INDEX request_logs_trace_idx ON request_logs USING btree (user_id, trace_id);
CREATE INDEX request_logs_user_time_idx ON request_logs USING btree (user_id, created_at);

CREATE TABLE request_receipts (
  request_id uuid NOT NULL,
  user_id    uuid NOT NULL,
  status     text NOT NULL,
  dispute    text,
  receipt    json,
  created_at timestamp with time zone DEFAULT now() NOT NULL,
  CONSTRAINT request_receipts_pkey PRIMARY KEY (request_id),
  CONSTRAINT request_receipts_request_id_fkey FOREIGN KEY (request_id) REFERENCES request_logs(id) ON DELETE CASCADE,
  CONSTRAINT request_receipts_user_id_fkey FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE,
  CONSTRAINT request_receipts_check CHECK ((status = 'disputed'::text) = (dispute IS NOT NULL)),
  CONSTRAINT request_receipts_check1 CHECK (status = 'disputed'::text OR receipt IS NOT NULL),
  CONSTRAINT request_receipts_status_check CHECK (status = ANY (ARRAY['settled'::text, 'disputed'::text]))
);
CREATE INDEX request_receipts_user_idx ON request_receipts USING btree (user_id, created_at);

CREATE TABLE revoked_sessions (
  jti        uuid NOT NULL,
  user_id    uuid,
  expires_at timestamp with time zone NOT NULL,
  revoked_at timestamp with time zone DEFAULT now() NOT NULL,
  CONSTRAINT revoked_sessions_pkey PRIMARY KEY (jti),
  CONSTRAINT revoked_sessions_user_id_fkey FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE
);
CREATE INDEX revoked_sessions_expiry_idx ON revoked_sessions USING btree (expires_at);

CREATE TABLE safety_events (
  id         bigserial NOT NULL,
  request_id uuid NOT NULL,
  api_key_id uuid,
  user_id    uuid,
  stage      text NOT NULL,
  detector   text NOT NULL,
  category   text NOT NULL,
  action     text NOT NULL,
  created_at timestamp with time zone DEFAULT now() NOT NULL,
  CONSTRAINT safety_events_pkey PRIMARY KEY (id),
  CONSTRAINT safety_events_api_key_id_fkey FOREIGN KEY (api_key_id) REFERENCES api_keys(id) ON DELETE CASCADE,
  CONSTRAINT safety_events_user_id_fkey FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE,
  CONSTRAINT safety_events_action_check CHECK (action = ANY (ARRAY['flag'::text, 'redact'::text, 'block'::text, 'filter'::text, 'suspend'::text, 'slow'::text, 'alert'::text])),
  CONSTRAINT safety_events_stage_check CHECK (stage = ANY (ARRAY['input'::text, 'output'::text, 'key'::text]))
);
CREATE INDEX safety_events_created_idx ON safety_events USING btree (created_at);
CREATE INDEX safety_events_user_idx ON safety_events USING btree (user_id, created_at);

CREATE TABLE usage_stats (
  id            uuid DEFAULT gen_random_uuid() NOT NULL,
  user_id       uuid NOT NULL,
  api_key_id    uuid NOT NULL,
  date          date NOT NULL,
  request_count integer DEFAULT 0 NOT NULL,
  error_count   integer DEFAULT 0 NOT NULL,
  tokens_in     bigint DEFAULT 0 NOT NULL,
  tokens_out    bigint DEFAULT 0 NOT NULL,
  tokens_used   bigint DEFAULT 0 NOT NULL,
  created_at    timestamp with time zone DEFAULT now() NOT NULL,
  updated_at    timestamp with time zone DEFAULT now() NOT NULL,
  model         character varying(200) DEFAULT ''::character varying NOT NULL,
  cost_nusd     bigint DEFAULT 0 NOT NULL,
  CONSTRAINT usage_stats_pkey PRIMARY KEY (id),
  CONSTRAINT usage_stats_key_date_model_key UNIQUE (api_key_id, date, model),
  CONSTRAINT usage_stats_api_key_id_fkey FOREIGN KEY (api_key_id) REFERENCES api_keys(id) ON DELETE CASCADE,
  CONSTRAINT usage_stats_user_id_fkey FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE
);
CREATE INDEX usage_stats_user_date_idx ON usage_stats USING btree (user_id, date);

CREATE TABLE worker_join_tokens (
  id           uuid DEFAULT gen_random_uuid() NOT NULL,
  token_hash   character(64) NOT NULL,
  prefix       character varying(16) NOT NULL,
  label        character varying(100) NOT NULL,
  created_by   uuid,
  created_at   timestamp with time zone DEFAULT now() NOT NULL,
  expires_at   timestamp with time zone,
  revoked_at   timestamp with time zone,
  uses         integer DEFAULT 0 NOT NULL,
  last_used_at timestamp with time zone,
  owner        uuid,
  CONSTRAINT worker_join_tokens_pkey PRIMARY KEY (id),
  CONSTRAINT worker_join_tokens_token_hash_key UNIQUE (token_hash),
  CONSTRAINT worker_join_tokens_created_by_fkey FOREIGN KEY (created_by) REFERENCES users(id) ON DELETE SET NULL,
  CONSTRAINT worker_join_tokens_owner_fkey FOREIGN KEY (owner) REFERENCES users(id) ON DELETE SET NULL
);
CREATE INDEX worker_join_tokens_prefix ON worker_join_tokens USING btree (prefix);

CREATE TABLE worker_owners (
  worker     character(64) NOT NULL,
  owner      uuid,
  join_token uuid,
  drained    boolean DEFAULT false NOT NULL,
  updated_at timestamp with time zone DEFAULT now() NOT NULL,
  CONSTRAINT worker_owners_pkey PRIMARY KEY (worker),
  CONSTRAINT worker_owners_join_token_fkey FOREIGN KEY (join_token) REFERENCES worker_join_tokens(id) ON DELETE SET NULL,
  CONSTRAINT worker_owners_owner_fkey FOREIGN KEY (owner) REFERENCES users(id) ON DELETE SET NULL
);
CREATE INDEX worker_owners_owner_idx ON worker_owners USING btree (owner);


-- Functions

CREATE OR REPLACE FUNCTION hi_admit(reqs jsonb)
 RETURNS jsonb
 LANGUAGE plpgsql
AS $function$
DECLARE fits boolean;
BEGIN
  INSERT INTO quota_counters (name, cap, expires_at)
    SELECT DISTINCT ON (c->>'name') c->>'name', (c->>'cap')::bigint, (c->>'expires')::timestamptz
    FROM jsonb_array_elements(reqs) r, jsonb_array_elements(r->'counters') c
    ORDER BY c->>'name'
    ON CONFLICT (name) DO NOTHING;
  PERFORM 1 FROM quota_counters
    WHERE name IN (SELECT c->>'name' FROM jsonb_array_elements(reqs) r, jsonb_array_elements(r->'counters') c)
    ORDER BY name FOR UPDATE;
  PERFORM 1 FROM credit_accounts
    WHERE user_id IN (SELECT (r->>'user')::uuid FROM jsonb_array_elements(reqs) r WHERE coalesce((r->>'credit')::bigint, 0) > 0)
    ORDER BY user_id FOR UPDATE;

  SELECT coalesce(bool_and(q.used + q.held + w.amount <= w.cap), true) INTO fits
    FROM (SELECT c->>'name' AS name, sum((c->>'amount')::bigint) AS amount, min((c->>'cap')::bigint) AS cap
          FROM jsonb_array_elements(reqs) r, jsonb_array_elements(r->'counters') c GROUP BY 1) w
    JOIN quota_counters q ON q.name = w.name;
  IF fits THEN
    SELECT coalesce(bool_and(coalesce(a.balance_nusd - a.held_nusd, 0) >= w.amount), true) INTO fits
      FROM (SELECT (r->>'user')::uuid AS user_id, sum((r->>'credit')::bigint) AS amount
            FROM jsonb_array_elements(reqs) r WHERE coalesce((r->>'credit')::bigint, 0) > 0 GROUP BY 1) w
      LEFT JOIN credit_accounts a ON a.user_id = w.user_id;
  END IF;
  IF NOT fits THEN
    RETURN hi_admit_seq(reqs);
  END IF;

  UPDATE quota_counters q SET held = q.held + w.amount, cap = w.cap
    FROM (SELECT c->>'name' AS name, sum((c->>'amount')::bigint) AS amount, min((c->>'cap')::bigint) AS cap
          FROM jsonb_array_elements(reqs) r, jsonb_array_elements(r->'counters') c GROUP BY 1) w
    WHERE q.name = w.name;
  UPDATE credit_accounts a SET held_nusd = a.held_nusd + w.amount, updated_at = now()
    FROM (SELECT (r->>'user')::uuid AS user_id, sum((r->>'credit')::bigint) AS amount
          FROM jsonb_array_elements(reqs) r WHERE coalesce((r->>'credit')::bigint, 0) > 0 GROUP BY 1) w
    WHERE a.user_id = w.user_id;
  INSERT INTO request_logs (id, user_id, api_key_id, prompt_hash, model_used, kind, status, trace_id, gateway, hold, created_at)
    SELECT (r->>'id')::uuid, (r->>'user')::uuid, (r->>'key')::uuid, r->>'promptHash', r->>'model', r->>'kind', 'processing',
           r->>'trace', r->>'gateway', jsonb_build_object('counters', r->'counters', 'credit', coalesce((r->>'credit')::bigint, 0)), (r->>'at')::timestamptz
    FROM jsonb_array_elements(reqs) r;
  RETURN (SELECT coalesce(jsonb_agg('{"ok": true}'::jsonb), '[]'::jsonb) FROM jsonb_array_elements(reqs));
END $function$;

CREATE OR REPLACE FUNCTION hi_admit_seq(reqs jsonb)
 RETURNS jsonb
 LANGUAGE plpgsql
AS $function$
DECLARE
  r jsonb; c jsonb; results jsonb := '[]'::jsonb; refused jsonb; row quota_counters%ROWTYPE;
  acct credit_accounts%ROWTYPE; credit bigint;
BEGIN
  FOR r IN SELECT * FROM jsonb_array_elements(reqs) LOOP
    refused := NULL;
    credit := coalesce((r->>'credit')::bigint, 0);
    FOR c IN SELECT * FROM jsonb_array_elements(r->'counters') ORDER BY value->>'name' LOOP
      INSERT INTO quota_counters (name, cap, expires_at) VALUES (c->>'name', (c->>'cap')::bigint, (c->>'expires')::timestamptz)
        ON CONFLICT (name) DO NOTHING;
      SELECT * INTO row FROM quota_counters WHERE name = c->>'name' FOR UPDATE;
      IF row.cap <> (c->>'cap')::bigint THEN
        UPDATE quota_counters SET cap = (c->>'cap')::bigint WHERE name = row.name;
        row.cap := (c->>'cap')::bigint;
      END IF;
      IF refused IS NULL AND row.used + row.held + (c->>'amount')::bigint > row.cap THEN
        refused := jsonb_build_object('ok', false, 'code', c->>'code', 'counter', row.name, 'cap', row.cap,
          'used', row.used + row.held, 'expires', row.expires_at);
      END IF;
    END LOOP;
    IF refused IS NULL AND credit > 0 THEN
      SELECT * INTO acct FROM credit_accounts WHERE user_id = (r->>'user')::uuid FOR UPDATE;
      IF NOT FOUND OR acct.balance_nusd - acct.held_nusd < credit THEN
        refused := jsonb_build_object('ok', false, 'code', 'INSUFFICIENT_CREDITS', 'counter', 'credits',
          'cap', coalesce(acct.balance_nusd, 0), 'used', coalesce(acct.held_nusd, 0), 'need', credit);
      END IF;
    END IF;
    IF refused IS NOT NULL THEN
      results := results || jsonb_build_array(refused);
      CONTINUE;
    END IF;
    FOR c IN SELECT * FROM jsonb_array_elements(r->'counters') LOOP
      UPDATE quota_counters SET held = held + (c->>'amount')::bigint WHERE name = c->>'name';
    END LOOP;
    IF credit > 0 THEN
      UPDATE credit_accounts SET held_nusd = held_nusd + credit, updated_at = now() WHERE user_id = (r->>'user')::uuid;
    END IF;
    INSERT INTO request_logs (id, user_id, api_key_id, prompt_hash, model_used, kind, status, trace_id, gateway, hold, created_at)
      VALUES ((r->>'id')::uuid, (r->>'user')::uuid, (r->>'key')::uuid, r->>'promptHash', r->>'model', r->>'kind', 'processing',
              r->>'trace', r->>'gateway', jsonb_build_object('counters', r->'counters', 'credit', credit), (r->>'at')::timestamptz);
    results := results || jsonb_build_array(jsonb_build_object('ok', true));
  END LOOP;
  RETURN results;
END $function$;

CREATE OR REPLACE FUNCTION hi_append_only()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
BEGIN RAISE EXCEPTION 'credit_ledger is append-only: add a refund or grant instead'; END $function$;

CREATE OR REPLACE FUNCTION hi_cache_hits(hits jsonb)
 RETURNS jsonb
 LANGUAGE plpgsql
AS $function$
DECLARE h jsonb; out jsonb := '[]'::jsonb; cost bigint; ok boolean;
BEGIN
  FOR h IN SELECT * FROM jsonb_array_elements(hits) LOOP
    cost := greatest(coalesce((h->>'cost')::bigint, 0), 0);
    ok := true;
    IF cost > 0 THEN
      UPDATE credit_accounts SET balance_nusd = balance_nusd - cost, updated_at = now()
        WHERE user_id = (h->>'user')::uuid AND balance_nusd - held_nusd >= cost;
      ok := FOUND;
      IF ok THEN
        INSERT INTO credit_ledger (user_id, kind, amount_nusd, request_id, api_key_id, note)
          VALUES ((h->>'user')::uuid, 'debit', -cost, (h->>'id')::uuid, (h->>'key')::uuid, (h->>'model') || ' (cache)');
        INSERT INTO credit_ledger (user_id, kind, amount_nusd, request_id, note)
          VALUES (NULL, 'fee', cost, (h->>'id')::uuid, (h->>'model') || ' (cache)');
      END IF;
    END IF;
    IF ok THEN
      INSERT INTO request_logs (id, user_id, api_key_id, prompt_hash, model_used, kind, status, trace_id, gateway, tokens_in, tokens_out, tokens_used,
                                cost_nusd, ttft_ms, response_time_ms, cache, cached_from, created_at, finished_at)
        VALUES ((h->>'id')::uuid, (h->>'user')::uuid, (h->>'key')::uuid, h->>'promptHash', h->>'model', h->>'kind', 'success', h->>'trace', h->>'gateway',
                (h->>'tokensIn')::integer, (h->>'tokensOut')::integer, (h->>'tokensIn')::integer + (h->>'tokensOut')::integer,
                cost, 0, (h->>'durationMs')::integer, h->>'cache', (h->>'cachedFrom')::uuid, (h->>'at')::timestamptz, (h->>'at')::timestamptz);
      INSERT INTO usage_stats (user_id, api_key_id, date, model, request_count, error_count, tokens_in, tokens_out, tokens_used, cost_nusd)
        VALUES ((h->>'user')::uuid, (h->>'key')::uuid, ((h->>'at')::timestamptz AT TIME ZONE 'UTC')::date, h->>'model', 1, 0,
                (h->>'tokensIn')::bigint, (h->>'tokensOut')::bigint, (h->>'tokensIn')::bigint + (h->>'tokensOut')::bigint, cost)
        ON CONFLICT (api_key_id, date, model) DO UPDATE SET
          request_count = usage_stats.request_count + 1, tokens_in = usage_stats.tokens_in + EXCLUDED.tokens_in,
          tokens_out = usage_stats.tokens_out + EXCLUDED.tokens_out, tokens_used = usage_stats.tokens_used + EXCLUDED.tokens_used,
          cost_nusd = usage_stats.cost_nusd + EXCLUDED.cost_nusd, updated_at = now();
    END IF;
    out := out || to_jsonb(ok);
  END LOOP;
  RETURN out;
END $function$;

CREATE OR REPLACE FUNCTION hi_cache_prune(max_bytes bigint)
 RETURNS integer
 LANGUAGE plpgsql
AS $function$
DECLARE n integer; m integer;
BEGIN
  DELETE FROM response_cache WHERE expires_at < now();
  GET DIAGNOSTICS n = ROW_COUNT;
  DELETE FROM response_cache WHERE (scope, key) IN (
    SELECT scope, key FROM (
      SELECT scope, key, sum(bytes) OVER (ORDER BY created_at DESC, key) AS running FROM response_cache
    ) s WHERE running > max_bytes);
  GET DIAGNOSTICS m = ROW_COUNT;
  RETURN n + m;
END $function$;

CREATE OR REPLACE FUNCTION hi_idem_claim(p_scope text, p_key text, p_hash text, p_gateway text, ttl_ms bigint, stale_ms bigint)
 RETURNS TABLE(claimed boolean, body_hash text, state text, gateway text, response jsonb)
 LANGUAGE plpgsql
AS $function$
BEGIN
  RETURN QUERY
  INSERT INTO idempotency_keys AS k (scope, key, body_hash, state, gateway, expires_at)
  VALUES (p_scope, p_key, p_hash, 'running', p_gateway, now() + ttl_ms * interval '1 millisecond')
  ON CONFLICT (scope, key) DO UPDATE
    SET body_hash = excluded.body_hash, state = 'running', gateway = excluded.gateway, response = NULL,
        created_at = now(), renewed_at = now(), expires_at = excluded.expires_at
    WHERE k.expires_at < now() OR (k.state = 'running' AND (k.gateway = excluded.gateway OR k.renewed_at < now() - stale_ms * interval '1 millisecond'))
  RETURNING true, k.body_hash::text, k.state, k.gateway::text, k.response;
  IF NOT FOUND THEN
    RETURN QUERY SELECT false, k.body_hash::text, k.state, k.gateway::text, k.response
      FROM idempotency_keys k WHERE k.scope = p_scope AND k.key = p_key;
  END IF;
END $function$;

CREATE OR REPLACE FUNCTION hi_idem_claim_many(p_scopes text[], p_keys text[], p_hashes text[], p_gateway text, ttl_ms bigint, stale_ms bigint)
 RETURNS TABLE(i integer, claimed boolean, body_hash text, state text, gateway text, response jsonb)
 LANGUAGE plpgsql
AS $function$
DECLARE
  won int[];
BEGIN
  WITH input AS (
    SELECT x.scope, x.key, x.hash, x.n::int AS n FROM unnest(p_scopes, p_keys, p_hashes) WITH ORDINALITY AS x(scope, key, hash, n)
  ), ins AS (
    INSERT INTO idempotency_keys AS k (scope, key, body_hash, state, gateway, expires_at)
    SELECT input.scope, input.key, input.hash, 'running', p_gateway, now() + ttl_ms * interval '1 millisecond' FROM input
    ON CONFLICT (scope, key) DO UPDATE
      SET body_hash = excluded.body_hash, state = 'running', gateway = excluded.gateway, response = NULL,
          created_at = now(), renewed_at = now(), expires_at = excluded.expires_at
      WHERE k.expires_at < now() OR (k.state = 'running' AND (k.gateway = excluded.gateway OR k.renewed_at < now() - stale_ms * interval '1 millisecond'))
    RETURNING k.scope, k.key
  )
  SELECT coalesce(array_agg(input.n), '{}') INTO won FROM input JOIN ins ON ins.scope = input.scope AND ins.key = input.key;
  -- a statement of its own: it sees the rows other gateways committed while the insert waited on them
  RETURN QUERY
    SELECT x.n::int, x.n::int = ANY (won), k.body_hash::text, k.state, k.gateway::text, k.response
    FROM unnest(p_scopes, p_keys) WITH ORDINALITY AS x(scope, key, n)
    JOIN idempotency_keys k ON k.scope = x.scope AND k.key = x.key;
END $function$;

CREATE OR REPLACE FUNCTION hi_learned_merge(deltas jsonb, half_life_s double precision)
 RETURNS void
 LANGUAGE plpgsql
AS $function$
BEGIN
  INSERT INTO routing_arms AS a (context, model, n, ok_n, speed_sum, cost_sum, q_n, q_sum, updated_at)
    SELECT d->>'context', d->>'model', (d->>'n')::float8, (d->>'okN')::float8, (d->>'speedSum')::float8, (d->>'costSum')::float8, (d->>'qN')::float8, (d->>'qSum')::float8, now()
    FROM jsonb_array_elements(deltas) d ORDER BY 1, 2
  ON CONFLICT (context, model) DO UPDATE SET
    n = a.n * power(0.5, extract(epoch FROM now() - a.updated_at) / half_life_s) + EXCLUDED.n,
    ok_n = a.ok_n * power(0.5, extract(epoch FROM now() - a.updated_at) / half_life_s) + EXCLUDED.ok_n,
    speed_sum = a.speed_sum * power(0.5, extract(epoch FROM now() - a.updated_at) / half_life_s) + EXCLUDED.speed_sum,
    cost_sum = a.cost_sum * power(0.5, extract(epoch FROM now() - a.updated_at) / half_life_s) + EXCLUDED.cost_sum,
    q_n = a.q_n * power(0.5, extract(epoch FROM now() - a.updated_at) / half_life_s) + EXCLUDED.q_n,
    q_sum = a.q_sum * power(0.5, extract(epoch FROM now() - a.updated_at) / half_life_s) + EXCLUDED.q_sum,
    updated_at = now();
END $function$;

CREATE OR REPLACE FUNCTION hi_lease(gw text, names text[], caps bigint[], expires timestamp with time zone[], needs bigint[], wants bigint[], units bigint[], live_ms integer)
 RETURNS TABLE(name text, granted bigint, cap bigint, used bigint, expires_at timestamp with time zone, exact boolean, waiting boolean)
 LANGUAGE plpgsql
AS $function$
#variable_conflict use_column
DECLARE
  i integer; q quota_counters%ROWTYPE; a credit_accounts%ROWTYPE; uid uuid;
  c bigint; u bigint; e timestamptz; f bigint; rest bigint; g bigint; ex boolean; w boolean; live timestamptz;
BEGIN
  live := now() - make_interval(secs => live_ms / 1000.0);
  INSERT INTO quota_counters (name, cap, expires_at)
    SELECT x.n, x.c, x.e FROM unnest(names, caps, expires) x(n, c, e) WHERE x.n NOT LIKE 'credit:%' ORDER BY x.n COLLATE "C"
    ON CONFLICT ON CONSTRAINT quota_counters_pkey DO NOTHING;
  PERFORM 1 FROM quota_counters qc WHERE qc.name = ANY(names) ORDER BY qc.name COLLATE "C" FOR UPDATE;
  PERFORM 1 FROM credit_accounts ca WHERE ca.user_id IN (SELECT substr(x, 8)::uuid FROM unnest(names) x WHERE x LIKE 'credit:%')
    ORDER BY ca.user_id FOR UPDATE;
  FOR i IN 1 .. coalesce(array_length(names, 1), 0) LOOP
    IF names[i] LIKE 'credit:%' THEN
      uid := substr(names[i], 8)::uuid;
      SELECT * INTO a FROM credit_accounts ca WHERE ca.user_id = uid;
      c := coalesce(a.balance_nusd, 0); u := coalesce(a.held_nusd, 0); e := NULL;
    ELSE
      SELECT * INTO q FROM quota_counters qc WHERE qc.name = names[i];
      IF q.cap <> caps[i] THEN
        UPDATE quota_counters qc SET cap = caps[i] WHERE qc.name = names[i];
        q.cap := caps[i];
      END IF;
      c := q.cap; u := q.used + q.held; e := q.expires_at;
    END IF;
    f := greatest(c - u, 0);
    rest := f - needs[i];
    IF rest >= 8 * greatest(units[i], 1) THEN
      g := needs[i] + least(greatest(wants[i] - needs[i], 0), rest / 4); ex := false;
    ELSE
      g := least(needs[i], f); ex := true;
    END IF;
    IF g > 0 THEN
      IF names[i] LIKE 'credit:%' THEN
        UPDATE credit_accounts ca SET held_nusd = ca.held_nusd + g, updated_at = now() WHERE ca.user_id = uid;
      ELSE
        UPDATE quota_counters qc SET held = qc.held + g WHERE qc.name = names[i];
      END IF;
    END IF;
    INSERT INTO accounting_leases AS l (gateway, name, amount, exact) VALUES (gw, names[i], g, ex)
      ON CONFLICT ON CONSTRAINT accounting_leases_pkey DO UPDATE SET amount = l.amount + g, exact = ex, renewed_at = now();
    w := false;
    IF ex THEN
      UPDATE accounting_leases l SET recall = l.recall + 1
        WHERE l.name = names[i] AND l.gateway <> gw AND NOT l.exact AND l.amount > 0 AND l.recall = l.ack AND l.renewed_at > live;
      IF FOUND THEN PERFORM pg_notify('hi_recall', gw || '|' || names[i]); END IF;
      w := EXISTS (SELECT 1 FROM accounting_leases l WHERE l.name = names[i] AND l.gateway <> gw AND l.amount > 0 AND l.recall > l.ack AND l.renewed_at > live);
    END IF;
    name := names[i]; granted := g; cap := c; used := u; expires_at := e; exact := ex; waiting := w;
    RETURN NEXT;
  END LOOP;
END $function$;

CREATE OR REPLACE FUNCTION hi_lease_release(gw text, stale_ms integer)
 RETURNS integer
 LANGUAGE plpgsql
AS $function$
DECLARE names text[]; n integer;
BEGIN
  SELECT array_agg(DISTINCT l.name) INTO names FROM accounting_leases l
    WHERE (gw IS NOT NULL AND l.gateway = gw) OR (gw IS NULL AND l.renewed_at < now() - make_interval(secs => stale_ms / 1000.0));
  IF names IS NULL THEN RETURN 0; END IF;
  PERFORM 1 FROM quota_counters qc WHERE qc.name = ANY(names) ORDER BY qc.name COLLATE "C" FOR UPDATE;
  PERFORM 1 FROM credit_accounts ca WHERE ca.user_id IN (SELECT substr(x, 8)::uuid FROM unnest(names) x WHERE x LIKE 'credit:%')
    ORDER BY ca.user_id FOR UPDATE;
  WITH d AS (
    DELETE FROM accounting_leases l
    WHERE l.name = ANY(names) AND ((gw IS NOT NULL AND l.gateway = gw) OR (gw IS NULL AND l.renewed_at < now() - make_interval(secs => stale_ms / 1000.0)))
    RETURNING l.name, l.amount
  ), s AS (SELECT d.name, sum(d.amount) AS amount, count(*) AS n FROM d GROUP BY d.name),
  uq AS (UPDATE quota_counters qc SET held = greatest(qc.held - s.amount, 0) FROM s WHERE qc.name = s.name RETURNING 1),
  uc AS (
    UPDATE credit_accounts ca SET held_nusd = greatest(ca.held_nusd - s.amount, 0), updated_at = now()
    FROM s WHERE s.name LIKE 'credit:%' AND ca.user_id = substr(s.name, 8)::uuid RETURNING 1
  )
  SELECT coalesce(sum(s.n), 0)::integer INTO n FROM s;
  RETURN n;
END $function$;

CREATE OR REPLACE FUNCTION hi_lease_renew(gw text)
 RETURNS TABLE(name text, recalled boolean)
 LANGUAGE sql
AS $function$
  UPDATE accounting_leases l SET renewed_at = now() WHERE l.gateway = gw RETURNING l.name, l.recall > l.ack
$function$;

CREATE OR REPLACE FUNCTION hi_lease_return(gw text, names text[], amounts bigint[], answer boolean)
 RETURNS void
 LANGUAGE plpgsql
AS $function$
BEGIN
  PERFORM 1 FROM quota_counters qc WHERE qc.name = ANY(names) ORDER BY qc.name COLLATE "C" FOR UPDATE;
  PERFORM 1 FROM credit_accounts ca WHERE ca.user_id IN (SELECT substr(x, 8)::uuid FROM unnest(names) x WHERE x LIKE 'credit:%')
    ORDER BY ca.user_id FOR UPDATE;
  WITH r AS (SELECT x.n, sum(x.a) AS a FROM unnest(names, amounts) x(n, a) GROUP BY x.n),
  d AS (SELECT l.name, least(r.a, l.amount) AS dec FROM accounting_leases l JOIN r ON r.n = l.name WHERE l.gateway = gw FOR UPDATE OF l),
  ul AS (
    UPDATE accounting_leases l SET amount = l.amount - d.dec, ack = CASE WHEN answer THEN l.recall ELSE l.ack END,
      exact = l.exact OR answer, renewed_at = now()
    FROM d WHERE l.gateway = gw AND l.name = d.name RETURNING 1
  ), uq AS (
    UPDATE quota_counters qc SET held = greatest(qc.held - d.dec, 0) FROM d WHERE qc.name = d.name RETURNING 1
  )
  UPDATE credit_accounts ca SET held_nusd = greatest(ca.held_nusd - d.dec, 0), updated_at = now()
    FROM d WHERE d.name LIKE 'credit:%' AND ca.user_id = substr(d.name, 8)::uuid;
  IF NOT answer THEN
    DELETE FROM accounting_leases l WHERE l.gateway = gw AND l.name = ANY(names) AND l.amount = 0;
  END IF;
END $function$;

CREATE OR REPLACE FUNCTION hi_record(gw text, ids uuid[], users uuid[], keys uuid[], models text[], kinds text[], hashes text[], traces text[], statuses text[], workers text[], tins integer[], touts integer[], costs bigint[], ttfts integer[], durs integer[], codes text[], msgs text[], created timestamp with time zone[], finished timestamp with time zone[], crel bigint[], cids uuid[], cnames text[], cactual bigint[], crels bigint[], owners uuid[], fees bigint[])
 RETURNS integer
 LANGUAGE plpgsql
AS $function$
DECLARE done uuid[];
BEGIN
  PERFORM 1 FROM quota_counters qc WHERE qc.name = ANY(cnames) ORDER BY qc.name COLLATE "C" FOR UPDATE;
  PERFORM 1 FROM credit_accounts ca WHERE ca.user_id IN (
      SELECT x.u FROM unnest(users, costs, crel) x(u, c, r) WHERE x.c > 0 OR x.r > 0
      UNION SELECT x.o FROM unnest(owners, costs) x(o, c) WHERE x.o IS NOT NULL AND x.c > 0)
    ORDER BY ca.user_id FOR UPDATE;
  WITH x AS (
    SELECT * FROM unnest(ids, users, keys, models, kinds, hashes, traces, statuses, workers, tins, touts, costs, ttfts, durs, codes, msgs, created, finished)
      AS x(id, user_id, key_id, model, kind, hash, trace, status, worker, tin, tout, cost, ttft, dur, code, msg, created, finished)
  ), ins AS (
    INSERT INTO request_logs (id, user_id, api_key_id, prompt_hash, model_used, kind, status, trace_id, gateway, worker, tokens_in, tokens_out,
                              tokens_used, cost_nusd, ttft_ms, response_time_ms, error_code, error_message, created_at, finished_at)
    SELECT x.id, u.id, k.id, x.hash, x.model, x.kind, x.status, x.trace, gw, x.worker, x.tin, x.tout, x.tin + x.tout, x.cost, x.ttft, x.dur,
           x.code, x.msg, x.created, x.finished
    FROM x LEFT JOIN users u ON u.id = x.user_id LEFT JOIN api_keys k ON k.id = x.key_id
    ON CONFLICT (id) DO NOTHING
    RETURNING id
  )
  SELECT array_agg(ins.id) INTO done FROM ins;
  IF done IS NULL THEN RETURN 0; END IF;

  WITH s AS (
    SELECT c.name, sum(c.actual) AS actual, sum(c.rel) AS rel
    FROM unnest(cids, cnames, cactual, crels) c(id, name, actual, rel) WHERE c.id = ANY(done) GROUP BY c.name
  ), d AS (
    SELECT s.name, s.actual, least(s.rel, coalesce(l.amount, 0)) AS dec
    FROM s LEFT JOIN accounting_leases l ON l.gateway = gw AND l.name = s.name
  ), ul AS (
    UPDATE accounting_leases l SET amount = l.amount - d.dec FROM d WHERE l.gateway = gw AND l.name = d.name AND d.dec > 0 RETURNING 1
  )
  UPDATE quota_counters qc SET used = qc.used + d.actual, held = greatest(qc.held - d.dec, 0) FROM d WHERE qc.name = d.name;

  WITH x AS (
    SELECT * FROM unnest(ids, users, costs, crel) x(id, user_id, cost, rel) WHERE x.id = ANY(done) AND (x.cost > 0 OR x.rel > 0)
  ), s AS (SELECT x.user_id, sum(x.cost) AS charge, sum(x.cost + x.rel) AS rel FROM x GROUP BY x.user_id),
  d AS (
    SELECT s.user_id, s.charge, least(s.rel, coalesce(l.amount, 0)) AS dec
    FROM s LEFT JOIN accounting_leases l ON l.gateway = gw AND l.name = 'credit:' || s.user_id::text
  ), ul AS (
    UPDATE accounting_leases l SET amount = l.amount - d.dec FROM d WHERE l.gateway = gw AND l.name = 'credit:' || d.user_id::text AND d.dec > 0 RETURNING 1
  )
  UPDATE credit_accounts ca SET balance_nusd = ca.balance_nusd - d.charge, held_nusd = greatest(ca.held_nusd - d.dec, 0), updated_at = now()
    FROM d WHERE ca.user_id = d.user_id;

  INSERT INTO credit_ledger (user_id, kind, amount_nusd, request_id, api_key_id, note)
    SELECT u.id, 'debit', -x.cost, x.id, k.id, x.model
    FROM unnest(ids, users, keys, costs, models) x(id, user_id, key_id, cost, model)
    JOIN users u ON u.id = x.user_id LEFT JOIN api_keys k ON k.id = x.key_id
    WHERE x.id = ANY(done) AND x.cost > 0;

  -- the debit's split, only for a debit recorded above (its payer still exists)
  WITH p AS (
    SELECT x.id, o.id AS owner, x.cost, x.model,
           CASE WHEN o.id IS NULL THEN 0 ELSE x.cost - least(greatest(coalesce(x.fee, x.cost), 0), x.cost) END AS earning
    FROM unnest(ids, users, costs, owners, fees, models) x(id, user_id, cost, owner, fee, model)
    JOIN users u ON u.id = x.user_id LEFT JOIN users o ON o.id = x.owner
    WHERE x.id = ANY(done) AND x.cost > 0
  ), ua AS (
    UPDATE credit_accounts ca SET balance_nusd = ca.balance_nusd + s.earning, updated_at = now()
      FROM (SELECT p.owner, sum(p.earning) AS earning FROM p WHERE p.earning > 0 GROUP BY p.owner) s WHERE ca.user_id = s.owner
    RETURNING 1
  ), le AS (
    INSERT INTO credit_ledger (user_id, kind, amount_nusd, request_id, note)
      SELECT p.owner, 'earning', p.earning, p.id, p.model FROM p WHERE p.earning > 0
    RETURNING 1
  )
  INSERT INTO credit_ledger (user_id, kind, amount_nusd, request_id, note)
    SELECT NULL, 'fee', p.cost - p.earning, p.id, p.model FROM p WHERE p.cost - p.earning > 0;

  INSERT INTO usage_stats (user_id, api_key_id, date, model, request_count, error_count, tokens_in, tokens_out, tokens_used, cost_nusd)
    SELECT u.id, k.id, (x.created AT TIME ZONE 'UTC')::date, x.model, count(*), count(*) FILTER (WHERE x.status <> 'success'),
           sum(x.tin), sum(x.tout), sum(x.tin + x.tout), sum(x.cost)
    FROM unnest(ids, users, keys, models, statuses, tins, touts, costs, created) x(id, user_id, key_id, model, status, tin, tout, cost, created)
    JOIN users u ON u.id = x.user_id JOIN api_keys k ON k.id = x.key_id
    WHERE x.id = ANY(done)
    GROUP BY 1, 2, 3, 4
    ON CONFLICT (api_key_id, date, model) DO UPDATE SET
      request_count = usage_stats.request_count + EXCLUDED.request_count, error_count = usage_stats.error_count + EXCLUDED.error_count,
      tokens_in = usage_stats.tokens_in + EXCLUDED.tokens_in, tokens_out = usage_stats.tokens_out + EXCLUDED.tokens_out,
      tokens_used = usage_stats.tokens_used + EXCLUDED.tokens_used, cost_nusd = usage_stats.cost_nusd + EXCLUDED.cost_nusd,
      updated_at = now();
  RETURN array_length(done, 1);
END $function$;

CREATE OR REPLACE FUNCTION hi_settle(recs jsonb)
 RETURNS integer
 LANGUAGE plpgsql
AS $function$
DECLARE n integer; names text[];
BEGIN
  SELECT array_agg(DISTINCT e->>'name') INTO names
    FROM request_logs r, jsonb_array_elements(coalesce(r.hold->'counters', '[]'::jsonb)) e
    WHERE r.id IN (SELECT (x->>'id')::uuid FROM jsonb_array_elements(recs) x) AND r.status = 'processing';
  PERFORM 1 FROM quota_counters WHERE name = ANY(coalesce(names, '{}')) ORDER BY name FOR UPDATE;
  PERFORM 1 FROM credit_accounts WHERE user_id IN (
      SELECT r.user_id FROM request_logs r
      WHERE r.id IN (SELECT (x->>'id')::uuid FROM jsonb_array_elements(recs) x) AND r.status = 'processing' AND coalesce((r.hold->>'credit')::bigint, 0) > 0)
    ORDER BY user_id FOR UPDATE;

  WITH f AS (
    SELECT DISTINCT ON (x.id) x.* FROM jsonb_to_recordset(recs) AS x(id uuid, status text, worker text, "tokensIn" bigint, "tokensOut" bigint,
      cost bigint, "ttftMs" integer, "durationMs" integer, "errorCode" text, "errorMessage" text, "finishedAt" timestamptz)
  ), l AS (
    SELECT r.id, r.user_id, r.api_key_id, r.model_used, r.created_at, r.hold
    FROM request_logs r JOIN f ON f.id = r.id WHERE r.status = 'processing' ORDER BY r.id FOR UPDATE OF r
  ), c AS (
    SELECT f.*, l.user_id, l.api_key_id, l.model_used, l.created_at, l.hold,
           coalesce(f."tokensIn", 0) AS tin, coalesce(f."tokensOut", 0) AS tout,
           coalesce(f."tokensIn", 0) + coalesce(f."tokensOut", 0) AS tokens,
           coalesce((l.hold->>'credit')::bigint, 0) AS held_credit,
           least(greatest(coalesce(f.cost, 0), 0), coalesce((l.hold->>'credit')::bigint, 0)) AS charge
    FROM f JOIN l ON l.id = f.id
  ), upd AS (
    UPDATE request_logs r SET status = c.status, worker = c.worker, tokens_in = c.tin, tokens_out = c.tout, tokens_used = c.tokens,
      cost_nusd = c.charge, ttft_ms = c."ttftMs", response_time_ms = c."durationMs", error_code = c."errorCode",
      error_message = c."errorMessage", hold = NULL, finished_at = coalesce(c."finishedAt", now())
    FROM c WHERE r.id = c.id RETURNING r.id
  ), cnt AS (
    SELECT e->>'name' AS name, sum((e->>'amount')::bigint) AS released,
           sum(CASE e->>'unit' WHEN 'tokens' THEN least(c.tokens, (e->>'amount')::bigint)
                               WHEN 'nusd' THEN least(c.charge, (e->>'amount')::bigint)
                               ELSE (e->>'amount')::bigint END) AS actual
    FROM c, jsonb_array_elements(coalesce(c.hold->'counters', '[]'::jsonb)) e GROUP BY 1
  ), qc AS (
    UPDATE quota_counters q SET held = greatest(q.held - cnt.released, 0), used = q.used + cnt.actual
    FROM cnt WHERE q.name = cnt.name RETURNING 1
  ), cr AS (
    UPDATE credit_accounts a SET held_nusd = greatest(a.held_nusd - s.held, 0), balance_nusd = a.balance_nusd - s.charge, updated_at = now()
    FROM (SELECT user_id, sum(held_credit) AS held, sum(charge) AS charge FROM c WHERE held_credit > 0 GROUP BY user_id) s
    WHERE a.user_id = s.user_id RETURNING 1
  ), led AS (
    INSERT INTO credit_ledger (user_id, kind, amount_nusd, request_id, api_key_id, note)
    SELECT user_id, 'debit', -charge, id, api_key_id, model_used FROM c WHERE held_credit > 0 AND charge > 0 AND user_id IS NOT NULL RETURNING 1
  ), us AS (
    INSERT INTO usage_stats (user_id, api_key_id, date, model, request_count, error_count, tokens_in, tokens_out, tokens_used, cost_nusd)
    SELECT user_id, api_key_id, (created_at AT TIME ZONE 'UTC')::date, model_used, count(*), count(*) FILTER (WHERE status <> 'success'),
           sum(tin), sum(tout), sum(tokens), sum(charge)
    FROM c WHERE user_id IS NOT NULL AND api_key_id IS NOT NULL GROUP BY 1, 2, 3, 4
    ON CONFLICT (api_key_id, date, model) DO UPDATE SET
      request_count = usage_stats.request_count + EXCLUDED.request_count, error_count = usage_stats.error_count + EXCLUDED.error_count,
      tokens_in = usage_stats.tokens_in + EXCLUDED.tokens_in, tokens_out = usage_stats.tokens_out + EXCLUDED.tokens_out,
      tokens_used = usage_stats.tokens_used + EXCLUDED.tokens_used, cost_nusd = usage_stats.cost_nusd + EXCLUDED.cost_nusd,
      updated_at = now()
    RETURNING 1
  )
  SELECT (SELECT count(*) FROM upd) INTO n;
  RETURN n;
END $function$;

CREATE OR REPLACE FUNCTION hi_sweep(timeout_ms integer)
 RETURNS integer
 LANGUAGE plpgsql
AS $function$
DECLARE recs jsonb;
BEGIN
  SELECT coalesce(jsonb_agg(jsonb_build_object('id', id, 'status', 'failed', 'tokensIn', 0, 'tokensOut', 0, 'cost', 0,
           'durationMs', least(extract(epoch FROM now() - created_at) * 1000, 2147483647)::integer, 'errorCode', 'STUCK',
           'errorMessage', format('no result within %s ms: the gateway serving it stopped or lost the database', timeout_ms))), '[]'::jsonb)
    INTO recs
    FROM (SELECT id, created_at FROM request_logs WHERE status = 'processing' AND created_at < now() - make_interval(secs => timeout_ms / 1000.0)
          ORDER BY created_at LIMIT 1000) s;
  -- a live gateway renews its leases every second: never release one sooner than 30 s
  PERFORM hi_lease_release(NULL, greatest(timeout_ms, 30000));
  DELETE FROM quota_counters WHERE expires_at < now() - interval '1 day' AND held = 0;
  RETURN hi_settle(recs);
END $function$;


-- Triggers

CREATE TRIGGER credit_ledger_append_only BEFORE DELETE OR UPDATE ON credit_ledger FOR EACH ROW EXECUTE FUNCTION hi_append_only();
