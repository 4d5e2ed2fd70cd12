-- Exact accounting (issue 5): request lifecycle rows, quota counters shared by every gateway, an
-- append-only credits ledger, per-model daily rollups. Money is stored as integer nano-USD
-- (1 USD = 1e9) so sums are exact.

-- request lifecycle: processing → success | failed | cancelled
ALTER TABLE request_logs DROP CONSTRAINT IF EXISTS request_logs_status_check;
UPDATE request_logs SET status = 'failed' WHERE status IN ('error', 'timeout');
ALTER TABLE request_logs ADD CONSTRAINT request_logs_status_check CHECK (status IN ('processing', 'success', 'failed', 'cancelled'));
ALTER TABLE request_logs
  ADD COLUMN kind          text   NOT NULL DEFAULT 'chat',
  ADD COLUMN cost_nusd     bigint NOT NULL DEFAULT 0,
  ADD COLUMN trace_id      text,
  ADD COLUMN gateway       char(64),
  ADD COLUMN error_message text,
  ADD COLUMN hold          jsonb,
  ADD COLUMN finished_at   timestamptz;
UPDATE request_logs SET finished_at = created_at + make_interval(secs => response_time_ms / 1000.0) WHERE finished_at IS NULL;
ALTER TABLE request_logs ALTER COLUMN response_time_ms DROP NOT NULL;
CREATE INDEX request_logs_processing_idx ON request_logs (created_at) WHERE status = 'processing';

-- daily rollups per key and model, rebuilt from the request log they summarise
ALTER TABLE usage_stats DROP CONSTRAINT IF EXISTS usage_stats_api_key_id_date_key;
ALTER TABLE usage_stats ADD COLUMN model varchar(200) NOT NULL DEFAULT '', ADD COLUMN cost_nusd bigint NOT NULL DEFAULT 0;
DELETE FROM usage_stats;
INSERT INTO usage_stats (user_id, api_key_id, date, model, request_count, error_count, tokens_in, tokens_out, tokens_used, cost_nusd)
  SELECT user_id, api_key_id, (created_at AT TIME ZONE 'UTC')::date, model_used, count(*), count(*) FILTER (WHERE status <> 'success'),
         sum(tokens_in), sum(tokens_out), sum(tokens_in + tokens_out), sum(cost_nusd)
  FROM request_logs WHERE status <> 'processing' AND user_id IS NOT NULL AND api_key_id IS NOT NULL
  GROUP BY 1, 2, 3, 4;
ALTER TABLE usage_stats ADD CONSTRAINT usage_stats_key_date_model_key UNIQUE (api_key_id, date, model);

-- keys may carry their own budget and model allow-list
ALTER TABLE api_keys
  ADD COLUMN budget_nusd bigint CHECK (budget_nusd IS NULL OR budget_nusd >= 0),
  ADD COLUMN models      text[];

-- quota counters: one row per (scope, window). used = settled, held = reserved by running requests.
-- Every gateway admits against the same rows, so limits are exact across gateways.
CREATE TABLE quota_counters (
  name       text PRIMARY KEY,
  cap        bigint      NOT NULL,
  used       bigint      NOT NULL DEFAULT 0 CHECK (used >= 0),
  held       bigint      NOT NULL DEFAULT 0 CHECK (held >= 0),
  expires_at timestamptz
);
CREATE INDEX quota_counters_expiry_idx ON quota_counters (expires_at);

-- credits: the ledger is the truth and append-only; credit_accounts.balance_nusd is its running sum,
-- kept in the same transaction as every ledger row (a test checks they agree), plus what running
-- requests hold.
CREATE TABLE credit_ledger (
  id          bigserial PRIMARY KEY,
  user_id     uuid        NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  kind        text        NOT NULL CHECK (kind IN ('grant', 'debit', 'refund')),
  amount_nusd bigint      NOT NULL,
  request_id  uuid,
  api_key_id  uuid,
  actor       uuid,
  note        text,
  created_at  timestamptz NOT NULL DEFAULT now(),
  CHECK ((kind = 'debit') = (amount_nusd < 0) OR amount_nusd = 0)
);
CREATE INDEX credit_ledger_user_idx ON credit_ledger (user_id, id);
CREATE UNIQUE INDEX credit_ledger_request_debit_key ON credit_ledger (request_id) WHERE kind = 'debit';
CREATE FUNCTION hi_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'credit_ledger is append-only: add a refund or grant instead'; END $$;
CREATE TRIGGER credit_ledger_append_only BEFORE UPDATE OR DELETE ON credit_ledger FOR EACH ROW EXECUTE FUNCTION hi_append_only();

