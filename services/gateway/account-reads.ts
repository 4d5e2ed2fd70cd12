import type pg from 'pg'
import type { RequestOf } from '../../shared/mesh/method.ts'
import type { Credits, KeyIdentity, LedgerEntry, PublicUser, UsageReport } from '../../shared/protocol/auth.ts'
import type { GatewayProtocol, Quota, QuotaLimit } from '../../shared/protocol/gateway.ts'
import type { CounterSpec } from './accounting.ts'
import { countersFor, describeCounter, toUsd, type TierLimits } from './limits.ts'

// What an account has used and may still use: daily usage, limits (per key and per account), credits
// and their ledger. The gateway writes all of it (accounting.ts: holds, charges, the daily rollup),
// so it is the one reader too; every dashboard, CLI and HTTP route asks here. A read first waits for
// this gateway's answered requests to reach PostgreSQL (they are recorded in batches after the
// answer), and counts the unused part of this gateway's lease slices as free, not held.

export interface AccountReadsDeps {
  pool: pg.Pool
  keys: { resolve (apiKey: string): Promise<KeyIdentity> }
  /** a session token's user (auth reads it) */
  sessionUser (token: string): Promise<PublicUser>
  tiers: Record<string, TierLimits>
  /** resolves once this gateway's answered requests are in PostgreSQL */
  settled?: () => Promise<void>
  /** the unused part of this gateway's slice of a counter or of 'credit:<user id>' */
  unused?: (name: string) => number
}

interface LedgerRow { id: string, kind: 'grant' | 'debit' | 'refund', amount_nusd: string, request_id: string | null, note: string | null, created_at: Date }
type UsageRow = { date: string, model: string, requests: number, tokens_in: string, tokens_out: string, errors: number, cost: string }

export class AccountReads {
  private readonly deps: AccountReadsDeps

  constructor (deps: AccountReadsDeps) {
    this.deps = deps
  }

  /** The session's usage by day and by model since a date (default: the last 30 days). */
  async usage (req: RequestOf<typeof GatewayProtocol.usage>): Promise<UsageReport> {
    const user = await this.deps.sessionUser(req.token)
    await this.deps.settled?.()
    const since = req.since ?? new Date(Date.now() - ((req.days ?? 30) - 1) * 86_400_000).toISOString().slice(0, 10)
    const { rows } = await this.deps.pool.query<UsageRow>(
      `SELECT to_char(date, 'YYYY-MM-DD') AS date, model, sum(request_count)::int AS requests, sum(tokens_in)::text AS tokens_in,
              sum(tokens_out)::text AS tokens_out, sum(error_count)::int AS errors, sum(cost_nusd)::text AS cost
       FROM usage_stats WHERE user_id = $1 AND date >= $2::date
       GROUP BY date, model ORDER BY date, model`, [user.id, since])
    const zero = () => ({ requests: 0, tokensIn: 0, tokensOut: 0, errors: 0, cost: 0 })
    const add = (a: ReturnType<typeof zero>, r: UsageRow) => {
      a.requests += r.requests; a.tokensIn += Number(r.tokens_in); a.tokensOut += Number(r.tokens_out); a.errors += r.errors; a.cost += Number(r.cost)
    }
    const byDate = new Map<string, ReturnType<typeof zero>>()
    const byModel = new Map<string, ReturnType<typeof zero>>()
    const totals = zero()
    for (const r of rows) {
      if (!byDate.has(r.date)) byDate.set(r.date, zero())
      if (!byModel.has(r.model)) byModel.set(r.model, zero())
      add(byDate.get(r.date)!, r); add(byModel.get(r.model)!, r); add(totals, r)
    }
    const out = ({ cost, ...rest }: ReturnType<typeof zero>) => ({ ...rest, costUsd: toUsd(cost) })
    return {
      userId: user.id,
      since,
      daily: [...byDate].map(([date, a]) => ({ date, ...out(a) })),
      byModel: [...byModel].map(([model, a]) => ({ model, ...out(a) })).sort((a, b) => b.requests - a.requests),
      totals: out(totals),
      credits: await this.credits(user.id)
    }
  }

