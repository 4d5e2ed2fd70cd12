import type { Peer } from '../../shared/mesh/peer.ts'
import type { ModelInfo } from '../../shared/protocol/inference.ts'
import type { WorkerSummary, ModelListing } from '../../shared/protocol/gateway.ts'

// The workers connected to this gateway, and the choice of one for a request: among live workers that
// serve the model and are not excluded (already failed this request), the one with the fewest
// outstanding requests relative to its capacity; ties go to the one that has served least.

export interface WorkerConn {
  publicKey: string
  peer: Peer
  models: Map<string, ModelInfo>
  capacity: number
  label: string | null
  inflight: number
  served: number
  failures: number
  connectedAt: Date
}

export class WorkerPool {
  private readonly workers = new Map<string, WorkerConn>()

  get size (): number { return this.workers.size }

  upsert (peer: Peer, models: ModelInfo[], capacity: number, label: string | null): WorkerConn {
    const existing = this.workers.get(peer.remoteKey)
    if (existing && existing.peer === peer) {
      existing.models = new Map(models.map((m) => [m.id, m]))
      existing.capacity = capacity
      existing.label = label
      return existing
    }
    const conn: WorkerConn = {
      publicKey: peer.remoteKey, peer, models: new Map(models.map((m) => [m.id, m])), capacity, label,
      inflight: 0, served: 0, failures: 0, connectedAt: new Date()
    }
    this.workers.set(peer.remoteKey, conn)
    peer.channel.on('close', () => {
      if (this.workers.get(conn.publicKey) === conn) this.workers.delete(conn.publicKey)
    })
    return conn
  }

  pick (model: string, exclude: Set<string> = new Set()): WorkerConn | null {
    let best: WorkerConn | null = null
    let bestLoad = Infinity
    for (const w of this.workers.values()) {
      if (exclude.has(w.publicKey) || w.peer.isClosed || !w.models.has(model)) continue
      const load = w.inflight / w.capacity
      if (load < bestLoad || (load === bestLoad && best !== null && w.served < best.served)) {
        best = w
        bestLoad = load
      }
    }
    return best
  }

  serves (model: string): boolean {
    for (const w of this.workers.values()) if (!w.peer.isClosed && w.models.has(model)) return true
    return false
  }

  modelIds (): string[] {
    const ids = new Set<string>()
    for (const w of this.workers.values()) if (!w.peer.isClosed) for (const id of w.models.keys()) ids.add(id)
    return [...ids].sort()
  }

  listing (): ModelListing[] {
    const out = new Map<string, ModelListing>()
    for (const w of this.workers.values()) {
      if (w.peer.isClosed) continue
      for (const m of w.models.values()) {
        const cur = out.get(m.id)
        if (cur) cur.workers++
        else out.set(m.id, { ...m, workers: 1 })
      }
    }
    return [...out.values()].sort((a, b) => a.id.localeCompare(b.id))
  }

  summaries (): WorkerSummary[] {
    return [...this.workers.values()].map((w) => ({
      publicKey: w.publicKey, models: [...w.models.keys()], inflight: w.inflight, served: w.served, failures: w.failures, connectedAt: w.connectedAt.toISOString()
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
