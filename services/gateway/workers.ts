import type { Peer } from '../../shared/mesh/peer.ts'
import type { ModelInfo } from '../../shared/protocol/inference.ts'
import type { WorkerSummary, ModelListing } from '../../shared/protocol/gateway.ts'

// The workers connected to this gateway, and the choice of one for a request: among live, approved
// workers that serve the model, whose breaker is closed and that have not already failed this
// request, two are drawn at random and the one with fewer outstanding requests (relative to its
// capacity) wins — power of two choices: near-best balance without herding every gateway onto the
// same idle worker. A worker that fails `threshold` times in a row (BreakerOptions) is skipped for
// `cooldownMs`, then gets one trial request (half-open) before it is trusted again. A worker its
// owner drained gets nothing new; with `cheapest`, only the workers charging least for the model
// are drawn from (the router's cost strategy).

export interface WorkerConn {
  publicKey: string
  peer: Peer
  models: Map<string, ModelInfo>
  /** what routing weighs its load by: the worker's latest claim, never above `registeredCapacity` */
  capacity: number
  /** the capacity it registered with, which is recorded in the registry (the operator sees it there) */
  registeredCapacity: number
  label: string | null
  inflight: number
  served: number
  failures: number
  connectedAt: Date
  /** routable only once approved (token, mesh allow-list or an operator) */
  approved: boolean
  /** failures since the last success */
  consecutiveFailures: number
  /** breaker open until this time (ms epoch); 0 = closed */
  openUntil: number
  /** half-open: one trial request is out */
  trial: boolean
  /** the worker's own report (all gateways' traffic), from its last heartbeat */
  reported: { inflight: number, queue: number, draining: boolean, at: number } | null
}

export interface BreakerOptions { threshold?: number, cooldownMs?: number, random?: () => number }

export class WorkerPool {
  private readonly workers = new Map<string, WorkerConn>()
  private readonly threshold: number
  private readonly cooldownMs: number
  private readonly random: () => number
  private drained: (key: string) => boolean = () => false
  private blendedPrice: (key: string, model: string) => number = () => 0

  constructor (opts: BreakerOptions = {}) {
    this.threshold = opts.threshold ?? 3
    this.cooldownMs = opts.cooldownMs ?? 10_000
    this.random = opts.random ?? Math.random
  }

  /** which workers their owners drained, and what a worker charges for a model (one number, to compare) */
  operators (drained: (key: string) => boolean, blendedPrice: (key: string, model: string) => number): void {
    this.drained = drained
    this.blendedPrice = blendedPrice
  }

  get size (): number { let n = 0; for (const w of this.workers.values()) if (w.approved && !w.peer.isClosed) n++; return n }

  upsert (peer: Peer, models: ModelInfo[], capacity: number, label: string | null, approved: boolean): WorkerConn {
    const existing = this.workers.get(peer.remoteKey)
    if (existing && existing.peer === peer) {
      existing.models = new Map(models.map((m) => [m.id, m]))
      existing.capacity = capacity
      existing.registeredCapacity = capacity
      existing.label = label
      existing.approved = approved
      return existing
    }
    const conn: WorkerConn = {
      publicKey: peer.remoteKey, peer, models: new Map(models.map((m) => [m.id, m])), capacity, registeredCapacity: capacity, label,
      inflight: 0, served: 0, failures: 0, connectedAt: new Date(), approved, consecutiveFailures: 0, openUntil: 0, trial: false, reported: null
    }
    this.workers.set(peer.remoteKey, conn)
    peer.channel.on('close', () => {
      if (this.workers.get(conn.publicKey) === conn) this.workers.delete(conn.publicKey)
    })
    return conn
  }

  get (key: string): WorkerConn | undefined { return this.workers.get(key) }
  all (): WorkerConn[] { return [...this.workers.values()] }

  /** a worker that sent heartbeats and then went silent for this long is skipped (half-open connection) */
  staleAfterMs = 10_000

  /** A worker's load report. It may lower its capacity (it is busy elsewhere), never raise it past what it registered. */
  heartbeat (w: WorkerConn, beat: { inflight: number, queue: number, capacity: number, draining: boolean }): void {
    w.reported = { inflight: beat.inflight, queue: beat.queue, draining: beat.draining, at: Date.now() }
    w.capacity = Math.max(1, Math.min(beat.capacity, w.registeredCapacity))
  }

