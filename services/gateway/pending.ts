import { MeshError } from '../../shared/errors.ts'
import type { Peer } from '../../shared/mesh/peer.ts'
import type { RegistryWorker } from '../../shared/protocol/gateway.ts'

// Workers waiting for an operator's approval. They live here, in this gateway's memory, and never in
// the append-only registry: anyone can announce a worker as often as they like, so only an approval
// (an operator's act) writes a worker into the registry. An entry lives while its connection does,
// plus a grace period, so a worker that reconnects keeps its place and an operator can still approve
// it. The queue is bounded; when it is full, entries whose connection is gone make room first, and a
// stranger is refused only while every place is held by a live connection. An operator can reject
// one entry (that key is then refused for a while) or clear them all; both drop the connections.

export interface PendingInfo {
  models: string[]
  capacity: number
  label: string
}

export interface PendingEntry extends PendingInfo {
  key: string
  peer: Peer
  /** first registration (ms epoch) */
  askedAt: number
  updatedAt: number
  /** when its connection closed (ms epoch); null while it is connected */
  closedAt: number | null
}

export interface PendingOptions {
  /** workers waiting at once (default 100) */
  max?: number
  /** how long an entry outlives its connection (default 2 minutes) */
  graceMs?: number
  /** how long a rejected key is refused (default 1 hour) */
  rejectForMs?: number
  now?: () => number
}

/** rejected keys remembered at most; keys are free, so this only spares an operator a persistent worker */
const MAX_REJECTED = 1000

export class PendingWorkers {
  readonly max: number
  private readonly graceMs: number
  private readonly rejectForMs: number
  private readonly now: () => number
  private readonly entries = new Map<string, PendingEntry>()
  private readonly rejected = new Map<string, number>()

  constructor (opts: PendingOptions = {}) {
    this.max = opts.max ?? 100
    this.graceMs = opts.graceMs ?? 120_000
    this.rejectForMs = opts.rejectForMs ?? 3_600_000
    this.now = opts.now ?? Date.now
  }

  get size (): number { this.sweep(); return this.entries.size }

  get (key: string): PendingEntry | undefined { this.sweep(); return this.entries.get(key) }

  /**
   * Queue a worker or update its entry; true when it is new. RATE_LIMITED when every place is held
   * by a live connection, FORBIDDEN when an operator rejected this key a short while ago.
   */
  put (key: string, peer: Peer, info: PendingInfo): boolean {
    const now = this.now()
    this.sweep()
    if ((this.rejected.get(key) ?? 0) > now) throw MeshError.FORBIDDEN('an operator rejected this worker; ask them for a join token')
    let entry = this.entries.get(key)
    const fresh = !entry
    if (!entry) {
      if (this.entries.size >= this.max) this.dropDisconnected()
      if (this.entries.size >= this.max) {
        throw MeshError.RATE_LIMITED(`${this.max} workers are already waiting for approval; ask an operator for a join token`, 60)
      }
      entry = { key, peer, ...info, askedAt: now, updatedAt: now, closedAt: null }
      this.entries.set(key, entry)
      this.watch(entry, peer)
    } else if (entry.peer !== peer) {
      entry.peer = peer
      entry.closedAt = null
      this.watch(entry, peer)
    }
    Object.assign(entry, info, { updatedAt: now })
    return fresh
  }

  /** Forget an entry (approved, revoked), leaving its connection alone. */
  delete (key: string): void { this.entries.delete(key) }

  /** Drop one entry and its connection, and refuse the key for a while. False if it is not waiting. */
  reject (key: string): boolean {
    const entry = this.entries.get(key)
    if (!entry) return false
    this.entries.delete(key)
    if (this.rejected.size >= MAX_REJECTED) this.rejected.delete(this.rejected.keys().next().value!)
    this.rejected.set(key, this.now() + this.rejectForMs)
    disconnect(entry.peer)
    return true
  }

  /** Drop every entry and its connection; returns how many there were. */
  clear (): number {
    this.sweep()
    const n = this.entries.size
    for (const entry of this.entries.values()) disconnect(entry.peer)
    this.entries.clear()
    return n
  }

  /** The waiting workers, as the admin's worker list shows them. */
  list (): RegistryWorker[] {
    this.sweep()
    return [...this.entries.values()].map((e) => ({
      key: e.key,
      models: e.models,
      approval: { state: 'pending' as const, by: 'worker:' + e.key.slice(0, 16), at: e.askedAt },
      label: e.label,
      region: '',
      capacity: e.capacity,
      updatedAt: e.updatedAt,
      connected: e.closedAt === null && !e.peer.isClosed,
      inflight: 0,
      served: 0,
      failures: 0,
      breaker: null
    }))
  }

  private watch (entry: PendingEntry, peer: Peer): void {
    peer.channel.on('close', () => {
      if (entry.peer === peer && entry.closedAt === null) entry.closedAt = this.now()
    })
  }

  private sweep (): void {
    const now = this.now()
    for (const [key, e] of this.entries) if (e.closedAt !== null && now - e.closedAt > this.graceMs) this.entries.delete(key)
    for (const [key, until] of this.rejected) if (until <= now) this.rejected.delete(key)
  }

  /** oldest gone connection first */
  private dropDisconnected (): void {
    const gone = [...this.entries.values()].filter((e) => e.closedAt !== null || e.peer.isClosed)
    gone.sort((a, b) => (a.closedAt ?? 0) - (b.closedAt ?? 0))
    for (const e of gone) {
      if (this.entries.size < this.max) return
      this.entries.delete(e.key)
    }
  }
}

function disconnect (peer: Peer): void {
  peer.channel.stream?.destroy?.()
}
