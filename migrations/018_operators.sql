-- Operator accounts, their prices and their payouts.
-- A worker belongs to an account (worker_owners): the one its join token was issued to. Operators
-- price the models their workers serve (operator_prices, nano-USD per token) within an admin's
-- bounds (price_bounds). When a request is recorded, its debit is split in the same transaction:
-- the serving worker's owner is credited the charge less the network fee ('earning'), and the
-- network keeps the fee ('fee', no account). earning + fee = debit for every request, exactly.

ALTER TABLE worker_join_tokens ADD COLUMN owner uuid REFERENCES users(id) ON DELETE SET NULL;
UPDATE worker_join_tokens SET owner = created_by WHERE owner IS NULL;

CREATE TABLE worker_owners (
  worker     char(64)    PRIMARY KEY,
  owner      uuid        REFERENCES users(id) ON DELETE SET NULL,
  join_token uuid        REFERENCES worker_join_tokens(id) ON DELETE SET NULL,
  -- drained: no gateway sends it new requests until its owner (or an admin) resumes it
  drained    boolean     NOT NULL DEFAULT false,
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX worker_owners_owner_idx ON worker_owners (owner);

CREATE TABLE price_bounds (
  model      varchar(200) PRIMARY KEY,
  min_input  bigint NOT NULL CHECK (min_input >= 0),
  max_input  bigint NOT NULL CHECK (max_input >= min_input),
  min_output bigint NOT NULL CHECK (min_output >= 0),
  max_output bigint NOT NULL CHECK (max_output >= min_output),
  updated_by uuid REFERENCES users(id) ON DELETE SET NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE operator_prices (
  owner       uuid         NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  model       varchar(200) NOT NULL,
  -- nano-USD per token
  input_nusd  bigint       NOT NULL CHECK (input_nusd >= 0),
  output_nusd bigint       NOT NULL CHECK (output_nusd >= 0),
  updated_at  timestamptz  NOT NULL DEFAULT now(),
  PRIMARY KEY (owner, model)
);

-- the ledger gains an operator's earnings and the network's fees; a fee belongs to no account
ALTER TABLE credit_ledger DROP CONSTRAINT credit_ledger_kind_check;
ALTER TABLE credit_ledger ADD CONSTRAINT credit_ledger_kind_check CHECK (kind IN ('grant', 'debit', 'refund', 'earning', 'fee'));
ALTER TABLE credit_ledger ALTER COLUMN user_id DROP NOT NULL;
ALTER TABLE credit_ledger ADD CONSTRAINT credit_ledger_account_check CHECK ((user_id IS NULL) = (kind = 'fee'));
CREATE UNIQUE INDEX credit_ledger_request_earning_key ON credit_ledger (request_id) WHERE kind = 'earning';
CREATE UNIQUE INDEX credit_ledger_request_fee_key ON credit_ledger (request_id) WHERE kind = 'fee';
CREATE INDEX credit_ledger_payout_idx ON credit_ledger (created_at) WHERE kind IN ('earning', 'fee');

-- hi_record (migrations/009) plus, per request, the serving worker's owner and the network's fee:
-- a charged request whose owner is an account credits it cost - fee ('earning', balance included)
-- and records the fee; with no owner the whole charge is the fee. Owners' credit accounts are locked
-- with the payers', in user id order.
DROP FUNCTION hi_record(text, uuid[], uuid[], uuid[], text[], text[], text[], text[], text[], text[], integer[], integer[], bigint[],
  integer[], integer[], text[], text[], timestamptz[], timestamptz[], bigint[], uuid[], text[], bigint[], bigint[]);
CREATE FUNCTION hi_record(gw text, ids uuid[], users uuid[], keys uuid[], models text[], kinds text[], hashes text[], traces text[],
  statuses text[], workers text[], tins integer[], touts integer[], costs bigint[], ttfts integer[], durs integer[], codes text[], msgs text[],
  created timestamptz[], finished timestamptz[], crel bigint[], cids uuid[], cnames text[], cactual bigint[], crels bigint[],
  owners uuid[], fees bigint[])
RETURNS integer LANGUAGE plpgsql AS $$
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
END $$;

-- A cache hit is answered by the gateway, not by a worker: the network keeps all of its charge as the fee.
CREATE OR REPLACE FUNCTION hi_cache_hits(hits jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
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
END $$;
