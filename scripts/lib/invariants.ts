import type pg from 'pg'

// The accounting invariants, read straight from PostgreSQL: what every test that faults the mesh,
// and `npm run chaos`, checks once the mesh is at rest. Each check names what differs, so a failure
// says where to look.

export interface Check { name: string, ok: boolean, detail: string }

/** usage_stats must equal the request log it summarises, per key, day and model. */
export async function rollupsMatch (pool: pg.Pool): Promise<Check> {
  const { rows } = await pool.query(`
    WITH logs AS (
      SELECT api_key_id, (created_at AT TIME ZONE 'UTC')::date AS date, model_used AS model, count(*)::bigint AS requests,
             count(*) FILTER (WHERE status <> 'success')::bigint AS errors, sum(tokens_in)::bigint AS tin, sum(tokens_out)::bigint AS tout, sum(cost_nusd)::bigint AS cost
      FROM request_logs WHERE status <> 'processing' GROUP BY 1, 2, 3),
    stats AS (SELECT api_key_id, date, model, request_count::bigint AS requests, error_count::bigint AS errors, tokens_in AS tin, tokens_out AS tout, cost_nusd AS cost FROM usage_stats)
    SELECT (SELECT count(*) FROM (SELECT * FROM logs EXCEPT SELECT * FROM stats) a) + (SELECT count(*) FROM (SELECT * FROM stats EXCEPT SELECT * FROM logs) b) AS diff,
           (SELECT coalesce(sum(requests), 0) FROM logs) AS requests`)
  return { name: 'usage_stats = request_logs', ok: Number(rows[0].diff) === 0, detail: `${rows[0].diff} differing rows over ${rows[0].requests} requests` }
}

/** Every balance equals the sum of its ledger, and the ledger's running sum never goes below zero. */
export async function ledgerConsistent (pool: pg.Pool): Promise<{ balancesMatch: boolean, neverNegative: boolean }> {
  const { rows: a } = await pool.query(`
    SELECT count(*)::int AS n FROM credit_accounts c
    WHERE c.balance_nusd <> (SELECT coalesce(sum(amount_nusd), 0) FROM credit_ledger l WHERE l.user_id = c.user_id)`)
  const { rows: b } = await pool.query(`
    SELECT count(*)::int AS n FROM (SELECT sum(amount_nusd) OVER (PARTITION BY user_id ORDER BY id) AS running FROM credit_ledger) r WHERE running < 0`)
  return { balancesMatch: a[0].n === 0, neverNegative: b[0].n === 0 }
}

export async function balancesMatchLedger (pool: pg.Pool): Promise<Check> {
  const { balancesMatch, neverNegative } = await ledgerConsistent(pool)
  const { rows } = await pool.query(`
    SELECT count(*)::int AS n FROM credit_ledger l WHERE l.kind = 'debit'
      AND l.amount_nusd <> -(SELECT cost_nusd FROM request_logs r WHERE r.id = l.request_id)`)
  return {
    name: 'balance = ledger',
    ok: balancesMatch && neverNegative && rows[0].n === 0,
    detail: `${balancesMatch ? 'every balance is its ledger\'s sum' : 'a balance differs from its ledger'}; ${neverNegative ? 'never negative' : 'the ledger went below zero'}; ${rows[0].n} debits differ from their request's cost`
  }
}

/** Nothing held: no counter or credit hold, no lease with allowance left. */
export async function noHolds (pool: pg.Pool): Promise<Check> {
  const { rows: [r] } = await pool.query(`
    SELECT (SELECT coalesce(sum(held), 0) FROM quota_counters)::bigint AS counters,
           (SELECT coalesce(sum(held_nusd), 0) FROM credit_accounts)::bigint AS credits,
           (SELECT count(*) FROM accounting_leases WHERE amount > 0)::int AS leases`)
  const ok = Number(r.counters) === 0 && Number(r.credits) === 0 && r.leases === 0
  return { name: 'no holds left', ok, detail: `counters hold ${r.counters}, credits hold ${r.credits} nUSD, ${r.leases} leases with allowance` }
}

export async function noneProcessing (pool: pg.Pool): Promise<Check> {
  const { rows } = await pool.query(`SELECT count(*)::int AS n FROM request_logs WHERE status = 'processing'`)
  return { name: 'none left processing', ok: rows[0].n === 0, detail: `${rows[0].n} requests still processing` }
}

/**
 * Every limit exact: each counter's use is what the request log says was used against it (requests
 * per key and per user and hour, tokens per user and hour and day, cost per key budget), and no
 * counter is over its cap. Cache hits are answered without holding on any limit, so they are not
 * counted; a request cut by a dying gateway (STUCK) counts one request, as any failed request does.
 */
export async function limitsExact (pool: pg.Pool): Promise<Check> {
  const { rows } = await pool.query(`
    WITH c AS (
      SELECT name, cap, used, split_part(name, ':', 1) AS kind, split_part(name, ':', 2) AS who, split_part(name, ':', 3) AS subject, split_part(name, ':', 4) AS period
      FROM quota_counters),
    l AS (
      SELECT r.*, 'h' || to_char(r.created_at AT TIME ZONE 'UTC', 'YYYYMMDDHH24') AS hour, 'd' || to_char(r.created_at AT TIME ZONE 'UTC', 'YYYYMMDD') AS day
      FROM request_logs r WHERE r.status <> 'processing' AND r.cache IS NULL),
    expected AS (
      SELECT c.name, c.cap, c.used, CASE
        WHEN c.kind = 'req' AND c.who = 'k' THEN (SELECT count(*) FROM l WHERE l.api_key_id::text = c.subject AND l.hour = c.period)
        WHEN c.kind = 'req' AND c.who = 'u' THEN (SELECT count(*) FROM l WHERE l.user_id::text = c.subject AND l.hour = c.period)
        WHEN c.kind = 'tok' THEN (SELECT coalesce(sum(l.tokens_in + l.tokens_out), 0) FROM l WHERE l.user_id::text = c.subject AND (l.hour = c.period OR l.day = c.period))
        WHEN c.kind = 'usd' THEN (SELECT coalesce(sum(l.cost_nusd), 0) FROM l WHERE l.api_key_id::text = c.subject)
      END AS want
      FROM c)
    SELECT count(*)::int AS counters,
           count(*) FILTER (WHERE want IS NOT NULL AND used <> want)::int AS differ,
           count(*) FILTER (WHERE used > cap)::int AS over,
           (array_agg(name || ' used ' || used || ' log ' || want) FILTER (WHERE want IS NOT NULL AND used <> want))[1:3] AS examples
    FROM expected`)
  const r = rows[0]
  return {
    name: 'every limit exact',
    ok: r.differ === 0 && r.over === 0,
    detail: `${r.counters} counters: ${r.differ} differ from the log, ${r.over} over their cap${r.examples?.length ? ` (${r.examples.join('; ')})` : ''}`
  }
}

/** All of the above, in order. */
export async function accountingInvariants (pool: pg.Pool): Promise<Check[]> {
  return [await noneProcessing(pool), await rollupsMatch(pool), await balancesMatchLedger(pool), await noHolds(pool), await limitsExact(pool)]
}
