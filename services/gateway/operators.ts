import type pg from 'pg'
import { MeshError } from '../../shared/errors.ts'
import type { RequestOf, ResponseOf } from '../../shared/mesh/method.ts'
import type { PublicUser } from '../../shared/protocol/auth.ts'
import type { RegistryWorker } from '../../shared/protocol/gateway.ts'
import type { HandlerBuilder } from '../../shared/mesh/peer.ts'
import { OperatorProtocol, type EarningsRow, type PayoutRow } from '../../shared/protocol/operators.ts'
import type { OperatorStore } from './operator-store.ts'

// What an operator (any account that owns workers) and an admin may do about workers, prices and
// payouts. An operator sees, drains and prices its own workers only (FORBIDDEN for another
// account's); an admin sees and drains every worker, sets the price bounds and exports payouts.
// Reads of earnings first wait until this gateway's answered requests are in PostgreSQL.

type Req<K extends keyof typeof OperatorProtocol> = RequestOf<typeof OperatorProtocol[K]>
type Res<K extends keyof typeof OperatorProtocol> = ResponseOf<typeof OperatorProtocol[K]>

export interface OperatorDeps {
  pool: pg.Pool
  store: OperatorStore
  user (token: string): Promise<PublicUser>
  /** every worker in the registry and waiting here, with its live state */
  workers (): RegistryWorker[]
  /** the models a worker serves (the registry's entry, or what it announced here) */
  modelsOf (worker: string): string[]
  /** resolves once this gateway's answered requests are recorded */
  settled (): Promise<void>
  feePct: number
}

const DAY_MS = 86_400_000

/** [since, until) from YYYY-MM-DD days: the last 30 days by default, `until` inclusive. */
function period (since?: string, until?: string): [Date, Date] {
  const end = until ? new Date(Date.parse(until + 'T00:00:00Z') + DAY_MS) : new Date(Date.now() + DAY_MS)
  const start = since ? new Date(since + 'T00:00:00Z') : new Date(end.getTime() - 31 * DAY_MS)
  if (!Number.isFinite(start.getTime()) || !Number.isFinite(end.getTime())) throw MeshError.BAD_REQUEST('since and until must be real days')
  return [start, end]
}

/** A CSV field: quoted when it holds a comma, quote or line break; a leading formula character is defused. */
function csvField (v: string | number): string {
  let s = String(v)
  if (/^[=+\-@\t\r]/.test(s) && typeof v === 'string') s = "'" + s
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s
}

export class OperatorMethods {
  constructor (private readonly deps: OperatorDeps) {}

  mount (table: HandlerBuilder, admin: (token: string) => Promise<PublicUser>): HandlerBuilder {
    return table
      .on(OperatorProtocol.drainWorker, (req) => this.drainWorker(req))
      .on(OperatorProtocol.setPrice, (req) => this.setPrice(req))
      .on(OperatorProtocol.prices, (req) => this.prices(req))
      .on(OperatorProtocol.setPriceBounds, async (req) => this.setPriceBounds(req, await admin(req.token)))
      .on(OperatorProtocol.earnings, (req) => this.earnings(req))
      .on(OperatorProtocol.payoutExport, async (req) => { await admin(req.token); return this.payoutExport(req) })
  }

  /** An admin's list is every worker; anyone else's, the workers their account owns. */
  async workers (token: string): Promise<{ workers: RegistryWorker[] }> {
    const user = await this.deps.user(token)
    const { store } = this.deps
    let list = this.deps.workers()
    if (user.role !== 'admin') list = list.filter((w) => store.ownerOf(w.key) === user.id)
    const owners = [...new Set(list.map((w) => store.ownerOf(w.key)).filter((o): o is string => o !== null))]
    const names = await store.names(owners)
    return { workers: list.map((w) => ({ ...w, owner: names.get(store.ownerOf(w.key) ?? '') ?? null, drained: store.isDrained(w.key) })) }
  }

  async drainWorker (req: Req<'drainWorker'>): Promise<Res<'drainWorker'>> {
    const user = await this.deps.user(req.token)
    const known = this.deps.workers().some((w) => w.key === req.key)
    if (!known) throw MeshError.NOT_FOUND(`no worker ${req.key.slice(0, 16)}… is known here`)
    if (user.role !== 'admin' && this.deps.store.ownerOf(req.key) !== user.id) {
      throw MeshError.FORBIDDEN(`worker ${req.key.slice(0, 16)}… belongs to another account: only its owner or an admin can drain it`)
    }
    await this.deps.store.setDrained(req.key, req.drain)
    return { key: req.key, drained: req.drain }
  }

