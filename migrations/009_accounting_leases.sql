-- Leased accounting. A gateway no longer holds each request on the shared rows: it leases a slice of
-- each counter and of each credit balance ahead of demand (accounting_leases; the slice is counted in
-- quota_counters.held or credit_accounts.held_nusd like any hold), admits against it in memory, and
-- records finished requests here later, in batches (hi_record). Slices shrink as a limit nears its
-- end; close to it a lease grows by exactly what one batch of requests needs ("exact"), and the other
-- gateways' unused slices of it are recalled (pg_notify 'hi_recall'), so the total admitted never
-- exceeds a limit and a refusal waits until no live gateway sits on unused allowance.
-- Lock order everywhere: quota counters by name (COLLATE "C"), then credit accounts by user id, then
-- lease rows.

CREATE TABLE accounting_leases (
  gateway    char(64)    NOT NULL,
  -- a quota_counters name, or 'credit:<user id>' for a slice of that user's credits
  name       text        NOT NULL,
  amount     bigint      NOT NULL DEFAULT 0 CHECK (amount >= 0),
  -- the holder admits near the end one batch at a time and gives back what requests leave unused
  exact      boolean     NOT NULL DEFAULT false,
  -- another gateway asked for the unused part (recall > ack) and waits for the holder's answer
  recall     bigint      NOT NULL DEFAULT 0,
  ack        bigint      NOT NULL DEFAULT 0,
  renewed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (gateway, name)
);
CREATE INDEX accounting_leases_name_idx ON accounting_leases (name);

-- Grant slices to gateway `gw`. Per name (counters first, then credits, each in lock order): `need`
-- is what requests waiting now need beyond the slice the gateway has, `want` what it would like
-- (need plus about a second of demand), `unit` the largest single request among them. With room to
-- spare a lease grows by need + at most a quarter of what is left beyond it; with less than 8 units
-- of room left it grows by at most need (exact), and other live gateways' leases are recalled.
-- Returns per name: granted, cap, used (used + held before the grant), expires_at, exact, and
-- waiting: another live gateway has not yet answered a recall (a refusal should wait for it).
CREATE FUNCTION hi_lease(gw text, names text[], caps bigint[], expires timestamptz[], needs bigint[], wants bigint[], units bigint[], live_ms integer)
RETURNS TABLE (name text, granted bigint, cap bigint, used bigint, expires_at timestamptz, exact boolean, waiting boolean)
LANGUAGE plpgsql AS $$
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
END $$;

-- Give back parts of gateway `gw`'s leases (at most what each holds); with `answer`, this also
-- answers their recalls: the gateway admits near the end exactly from now on.
CREATE FUNCTION hi_lease_return(gw text, names text[], amounts bigint[], answer boolean) RETURNS void LANGUAGE plpgsql AS $$
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
END $$;

-- Release whole leases: every lease of gateway `gw` (it restarted, after replaying its settlement
-- log), or with gw NULL every lease not renewed for `stale_ms` (its gateway stopped). Returns how many.
CREATE FUNCTION hi_lease_release(gw text, stale_ms integer) RETURNS integer LANGUAGE plpgsql AS $$
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
END $$;

-- A live gateway's leases stay its own: it renews them every second. Returns its leases, and
-- whether another gateway waits for its answer to a recall (a missed notification is caught here).
CREATE FUNCTION hi_lease_renew(gw text) RETURNS TABLE (name text, recalled boolean) LANGUAGE sql AS $$
  UPDATE accounting_leases l SET renewed_at = now() WHERE l.gateway = gw RETURNING l.name, l.recall > l.ack
$$;

-- Record finished requests, once each: a request already in request_logs (a replayed settlement log)
-- changes nothing. Per request: its row (the user or key may be gone since: then NULL), its
-- charge debited in the ledger, the day's rollup. Per counter use (cid, cname): `actual` moves to
-- used, and `rel` (actual, plus what the request left unused when its gateway gives that back at
-- once) leaves the gateway's lease and the counter's held. Credits alike: the charge leaves the
-- balance, charge + crel leave the lease and held_nusd. A lease the sweeper already released
-- (its gateway was gone) gives nothing back twice. Returns how many requests were recorded.
CREATE FUNCTION hi_record(gw text, ids uuid[], users uuid[], keys uuid[], models text[], kinds text[], hashes text[], traces text[],
  statuses text[], workers text[], tins integer[], touts integer[], costs bigint[], ttfts integer[], durs integer[], codes text[], msgs text[],
  created timestamptz[], finished timestamptz[], crel bigint[], cids uuid[], cnames text[], cactual bigint[], crels bigint[])
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE done uuid[];
BEGIN
  PERFORM 1 FROM quota_counters qc WHERE qc.name = ANY(cnames) ORDER BY qc.name COLLATE "C" FOR UPDATE;
  PERFORM 1 FROM credit_accounts ca WHERE ca.user_id IN (
      SELECT x.u FROM unnest(users, costs, crel) x(u, c, r) WHERE x.c > 0 OR x.r > 0)
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
END $$;

-- The sweeper also releases the leases of gateways that stopped renewing them.
CREATE OR REPLACE FUNCTION hi_sweep(timeout_ms integer) RETURNS integer LANGUAGE plpgsql AS $$
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
END $$;
