-- Learned routing: what each gateway has learned about each model, per context (the task), shared by
-- every gateway and kept across restarts; and the scores users give answers.
--
-- Each row holds exponentially decayed sums (a half-life set by the gateways), so old evidence fades
-- and a model whose behaviour drifts is re-learned. A gateway adds its new observations with
-- hi_learned_merge, which decays the stored sums to now before adding.

CREATE TABLE routing_arms (
  context     text             NOT NULL,
  model       varchar(200)     NOT NULL,
  n           double precision NOT NULL DEFAULT 0, -- decayed count of outcomes
  ok_n        double precision NOT NULL DEFAULT 0, -- decayed count of successful outcomes
  speed_sum   double precision NOT NULL DEFAULT 0, -- decayed sum of speed rewards in [0, 1], successes only
  cost_sum    double precision NOT NULL DEFAULT 0, -- decayed sum of cost rewards in [0, 1], successes only
  q_n         double precision NOT NULL DEFAULT 0, -- decayed count of user scores
  q_sum       double precision NOT NULL DEFAULT 0, -- decayed sum of user scores in [0, 1]
  updated_at  timestamptz      NOT NULL DEFAULT now(),
  PRIMARY KEY (context, model)
);

-- no foreign key to request_logs: a request's row may reach it after its user scored the answer
CREATE TABLE request_feedback (
  request_id uuid PRIMARY KEY,
  user_id    uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  score      real NOT NULL CHECK (score >= 0 AND score <= 1),
  comment    text,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX request_logs_trace_idx ON request_logs (user_id, trace_id);

-- Add a batch of deltas [{ context, model, n, okN, speedSum, costSum, qN, qSum }] decayed with `half_life_s`.
CREATE FUNCTION hi_learned_merge(deltas jsonb, half_life_s double precision) RETURNS void LANGUAGE plpgsql AS $$
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
END $$;
