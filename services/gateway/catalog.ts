import path from 'node:path'
import { MeshError } from '../../shared/errors.ts'
import type { Logger } from '../../shared/log.ts'
import type { MeshClient } from '../../shared/mesh/client.ts'
import type { Peer } from '../../shared/mesh/peer.ts'
import type { ModelListing } from '../../shared/protocol/gateway.ts'
import {
  Registry, RegistryReplica, liveListing, registryListing, replicateOverClient, replicateOverPeer,
  type GatewayEntry, type HistoryEntry, type MeasurementSample, type ModelEntry, type RegistryBase, type RegistryWrite, type WorkerEntry
} from '../../shared/registry/index.ts'
import type { Price } from './limits.ts'

// The gateway's view of the shared registry (a Hyperbee): the first gateway writes it; others open
// a read-only replica by its key, replicated over their mesh connection to the writer, and forward
// writes to it. In-memory caches of models and workers are rebuilt from change events, so the
// request path never reads the bee.

export type { RegistryWrite }

export interface CatalogOptions {
  home: string
  /** this gateway's instance name: its registry storage lives under registry/<name> */
  name: string
  /** open a replica of this registry instead of writing one */
  registryKey?: string
  log?: Logger
  measureIntervalMs?: number
}

export class Catalog {
  readonly registry: RegistryBase
  private readonly writer: Registry | null
  private readonly log?: Logger
  private models = new Map<string, ModelEntry>()
  private workers = new Map<string, WorkerEntry>()
  private gateways = new Map<string, GatewayEntry>()
  private forward: ((w: RegistryWrite, adminToken?: string) => Promise<unknown>) | null = null
  private readonly listeners = new Set<(keys: string[]) => void>()
  private stopWatch: (() => void) | null = null

  constructor (opts: CatalogOptions) {
    this.log = opts.log
    const storage = path.join(opts.home, 'registry', opts.name)
    if (opts.registryKey) {
      this.registry = new RegistryReplica({ key: opts.registryKey, storage, log: opts.log })
      this.writer = null
    } else {
      this.writer = new Registry({ storage, by: opts.name, measureIntervalMs: opts.measureIntervalMs ?? 10_000, log: opts.log })
      this.registry = this.writer
    }
  }

  get key (): string { return this.registry.key }
  get writable (): boolean { return this.writer !== null }

  async open (): Promise<void> {
    await this.registry.open()
    this.stopWatch = this.registry.watch((change) => { void this.refresh(change.truncated ? null : change.keys) })
    await this.refresh(null)
  }

  async close (): Promise<void> {
    this.stopWatch?.()
    await this.registry.close()
  }

  /** Replicate to a peer that connected (it gets only what it asks for by the registry's key). */
  serve (peer: Peer): void {
    replicateOverPeer(this.registry, peer)
  }

  /**
   * Replica side: follow the writer over this client's connections, and send writes through
   * `forward`, with the admin's session when an admin made the change (the writer checks it itself).
   */
  follow (client: MeshClient, forward: (w: RegistryWrite, adminToken?: string) => Promise<unknown>): void {
    replicateOverClient(this.registry, client)
    this.forward = forward
  }

  onChange (fn: (keys: string[]) => void): void { this.listeners.add(fn) }

  private applied = { models: -1, workers: -1, gateways: -1 }

  /**
   * Reads run side by side (a slow one never holds up the next), but a result only replaces the cache
   * if it was read at a registry version at least as new as the one already applied.
   */
  private refresh (keys: string[] | null): Promise<void> {
    return this.refreshNow(keys)
  }

  private async refreshNow (keys: string[] | null): Promise<void> {
    try {
      const version = this.registry.version
      if (keys === null || keys.some((k) => k.startsWith('models/'))) {
        const models = await this.registry.listModels()
        if (version >= this.applied.models) { this.models = new Map(models.map((m) => [m.id, m])); this.applied.models = version }
      }
      if (keys === null || keys.some((k) => k.startsWith('workers/'))) {
        const workers = await this.registry.listWorkers()
        if (version >= this.applied.workers) { this.workers = new Map(workers.map((w) => [w.key, w])); this.applied.workers = version }
      }
      if (keys === null || keys.some((k) => k.startsWith('gateways/'))) {
        const gateways = await this.registry.listGateways()
        if (version >= this.applied.gateways) { this.gateways = new Map(gateways.map((g) => [g.key, g])); this.applied.gateways = version }
      }
    } catch (err) {
      this.log?.warn({ err: (err as Error).message }, 'registry refresh failed')
      return
    }
    const changed = keys ?? ['models/', 'workers/', 'gateways/']
    for (const fn of this.listeners) fn(changed)
  }

