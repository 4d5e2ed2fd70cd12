-- Claims of idempotency keys in batches: a gateway under load claims the keys of every request that
-- arrived meanwhile in one statement instead of one round trip each. Each (scope, key) of a batch is
-- claimed exactly as hi_idem_claim claims one (migrations/017); a gateway never sends the same pair
-- twice in one batch (a retry on the same gateway attaches to the running request there).
-- Returns one row per input, by its position `i` (1-based), as the row stands afterwards; no row for
-- an input whose key vanished between the claim and the read (a failed attempt deleted it).

CREATE OR REPLACE FUNCTION hi_idem_claim_many(p_scopes text[], p_keys text[], p_hashes text[], p_gateway text, ttl_ms bigint, stale_ms bigint)
RETURNS TABLE (i int, claimed boolean, body_hash text, state text, gateway text, response jsonb) LANGUAGE plpgsql AS $$
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
END $$;
