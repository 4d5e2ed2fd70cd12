-- Accounting in sets (same rules as 002, fewer statements per request). Under load a batch of
-- admissions nearly always fits every limit at once: then the whole batch is checked and applied in
-- a handful of set-based statements, and only a batch that crosses a limit takes the exact
-- one-request-at-a-time path (002's function, kept as hi_admit_seq). Settlement is set-based always.
-- Lock order everywhere: quota counters by name, then credit accounts by user id, then request rows;
-- the sweeper no longer locks rows itself (that inverted the order), and the ledger skips a row whose
-- user is gone.

ALTER FUNCTION hi_admit(jsonb) RENAME TO hi_admit_seq;

CREATE FUNCTION hi_admit(reqs jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
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
END $$;

CREATE OR REPLACE FUNCTION hi_settle(recs jsonb) RETURNS integer LANGUAGE plpgsql AS $$
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
END $$;

CREATE OR REPLACE FUNCTION hi_sweep(timeout_ms integer) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE recs jsonb;
BEGIN
  SELECT coalesce(jsonb_agg(jsonb_build_object('id', id, 'status', 'failed', 'tokensIn', 0, 'tokensOut', 0, 'cost', 0,
           'durationMs', least(extract(epoch FROM now() - created_at) * 1000, 2147483647)::integer, 'errorCode', 'STUCK',
           'errorMessage', format('no result within %s ms: the gateway serving it stopped or lost the database', timeout_ms))), '[]'::jsonb)
    INTO recs
    FROM (SELECT id, created_at FROM request_logs WHERE status = 'processing' AND created_at < now() - make_interval(secs => timeout_ms / 1000.0)
          ORDER BY created_at LIMIT 1000) s;
  DELETE FROM quota_counters WHERE expires_at < now() - interval '1 day' AND held = 0;
  RETURN hi_settle(recs);
END $$;