  model (id: string): ModelEntry | undefined { return this.models.get(id) }
  allModels (): ModelEntry[] { return [...this.models.values()] }
  worker (key: string): WorkerEntry | undefined { return this.workers.get(key) }
  allWorkers (): WorkerEntry[] { return [...this.workers.values()] }
  /** a gateway the registry's writer vouches for */
  gateway (key: string): GatewayEntry | undefined { return this.gateways.get(key.toLowerCase()) }
  allGateways (): GatewayEntry[] { return [...this.gateways.values()] }

  /** The models served now (`live`), described by the registry. */
  listing (live: ModelListing[]): ModelListing[] {
    return liveListing(live, (id) => this.models.get(id))
  }

  /** Every model in the registry, with how many of the `live` workers serve it now. */
  registryListing (live: ModelListing[]): ModelListing[] {
    return registryListing(this.allModels(), live)
  }

  price (id: string): Price | null {
    const m = this.models.get(id)
    return m ? { input: m.pricePer1MInput, output: m.pricePer1MOutput } : null
  }

  /** Apply a write here (writer) or at the writer (replica); `adminToken`: the session of the admin who made it. */
  async write (w: RegistryWrite, by: string, adminToken?: string): Promise<unknown> {
    if (!this.writer) {
      if (!this.forward) throw MeshError.UNAVAILABLE('this gateway holds a read-only registry replica and is not connected to its writer')
      return this.forward(w, adminToken)
    }
    const out = await this.applyLocal(this.writer, w, by)
    // the caller sees its own write in the next read
    await this.refresh([w.op.endsWith('Model') ? 'models/' : w.op.endsWith('Gateway') ? 'gateways/' : 'workers/'])
    return out
  }

  private async applyLocal (r: Registry, w: RegistryWrite, by: string): Promise<unknown> {
    // only an operator can take a worker back from revoked; a token or the allow-list cannot
    if (w.op === 'approveWorker' && !by.startsWith('user:') && (await r.getWorker(w.key))?.approval.state === 'revoked') {
      throw MeshError.FORBIDDEN('this worker was revoked; only an operator can approve it again')
    }
    switch (w.op) {
      case 'putModel': return r.putModel(w.input, by)
      case 'addModel': return (await r.getModel(w.input.id)) ?? r.putModel(w.input, by)
      case 'setModel': return r.setModel(w.id, w.patch, by)
      case 'removeModel': return r.removeModel(w.id).then(() => ({ removed: w.id }))
      case 'putWorker': return r.putWorker(w.input, by)
      case 'approveWorker': return r.approveWorker(w.key, by)
      case 'revokeWorker': return r.revokeWorker(w.key, by)
      case 'putGateway': return r.putGateway(w.input, by)
      case 'removeGateway': return r.removeGateway(w.key).then(() => ({ removed: w.key }))
    }
  }

  /** A model a worker offers that the registry does not know yet gets an entry with neutral scores. */
  async ensureModel (id: string, backend: string, contextLength: number | undefined, by: string, price: Price | null = null): Promise<void> {
    if (this.models.has(id)) return
    const tasks = /embed/i.test(id) ? ['embed'] : /code|coder/i.test(id) ? ['chat', 'code'] : ['chat']
    await this.write({
      op: 'addModel',
      input: { id, provider: backend, backendModel: id, tasks, contextLength: contextLength ?? 8192, pricePer1MInput: price?.input ?? 0, pricePer1MOutput: price?.output ?? 0, quality: 0.5, safety: 0.5 }
    }, by).catch((err) => this.log?.warn({ model: id, err: (err as Error).message }, 'could not add model to the registry'))
  }

  /** Configured prices (MODEL_PRICES) go into the registry, where every gateway reads them. */
  async seedPrices (prices: Record<string, Price>): Promise<void> {
    for (const [id, p] of Object.entries(prices)) {
      const cur = this.models.get(id)
      if (cur && cur.pricePer1MInput === p.input && cur.pricePer1MOutput === p.output) continue
      const change: RegistryWrite = cur
        ? { op: 'setModel', id, patch: { pricePer1MInput: p.input, pricePer1MOutput: p.output } }
        : { op: 'putModel', input: { id, provider: 'configured', backendModel: id, tasks: ['chat'], contextLength: 8192, pricePer1MInput: p.input, pricePer1MOutput: p.output, quality: 0.5, safety: 0.5 } }
      await this.write(change, 'MODEL_PRICES').catch((err) => this.log?.warn({ model: id, err: (err as Error).message }, 'could not seed a price'))
    }
  }

  recordMeasurement (id: string, sample: MeasurementSample): void {
    if (this.writer && this.models.has(id)) this.writer.recordMeasurement(id, sample)
  }

  history (limit: number): Promise<HistoryEntry[]> {
    return this.registry.history({ reverse: true, limit })
  }
}