CREATE TABLE credit_accounts (
  user_id      uuid PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
  balance_nusd bigint NOT NULL DEFAULT 0 CHECK (balance_nusd >= 0),
  held_nusd    bigint NOT NULL DEFAULT 0 CHECK (held_nusd >= 0),
  updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Admit a batch of requests, in order, in one round trip. Each request:
--   { id, user, key, model, kind, promptHash, trace, gateway, credit (nano-USD hold; 0 = free),
--     counters: [{ name, cap, amount, expires }] }
-- A request is admitted only if every counter and the credit account can hold its worst case; then
-- the holds are taken and its 'processing' row is written. Returns one result per request:
--   { ok: true } | { ok: false, code, counter, cap, used, expires }
CREATE FUNCTION hi_admit(reqs jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
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
END $$;

-- Settle a batch of finished requests. Each: { id, status, worker, tokensIn, tokensOut, cost, ttftMs,
-- durationMs, errorCode, errorMessage, finishedAt }. Only a row still 'processing' is settled (so a
-- retry, or a row the sweeper already failed, changes nothing). The charge never exceeds the hold:
-- counters move from held to used, the credit hold is released and the real cost debited in the
-- ledger, and the day's rollup for (key, model) moves by exactly this row. Returns how many rows settled.
CREATE FUNCTION hi_settle(recs jsonb) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  f jsonb; lr request_logs%ROWTYPE; c jsonb; n integer := 0; amount bigint; actual bigint;
  tokens bigint; cost bigint; held_credit bigint; st text;
BEGIN
  FOR f IN SELECT * FROM jsonb_array_elements(recs) LOOP
    SELECT * INTO lr FROM request_logs WHERE id = (f->>'id')::uuid AND status = 'processing' FOR UPDATE;
    IF NOT FOUND THEN CONTINUE; END IF;
    st := f->>'status';
    tokens := coalesce((f->>'tokensIn')::bigint, 0) + coalesce((f->>'tokensOut')::bigint, 0);
    held_credit := coalesce((lr.hold->>'credit')::bigint, 0);
    cost := least(greatest(coalesce((f->>'cost')::bigint, 0), 0), CASE WHEN held_credit > 0 THEN held_credit ELSE 0 END);
    FOR c IN SELECT * FROM jsonb_array_elements(coalesce(lr.hold->'counters', '[]'::jsonb)) ORDER BY value->>'name' LOOP
      amount := (c->>'amount')::bigint;
      actual := CASE c->>'unit' WHEN 'tokens' THEN least(tokens, amount) WHEN 'nusd' THEN least(cost, amount) ELSE amount END;
      UPDATE quota_counters SET held = greatest(held - amount, 0), used = used + actual WHERE name = c->>'name';
    END LOOP;
    IF held_credit > 0 THEN
      UPDATE credit_accounts SET held_nusd = greatest(held_nusd - held_credit, 0), balance_nusd = balance_nusd - cost, updated_at = now()
        WHERE user_id = lr.user_id;
      IF cost > 0 THEN
        INSERT INTO credit_ledger (user_id, kind, amount_nusd, request_id, api_key_id, note)
          VALUES (lr.user_id, 'debit', -cost, lr.id, lr.api_key_id, lr.model_used);
      END IF;
    END IF;
    UPDATE request_logs SET status = st, worker = f->>'worker',
      tokens_in = coalesce((f->>'tokensIn')::integer, 0), tokens_out = coalesce((f->>'tokensOut')::integer, 0), tokens_used = tokens,
      cost_nusd = cost, ttft_ms = (f->>'ttftMs')::integer, response_time_ms = (f->>'durationMs')::integer,
      error_code = f->>'errorCode', error_message = f->>'errorMessage', hold = NULL,
      finished_at = coalesce((f->>'finishedAt')::timestamptz, now())
      WHERE id = lr.id;
    IF lr.user_id IS NOT NULL AND lr.api_key_id IS NOT NULL THEN
      INSERT INTO usage_stats (user_id, api_key_id, date, model, request_count, error_count, tokens_in, tokens_out, tokens_used, cost_nusd)
        VALUES (lr.user_id, lr.api_key_id, (lr.created_at AT TIME ZONE 'UTC')::date, lr.model_used, 1, CASE WHEN st = 'success' THEN 0 ELSE 1 END,
                coalesce((f->>'tokensIn')::bigint, 0), coalesce((f->>'tokensOut')::bigint, 0), tokens, cost)
        ON CONFLICT (api_key_id, date, model) DO UPDATE SET
          request_count = usage_stats.request_count + 1, error_count = usage_stats.error_count + EXCLUDED.error_count,
          tokens_in = usage_stats.tokens_in + EXCLUDED.tokens_in, tokens_out = usage_stats.tokens_out + EXCLUDED.tokens_out,
          tokens_used = usage_stats.tokens_used + EXCLUDED.tokens_used, cost_nusd = usage_stats.cost_nusd + EXCLUDED.cost_nusd,
          updated_at = now();
    END IF;
    n := n + 1;
  END LOOP;
  RETURN n;
END $$;

-- Fail rows stuck in 'processing' (their gateway died or lost the database) past the timeout:
-- holds released, nothing charged, the reason recorded. Any gateway may run it; SKIP LOCKED keeps
-- two sweepers from fighting over a row.
CREATE FUNCTION hi_sweep(timeout_ms integer) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE recs jsonb;
BEGIN
  SELECT coalesce(jsonb_agg(jsonb_build_object('id', id, 'status', 'failed', 'tokensIn', 0, 'tokensOut', 0, 'cost', 0,
           'durationMs', (extract(epoch FROM now() - created_at) * 1000)::integer, 'errorCode', 'STUCK',
           'errorMessage', format('no result within %s ms: the gateway serving it stopped or lost the database', timeout_ms))), '[]'::jsonb)
    INTO recs
    FROM (SELECT id, created_at FROM request_logs WHERE status = 'processing' AND created_at < now() - make_interval(secs => timeout_ms / 1000.0)
          ORDER BY created_at LIMIT 1000 FOR UPDATE SKIP LOCKED) s;
  DELETE FROM quota_counters WHERE expires_at < now() - interval '1 day' AND held = 0;
  RETURN hi_settle(recs);
END $$;
