import type pg from 'pg'
import type { Logger } from '../../shared/log.ts'
import type { PriceBounds, TokenPrice } from '../../shared/protocol/operators.ts'

// Which account each worker belongs to, whether it is drained, what each operator charges per model
// and the admin's bounds on it: PostgreSQL holds them (shared by every gateway), and this gateway
// keeps a copy in memory that it reloads every `refreshMs`, so routing, holds and settlement read
// them with no database round trip. A change made here applies here at once, elsewhere within
// `refreshMs`.

interface WorkerOwner { owner: string | null, drained: boolean }

export interface OperatorStoreOptions {
  pool: pg.Pool
  log: Logger
  refreshMs?: number
}

export class OperatorStore {
  private readonly pool: pg.Pool
  private readonly log: Logger
  private readonly refreshMs: number
  private workers = new Map<string, WorkerOwner>()
  private prices = new Map<string, Map<string, TokenPrice>>()
  private bounds = new Map<string, PriceBounds>()
  private timer: NodeJS.Timeout | null = null
  private loaded: Promise<void> | null = null

  constructor (opts: OperatorStoreOptions) {
    this.pool = opts.pool
    this.log = opts.log
    this.refreshMs = opts.refreshMs ?? 2000
  }

  /** Load once, then keep reloading; resolves after the first load (or its failure: it is retried). */
  start (): Promise<void> {
    this.loaded ??= this.refresh().catch((err) => this.log.warn({ err: (err as Error).message }, 'operator data not loaded yet; retrying'))
    this.timer ??= setInterval(() => { void this.refresh().catch((err) => this.log.debug({ err: (err as Error).message }, 'operator data reload failed')) }, this.refreshMs)
    this.timer.unref()
    return this.loaded
  }

  /** Resolves once the first load is done, or after `ms`: a worker joining waits for its owner to be known. */
  ready (ms = 5000): Promise<void> {
    return Promise.race([this.loaded ?? Promise.resolve(), new Promise<void>((resolve) => setTimeout(resolve, ms).unref())])
  }

  close (): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = null
  }

  async refresh (): Promise<void> {
    const [w, p, b] = await Promise.all([
      this.pool.query<{ worker: string, owner: string | null, drained: boolean }>('SELECT worker, owner, drained FROM worker_owners'),
      this.pool.query<{ owner: string, model: string, input_nusd: string, output_nusd: string }>('SELECT owner, model, input_nusd, output_nusd FROM operator_prices'),
      this.pool.query<{ model: string, min_input: string, max_input: string, min_output: string, max_output: string }>('SELECT * FROM price_bounds')
    ])
    this.workers = new Map(w.rows.map((r) => [r.worker.trim(), { owner: r.owner, drained: r.drained }]))
    const prices = new Map<string, Map<string, TokenPrice>>()
    for (const r of p.rows) {
      let mine = prices.get(r.owner)
      if (!mine) prices.set(r.owner, mine = new Map())
      mine.set(r.model, { input: Number(r.input_nusd), output: Number(r.output_nusd) })
    }
    this.prices = prices
    this.bounds = new Map(b.rows.map((r) => [r.model, {
      model: r.model, minInput: Number(r.min_input), maxInput: Number(r.max_input), minOutput: Number(r.min_output), maxOutput: Number(r.max_output)
    }]))
  }

  ownerOf (worker: string): string | null { return this.workers.get(worker)?.owner ?? null }
  isDrained (worker: string): boolean { return this.workers.get(worker)?.drained ?? false }
  /** every worker an account owns */
  workersOf (owner: string): string[] { return [...this.workers].filter(([, w]) => w.owner === owner).map(([k]) => k) }
  allBounds (): PriceBounds[] { return [...this.bounds.values()].sort((a, b) => a.model.localeCompare(b.model)) }
  boundsOf (model: string): PriceBounds | null { return this.bounds.get(model) ?? null }
  pricesOf (owner: string): Array<TokenPrice & { model: string }> {
    return [...(this.prices.get(owner) ?? new Map<string, TokenPrice>())].map(([model, p]) => ({ model, ...p })).sort((a, b) => a.model.localeCompare(b.model))
  }

  /** What `worker`'s owner charges for `model`, nano-USD per token, held within the bounds; null: it set no price. */
  priceOf (worker: string, model: string): TokenPrice | null {
    const owner = this.ownerOf(worker)
    const set = owner ? this.prices.get(owner)?.get(model) : undefined
    return set ? this.clamp(model, set) : null
  }

  clamp (model: string, p: TokenPrice): TokenPrice {
    const b = this.bounds.get(model)
    if (!b) return p
    return { input: Math.min(Math.max(p.input, b.minInput), b.maxInput), output: Math.min(Math.max(p.output, b.minOutput), b.maxOutput) }
  }

  /**
   * A worker joined with a join token: it belongs to the token's owner from now on (a later token
   * of another account moves it). The owner's credit account exists before any earning reaches it.
   */
  async claim (worker: string, tokenId: string, owner: string | null): Promise<void> {
    await this.pool.query(
      `WITH a AS (INSERT INTO credit_accounts (user_id) SELECT $3::uuid WHERE $3::uuid IS NOT NULL ON CONFLICT DO NOTHING)
       INSERT INTO worker_owners (worker, owner, join_token) VALUES ($1, $3, $2)
       ON CONFLICT (worker) DO UPDATE SET owner = EXCLUDED.owner, join_token = EXCLUDED.join_token, updated_at = now()`, [worker, tokenId, owner])
    const prev = this.workers.get(worker)
    this.workers.set(worker, { owner, drained: prev?.drained ?? false })
  }

  async setDrained (worker: string, drained: boolean): Promise<void> {
    await this.pool.query(
      `INSERT INTO worker_owners (worker, drained) VALUES ($1, $2)
       ON CONFLICT (worker) DO UPDATE SET drained = EXCLUDED.drained, updated_at = now()`, [worker, drained])
    const prev = this.workers.get(worker)
    this.workers.set(worker, { owner: prev?.owner ?? null, drained })
  }

  async setPrice (owner: string, model: string, p: TokenPrice): Promise<void> {
    await this.pool.query(
      `INSERT INTO operator_prices (owner, model, input_nusd, output_nusd) VALUES ($1, $2, $3, $4)
       ON CONFLICT (owner, model) DO UPDATE SET input_nusd = EXCLUDED.input_nusd, output_nusd = EXCLUDED.output_nusd, updated_at = now()`,
      [owner, model, p.input, p.output])
    let mine = this.prices.get(owner)
    if (!mine) this.prices.set(owner, mine = new Map())
    mine.set(model, p)
  }

  async setBounds (b: PriceBounds, by: string): Promise<void> {
    await this.pool.query(
      `INSERT INTO price_bounds (model, min_input, max_input, min_output, max_output, updated_by) VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (model) DO UPDATE SET min_input = EXCLUDED.min_input, max_input = EXCLUDED.max_input, min_output = EXCLUDED.min_output,
         max_output = EXCLUDED.max_output, updated_by = EXCLUDED.updated_by, updated_at = now()`,
      [b.model, b.minInput, b.maxInput, b.minOutput, b.maxOutput, by])
    this.bounds.set(b.model, b)
  }

  /** account id → name, for the accounts given */
  async names (ids: string[]): Promise<Map<string, string>> {
    if (ids.length === 0) return new Map()
    const { rows } = await this.pool.query<{ id: string, username: string }>('SELECT id, username FROM users WHERE id = ANY($1::uuid[])', [ids])
    return new Map(rows.map((r) => [r.id, r.username]))
  }
}
