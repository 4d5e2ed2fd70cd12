import type pg from 'pg'
import type { Logger } from '../../shared/log.ts'
import type { LeaseAsk, LeaseGrant, LeaseStore } from './leases.ts'

// The database side of leases.ts: prepared calls of migrations/009_accounting_leases.sql's functions
// (arrays as parameters, no JSON), and the 'hi_recall' notifications that ask this gateway to give
// back an unused slice another gateway needs. The notification listener holds one pool connection
// and reconnects when it drops; a recall it misses is caught by the next renewal (every second).

const RETRY_NOW = new Set(['40P01', '40001']) // deadlock with another gateway's call, serialization failure
/** a gateway that renewed its leases this recently is live: a refusal waits for its answer to a recall */
const LIVE_MS = 5000

async function retrying<T> (run: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await run()
    } catch (err) {
      if (!RETRY_NOW.has((err as { code?: string }).code ?? '') || attempt >= 10) throw err
    }
  }
}

interface GrantRow { name: string, granted: string, cap: string, used: string, expires_at: Date | null, exact: boolean, waiting: boolean }

export class PgLeaseStore implements LeaseStore {
  private listener: pg.PoolClient | null = null
  private stopped = false

  constructor (private readonly pool: pg.Pool, private readonly gateway: string, private readonly log?: Logger) {}

  async lease (asks: LeaseAsk[]): Promise<LeaseGrant[]> {
    const { rows } = await retrying(() => this.pool.query<GrantRow>({
      name: 'hi_lease',
      text: 'SELECT * FROM hi_lease($1, $2::text[], $3::bigint[], $4::timestamptz[], $5::bigint[], $6::bigint[], $7::bigint[], $8)',
      values: [this.gateway, asks.map((a) => a.name), asks.map((a) => a.cap), asks.map((a) => a.expires), asks.map((a) => a.need),
        asks.map((a) => Math.round(a.want)), asks.map((a) => a.unit), LIVE_MS]
    }))
    return rows.map((r) => ({
      name: r.name, granted: Number(r.granted), cap: Number(r.cap), used: Number(r.used),
      expires: r.expires_at ? r.expires_at.toISOString() : null, exact: r.exact, waiting: r.waiting
    }))
  }

  async giveBack (items: Array<{ name: string, amount: number }>, answer: boolean): Promise<void> {
    const sorted = [...items].sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
    await retrying(() => this.pool.query({
      name: 'hi_lease_return',
      text: 'SELECT hi_lease_return($1, $2::text[], $3::bigint[], $4)',
      values: [this.gateway, sorted.map((i) => i.name), sorted.map((i) => i.amount), answer]
    }))
  }

  async renew (): Promise<Array<{ name: string, recalled: boolean }>> {
    const { rows } = await this.pool.query<{ name: string, recalled: boolean }>({ name: 'hi_lease_renew', text: 'SELECT * FROM hi_lease_renew($1)', values: [this.gateway] })
    return rows
  }

  /** Release every lease this gateway holds (at start, after its settlement log is recorded). */
  async releaseAll (): Promise<number> {
    const { rows } = await retrying(() => this.pool.query<{ n: number }>('SELECT hi_lease_release($1, 0) AS n', [this.gateway]))
    return rows[0]!.n
  }

  /** Call `onRecall(name)` when another gateway recalls the unused slices of a limit. */
  listen (onRecall: (name: string) => void): void {
    const connect = async (): Promise<void> => {
      if (this.stopped) return
      try {
        const client = await this.pool.connect()
        this.listener = client
        client.on('notification', (msg) => {
          const payload = msg.payload ?? ''
          const bar = payload.indexOf('|')
          if (bar < 0 || payload.slice(0, bar) === this.gateway) return // our own recall of the others
          onRecall(payload.slice(bar + 1))
        })
        client.on('error', (err) => {
          this.log?.warn({ err: err.message }, 'lease recall listener lost its connection; reconnecting')
          client.release(err)
          if (this.listener === client) this.listener = null
          setTimeout(() => { void connect() }, 1000).unref()
        })
        await client.query('LISTEN hi_recall')
      } catch (err) {
        this.log?.warn({ err: (err as Error).message }, 'lease recall listener could not connect; retrying')
        setTimeout(() => { void connect() }, 1000).unref()
      }
    }
    void connect()
  }

  close (): void {
    this.stopped = true
    const client = this.listener
    this.listener = null
    if (client) {
      client.query('UNLISTEN hi_recall').then(() => client.release(), (err) => client.release(err))
    }
  }
}