  /** The session's credits and the newest entries of its ledger. */
  async ledger (req: RequestOf<typeof GatewayProtocol.credits>): Promise<Credits & { ledger: LedgerEntry[] }> {
    const user = await this.deps.sessionUser(req.token)
    await this.deps.settled?.()
    const { rows } = await this.deps.pool.query<LedgerRow>(
      'SELECT id, kind, amount_nusd, request_id, note, created_at FROM credit_ledger WHERE user_id = $1 ORDER BY id DESC LIMIT $2',
      [user.id, req.limit ?? 20])
    const ledger = rows.map((r) => ({ id: Number(r.id), kind: r.kind, amountUsd: toUsd(Number(r.amount_nusd)), requestId: r.request_id, note: r.note, createdAt: r.created_at.toISOString() }))
    return { ...await this.credits(user.id), ledger }
  }

  /** A key's limits: the top-level fields describe its requests per hour; `limits` lists every limit that applies. */
  async quota (apiKey: string): Promise<Quota> {
    const identity = await this.deps.keys.resolve(apiKey)
    await this.deps.settled?.()
    const specs = countersFor({ keyId: identity.keyId, userId: identity.userId, keyTier: identity.tier, userTier: identity.userTier, budgetNusd: identity.budgetNusd },
      this.deps.tiers, { tokens: 0, nusd: 0 })
    const [limits, credits] = await Promise.all([this.limits(specs), this.credits(identity.userId)])
    const key = limits[0]!
    return {
      tier: identity.tier, limit: key.cap, used: key.used, remaining: key.remaining, windowSeconds: 3600, resetsAt: key.resetsAt,
      limits,
      credits,
      models: identity.models
    }
  }

  /** The account's own limits (all keys together) and credits, for a session: what the dashboard shows. */
  async accountQuota (token: string): Promise<{ tier: string, limits: QuotaLimit[], credits: Credits }> {
    const user = await this.deps.sessionUser(token)
    await this.deps.settled?.()
    const specs = countersFor({ keyId: '-', userId: user.id, keyTier: user.tier, userTier: user.tier, budgetNusd: null }, this.deps.tiers, { tokens: 0, nusd: 0 })
      .filter((c) => c.name.split(':')[1] === 'u')
    const [limits, credits] = await Promise.all([this.limits(specs), this.credits(user.id)])
    return { tier: user.tier, limits, credits }
  }

  private async limits (specs: CounterSpec[]): Promise<QuotaLimit[]> {
    const { rows } = await this.deps.pool.query<{ name: string, used: string, held: string }>(
      'SELECT name, used, held FROM quota_counters WHERE name = ANY($1)', [specs.map((c) => c.name)])
    const state = new Map(rows.map((r) => [r.name, Number(r.used) + Number(r.held) - (this.deps.unused?.(r.name) ?? 0)]))
    return specs.map((c) => {
      const used = state.get(c.name) ?? 0
      const money = c.unit === 'nusd'
      return {
        name: c.name.split(':').slice(0, 2).join(':') + (c.expires ? ':' + c.name.split(':')[3]!.slice(0, 1) : ''),
        description: describeCounter(c.name),
        unit: c.unit === 'nusd' ? 'usd' as const : c.unit,
        cap: money ? toUsd(c.cap) : c.cap,
        used: money ? toUsd(used) : used,
        remaining: money ? toUsd(Math.max(0, c.cap - used)) : Math.max(0, c.cap - used),
        resetsAt: c.expires
      }
    })
  }

  /** Balance, what running requests hold, and what is left; an account with no row has nothing. */
  private async credits (userId: string): Promise<Credits> {
    const { rows } = await this.deps.pool.query<{ balance_nusd: string, held_nusd: string }>('SELECT balance_nusd, held_nusd FROM credit_accounts WHERE user_id = $1', [userId])
    const balance = Number(rows[0]?.balance_nusd ?? 0)
    const held = Math.max(0, Number(rows[0]?.held_nusd ?? 0) - (this.deps.unused?.('credit:' + userId) ?? 0))
    return { balanceUsd: toUsd(balance), reservedUsd: toUsd(held), availableUsd: toUsd(balance - held) }
  }
}
