-- Signed usage receipts: one per request whose worker signed one (services/gateway/receipts.ts,
-- shared/receipt.ts). `receipt` is the document a user fetches and can check offline: the worker's
-- signed receipt and the gateway's countersignature over what it billed, or, for a receipt refused
-- at settlement ('disputed'), the worker's receipt and why (null when it could not even be read).
-- Rows are written with their request's record, after it, so the request row is always there.

CREATE TABLE request_receipts (
  request_id uuid PRIMARY KEY REFERENCES request_logs(id) ON DELETE CASCADE,
  user_id    uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  status     text NOT NULL CHECK (status IN ('settled', 'disputed')),
  dispute    text,
  receipt    jsonb,
  created_at timestamptz NOT NULL DEFAULT now(),
  CHECK ((status = 'disputed') = (dispute IS NOT NULL)),
  CHECK (status = 'disputed' OR receipt IS NOT NULL)
);
CREATE INDEX request_receipts_user_idx ON request_receipts (user_id, created_at);
