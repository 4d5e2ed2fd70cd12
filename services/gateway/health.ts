import type pg from 'pg'
import type { GatewayHealth } from '../../shared/protocol/gateway.ts'
import type { WorkerPool } from './workers.ts'

// The gateway's health, as getServiceHealth answers it (disclosure.ts trims it for strangers).

/**
 * getServiceHealth is public: strangers calling it in a loop must not become database load. One
 * probe at a time, its answer reused for a second.
 */
export class DatabaseProbe {
  private readonly pool: pg.Pool
  private last: { at: number, ok: Promise<boolean> } | null = null

  constructor (pool: pg.Pool) {
    this.pool = pool
  }

  ok (): Promise<boolean> {
    const now = Date.now()
    if (!this.last || now - this.last.at > 1000) {
      this.last = { at: now, ok: this.pool.query('SELECT 1').then(() => true, () => false) }
    }
    return this.last.ok
  }
}

export function gatewayHealth (s: { publicKey: string, startedAt: number, authUp: boolean, dbOk: boolean, workers: WorkerPool }): GatewayHealth {
  const workers = s.workers.summaries()
  return {
    status: s.authUp && s.dbOk && s.workers.size > 0 ? 'ok' : 'degraded',
    publicKey: s.publicKey,
    uptimeSeconds: Math.round((Date.now() - s.startedAt) / 1000),
    auth: s.authUp ? 'connected' : 'disconnected',
    database: s.dbOk ? 'ok' : 'error',
    workerCount: workers.length,
    workers,
    models: s.workers.modelIds(),
    inflight: s.workers.inflight()
  }
}
