-- Idempotent requests: a caller's retry with the same idempotency key (HTTP Idempotency-Key, the
-- RPC requestId) gets the first attempt's answer, or its state, and is charged once.
--
-- One row per (scope, key), scope being the API key's id. `body_hash` is what the first attempt
-- asked (a retry asking something else is refused); `state` is 'running' while a gateway works on
-- it (its public key in `gateway`) and 'done' once `response` holds the answer to replay. A failed
-- attempt deletes its row, so a retry runs anew. Rows live until `expires_at`; a 'running' row whose
-- gateway stopped renewing it (`renewed_at`) may be taken over.

CREATE TABLE idempotency_keys (
  scope       text        NOT NULL,
  key         text        NOT NULL,
  body_hash   char(64)    NOT NULL,
  state       text        NOT NULL CHECK (state IN ('running', 'done')),
  gateway     char(64)    NOT NULL,
  response    jsonb,
  created_at  timestamptz NOT NULL DEFAULT now(),
  renewed_at  timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz NOT NULL,
  PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_expires_idx ON idempotency_keys (expires_at);

-- Claim (scope, key) for a new attempt. Returns the row as it stands afterwards, and whether this
-- call claimed it: an expired row, or a 'running' row not renewed within stale_ms, is taken over, and
-- so is a 'running' row of the calling gateway (its previous process stopped before the answer).
CREATE OR REPLACE FUNCTION hi_idem_claim(p_scope text, p_key text, p_hash text, p_gateway text, ttl_ms bigint, stale_ms bigint)
RETURNS TABLE (claimed boolean, body_hash text, state text, gateway text, response jsonb) LANGUAGE plpgsql AS $$
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
END $$;
