-- The response cache's shared tier (every gateway reads and writes it), its per-key settings, and
-- cache hits in the request log. A hit is a finished request row with `cache` set to the tier that
-- answered it and `cached_from` naming the request whose answer it replayed; it is billed at the
-- operator's cache price (often 0) and rolled into usage_stats like any other request.

CREATE TABLE response_cache (
  scope       text        NOT NULL,           -- the account (user id), or '*' when the operator shares entries
  key         char(64)    NOT NULL,           -- sha256 of model + normalized messages + parameters
  model       varchar(200) NOT NULL,
  entry       jsonb       NOT NULL,           -- { chunks, usage, finishReason, sourceId }
  embedding   real[],                         -- the prompt's embedding, for semantic lookups
  params_key  char(64),                       -- what a semantic match must share: model, parameters, context
  bytes       integer     NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz NOT NULL,
  hits        integer     NOT NULL DEFAULT 0,
  warm        boolean     NOT NULL DEFAULT false, -- written by predictive warm-up rather than a caller
  PRIMARY KEY (scope, key)
);
CREATE INDEX response_cache_expiry_idx ON response_cache (expires_at);
CREATE INDEX response_cache_semantic_idx ON response_cache (scope, params_key, created_at) WHERE embedding IS NOT NULL;

-- semantic lookups are opt-in per API key
CREATE TABLE cache_key_settings (
  api_key_id uuid PRIMARY KEY REFERENCES api_keys(id) ON DELETE CASCADE,
  semantic   boolean NOT NULL DEFAULT false,
  threshold  real CHECK (threshold IS NULL OR (threshold > 0 AND threshold <= 1)),
  updated_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE request_logs
  ADD COLUMN cache       text CHECK (cache IS NULL OR cache IN ('local', 'shared', 'semantic')),
  ADD COLUMN cached_from uuid;
CREATE INDEX request_logs_cache_idx ON request_logs (created_at) WHERE cache IS NOT NULL;

-- Record a batch of cache hits: each a finished 'success' row, its usage_stats rollup and, when the
-- hit has a price, its debit. A priced hit the account's available credits cannot cover is not
-- recorded and comes back false, and the gateway then serves the request the normal way (which
-- refuses it with INSUFFICIENT_CREDITS). Returns one boolean per hit, in order.
--   [{ id, user, key, model, kind, promptHash, trace, gateway, cache, cachedFrom, tokensIn, tokensOut, cost, durationMs, at }]
CREATE FUNCTION hi_cache_hits(hits jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
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

-- Keep the shared tier within `max_bytes`: drop expired entries, then the least recently written.
CREATE FUNCTION hi_cache_prune(max_bytes bigint) RETURNS integer LANGUAGE plpgsql AS $$
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
END $$;