  async setPrice (req: Req<'setPrice'>): Promise<Res<'setPrice'>> {
    const user = await this.deps.user(req.token)
    const { store } = this.deps
    const serving = store.workersOf(user.id).some((w) => this.deps.modelsOf(w).includes(req.model))
    if (!serving) throw MeshError.FORBIDDEN(`none of your workers serves '${req.model}': an operator prices the models its own workers serve`)
    const b = store.boundsOf(req.model)
    if (b) {
      for (const [side, v, min, max] of [['input', req.input, b.minInput, b.maxInput], ['output', req.output, b.minOutput, b.maxOutput]] as const) {
        if (v < min || v > max) {
          throw MeshError.BAD_REQUEST(`the ${side} price ${v} nUSD/token is outside the bounds an admin set for '${req.model}': ${min} to ${max}`, { param: side, min, max })
        }
      }
    }
    const price = { input: req.input, output: req.output }
    await store.setPrice(user.id, req.model, price)
    return { model: req.model, ...price, effective: store.clamp(req.model, price) }
  }

  async prices (req: Req<'prices'>): Promise<Res<'prices'>> {
    const user = await this.deps.user(req.token)
    const { store } = this.deps
    return { bounds: store.allBounds(), mine: store.pricesOf(user.id).map((p) => ({ ...p, effective: store.clamp(p.model, p) })), feePct: this.deps.feePct }
  }

  async setPriceBounds (req: Req<'setPriceBounds'>, admin: PublicUser): Promise<Res<'setPriceBounds'>> {
    const b = { model: req.model, minInput: req.minInput, maxInput: req.maxInput, minOutput: req.minOutput, maxOutput: req.maxOutput }
    await this.deps.store.setBounds(b, admin.id)
    return b
  }

  async earnings (req: Req<'earnings'>): Promise<Res<'earnings'>> {
    const user = await this.deps.user(req.token)
    if (req.all && user.role !== 'admin') throw MeshError.FORBIDDEN('only an admin can read every account\'s earnings')
    const [start, end] = period(req.since, req.until)
    await this.deps.settled()
    const { rows } = await this.deps.pool.query<{ day: string, account: string, worker: string | null, model: string, requests: string, tin: string, tout: string, charged: string, earned: string }>(
      `SELECT to_char((r.created_at AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD') AS day, u.username AS account, r.worker, r.model_used AS model,
              count(*) AS requests, sum(r.tokens_in) AS tin, sum(r.tokens_out) AS tout, sum(r.cost_nusd) AS charged, sum(e.amount_nusd) AS earned
       FROM credit_ledger e JOIN request_logs r ON r.id = e.request_id JOIN users u ON u.id = e.user_id
       WHERE e.kind = 'earning' AND ($1::uuid IS NULL OR e.user_id = $1) AND e.created_at >= $2 AND e.created_at < $3
       GROUP BY 1, 2, 3, 4 ORDER BY 1 DESC, 2, 3, 4 LIMIT 2000`, [req.all ? null : user.id, start, end])
    const out: EarningsRow[] = rows.map((r) => ({
      day: r.day, account: r.account, worker: (r.worker ?? '').trim(), model: r.model, requests: Number(r.requests), tokensIn: Number(r.tin), tokensOut: Number(r.tout),
      charged: Number(r.charged), fees: Number(r.charged) - Number(r.earned), earned: Number(r.earned)
    }))
    const total = out.reduce((t, r) => ({ charged: t.charged + r.charged, fees: t.fees + r.fees, earned: t.earned + r.earned }), { charged: 0, fees: 0, earned: 0 })
    return { rows: out, total, feePct: this.deps.feePct }
  }

  async payoutExport (req: Req<'payoutExport'>): Promise<Res<'payoutExport'>> {
    const [start, end] = period(req.since, req.until)
    await this.deps.settled()
    const { rows } = await this.deps.pool.query<{ id: string, username: string, email: string, requests: string, charged: string, earned: string }>(
      `SELECT u.id, u.username, u.email, count(*) AS requests, sum(r.cost_nusd) AS charged, sum(e.amount_nusd) AS earned
       FROM credit_ledger e JOIN users u ON u.id = e.user_id JOIN request_logs r ON r.id = e.request_id
       WHERE e.kind = 'earning' AND e.created_at >= $1 AND e.created_at < $2
       GROUP BY u.id ORDER BY u.username`, [start, end])
    const out: PayoutRow[] = rows.map((r) => ({
      account: r.username, accountId: r.id, email: r.email, requests: Number(r.requests),
      charged: Number(r.charged), fees: Number(r.charged) - Number(r.earned), earned: Number(r.earned)
    }))
    const header = 'account_id,account,email,requests,charged_nusd,fees_nusd,earned_nusd,earned_usd,period_start,period_end'
    const day = (d: Date) => d.toISOString().slice(0, 10)
    const lastDay = new Date(end.getTime() - DAY_MS)
    const lines = out.map((r) => [r.accountId, r.account, r.email, r.requests, r.charged, r.fees, r.earned, (r.earned / 1e9).toFixed(9), day(start), day(lastDay)].map(csvField).join(','))
    return { rows: out, csv: [header, ...lines].join('\n') + '\n' }
  }
}