  /** outstanding work relative to capacity: what this gateway sent, or the worker's own count if larger */
  load (w: WorkerConn): number {
    const fresh = w.reported && Date.now() - w.reported.at < this.staleAfterMs ? w.reported.inflight + w.reported.queue : 0
    return Math.max(w.inflight, fresh) / w.capacity
  }

  private routable (w: WorkerConn, model: string, now: number): boolean {
    if (w.peer.isClosed || !w.approved || !w.models.has(model) || this.drained(w.publicKey)) return false
    if (w.reported && (w.reported.draining || now - w.reported.at > this.staleAfterMs)) return false
    if (w.openUntil > now) return false
    if (w.openUntil !== 0 && w.trial) return false // half-open: its one trial request is still out
    return true
  }

  pick (model: string, exclude: Set<string> = new Set(), cheapest = false): WorkerConn | null {
    const now = Date.now()
    let ok: WorkerConn[] = []
    for (const w of this.workers.values()) if (!exclude.has(w.publicKey) && this.routable(w, model, now)) ok.push(w)
    if (ok.length === 0) return null
    if (cheapest && ok.length > 1) {
      const price = new Map(ok.map((w) => [w, this.blendedPrice(w.publicKey, model)]))
      const least = Math.min(...price.values())
      ok = ok.filter((w) => price.get(w) === least)
    }
    let chosen: WorkerConn
    if (ok.length === 1) chosen = ok[0]!
    else {
      const i = Math.floor(this.random() * ok.length)
      let j = Math.floor(this.random() * (ok.length - 1))
      if (j >= i) j++
      const a = ok[i]!
      const b = ok[j]!
      const la = this.load(a)
      const lb = this.load(b)
      chosen = la < lb || (la === lb && a.served <= b.served) ? a : b
    }
    if (chosen.openUntil !== 0) chosen.trial = true
    return chosen
  }

  /** The outcome of one attempt, for the breaker. */
  report (w: WorkerConn, ok: boolean): void {
    if (ok) {
      w.consecutiveFailures = 0
      w.openUntil = 0
      w.trial = false
      return
    }
    w.failures++
    w.consecutiveFailures++
    if (w.trial || w.consecutiveFailures >= this.threshold) {
      w.openUntil = Date.now() + this.cooldownMs
      w.trial = false
    }
  }

  breakerOpen (w: WorkerConn): boolean { return w.openUntil > Date.now() }

  serves (model: string): boolean {
    return this.served(model) !== null
  }

  /** the model as a connected, approved worker serves it (its backend), or null */
  served (model: string): ModelInfo | null {
    for (const w of this.workers.values()) {
      if (w.peer.isClosed || !w.approved) continue
      const m = w.models.get(model)
      if (m) return m
    }
    return null
  }

  /** the keys of the connected, approved workers that serve the model */
  servers (model: string): string[] {
    const out: string[] = []
    for (const w of this.workers.values()) if (!w.peer.isClosed && w.approved && w.models.has(model)) out.push(w.publicKey)
    return out
  }

  modelIds (): string[] {
    const ids = new Set<string>()
    for (const w of this.workers.values()) if (!w.peer.isClosed && w.approved) for (const id of w.models.keys()) ids.add(id)
    return [...ids].sort()
  }

  listing (): ModelListing[] {
    const out = new Map<string, ModelListing>()
    for (const w of this.workers.values()) {
      if (w.peer.isClosed || !w.approved) continue
      for (const m of w.models.values()) {
        const cur = out.get(m.id)
        if (cur) cur.workers++
        else out.set(m.id, { ...m, workers: 1 })
      }
    }
    return [...out.values()].sort((a, b) => a.id.localeCompare(b.id))
  }

  /** approved workers only: this answers public health checks (admins see everyone via the registry) */
  summaries (): WorkerSummary[] {
    return [...this.workers.values()].filter((w) => w.approved).map((w) => ({
      publicKey: w.publicKey, models: [...w.models.keys()], inflight: w.inflight, served: w.served, failures: w.failures, connectedAt: w.connectedAt.toISOString(),
      approved: w.approved, breaker: w.openUntil > Date.now() ? 'open' as const : w.openUntil !== 0 ? 'half-open' as const : 'closed' as const, capacity: w.capacity, label: w.label
    }))
  }

  inflightFor (model: string): number {
    let n = 0
    for (const w of this.workers.values()) if (w.models.has(model)) n += w.inflight
    return n
  }

  inflight (): number {
    let n = 0
    for (const w of this.workers.values()) n += w.inflight
    return n
  }
}
