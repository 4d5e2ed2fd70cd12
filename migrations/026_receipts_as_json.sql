-- Usage receipts are kept as the JSON text the gateway wrote (json), not taken apart into jsonb: they
-- are only ever stored whole and read back whole, and converting each one to jsonb was most of what
-- storing it cost PostgreSQL (about 30 µs of its CPU a request under load).

ALTER TABLE request_receipts ALTER COLUMN receipt TYPE json USING receipt::json;
