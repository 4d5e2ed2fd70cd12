import { EventEmitter, once } from 'node:events'
import Corestore, { type ReplicationStream } from 'corestore'
import Hyperbee, { type BeeReadOptions } from 'hyperbee'
import type Hypercore from 'hypercore'
import { MeshError } from '../errors.ts'
import type { Logger } from '../log.ts'
import {
  GATEWAYS_PREFIX, MODELS_PREFIX, WORKERS_PREFIX, gatewayEntryKey, modelKey, workerEntryKey,
  type ApprovalState, type GatewayEntry, type HistoryEntry, type ModelEntry, type RegistryValue, type WorkerEntry
} from './schema.ts'

// The model/worker registry: one Hyperbee in a Corestore. The gateway owns the writable copy
// (Registry, ./registry.ts); other gateways and the web hold read-only copies (RegistryReplica,
// ./replica.ts) that follow it by its key over connections they already have
// (store.replicate(noiseStream) shares the stream's Protomux with @hyperswarm/rpc). This is what both
// share: reads, change events, replication and lifecycle. Both emit 'change' with the keys that
// changed, in log order, for local writes and for replicated appends alike.

export const REGISTRY_CORE_NAME = 'hyperinfer-registry'

export interface RegistryChange {
  /** the bee's version (core length) the change brings us to */
  version: number
  /** changed keys in log order, each once, e.g. ['models/llama3', 'workers/ab12…'] */
  keys: string[]
  entries: HistoryEntry[]
  /** the log was truncated (a replica saw the writer fork); re-read everything */
  truncated: boolean
}

export interface HistoryOptions {
  /** entries after this seq */
  gt?: number
  limit?: number
  /** newest first */
  reverse?: boolean
}

export interface RegistryBaseOptions {
  log?: Logger
}

/** Read API, change events, replication and lifecycle, shared by the writer and its replicas. */
export abstract class RegistryBase extends EventEmitter {
  protected readonly log?: Logger
  protected store: Corestore | null = null
  protected core: Hypercore | null = null
  protected bee: Hyperbee<RegistryValue> | null = null
  protected readOptions: BeeReadOptions = {}
  private processed = 1
  private draining: Promise<void> | null = null
  private drainAgain = false
  private readonly replicating = new WeakSet<object>()
  private opening: Promise<void> | null = null
  protected closing: Promise<void> | null = null
  private released = false
  private ready = false

  constructor (opts: RegistryBaseOptions) {
    super()
    this.setMaxListeners(0)
    this.log = opts.log
  }

  protected abstract storageDir (): string
  protected abstract openCore (store: Corestore): Hypercore
  protected async afterOpen (): Promise<void> {}
  protected async beforeClose (): Promise<void> {}
  protected async afterClose (): Promise<void> {}

  open (): Promise<void> {
    if (!this.opening) this.opening = this.doOpen()
    return this.opening
  }

  private async doOpen (): Promise<void> {
    const store = new Corestore(this.storageDir())
    this.store = store
    await store.ready()
    const core = this.openCore(store)
    this.core = core
    this.bee = new Hyperbee<RegistryValue>(core, { keyEncoding: 'utf-8', valueEncoding: 'json' })
    await this.bee.ready()
    this.processed = Math.max(1, core.length)
    core.on('append', () => this.scheduleDrain())
    core.on('truncate', () => this.scheduleDrain())
    await this.afterOpen()
    this.ready = true
  }

  close (): Promise<void> {
    if (!this.closing) this.closing = this.doClose()
    return this.closing
  }

  private async doClose (): Promise<void> {
    // a failed open was already reported to whoever awaited open(); close releases what it got to
    if (this.opening) await this.opening.catch(() => {})
    try { await this.beforeClose() } catch (err) { this.log?.warn({ err }, 'registry: close step failed') }
    this.released = true
    // closing the bee first cancels a replica read still waiting for a block, so close never waits
    // on it; close carries on past a part that fails to close, so the rest is still released
    if (this.bee) await this.bee.close().catch((err) => this.log?.debug({ err }, 'registry: closing the bee failed'))
    if (this.draining) await this.draining.catch(() => {}) // drain reports its own failures
    if (this.store) await this.store.close().catch((err) => this.log?.debug({ err }, 'registry: closing the store failed'))
    await this.afterClose()
  }

  /** open() finished and close() has not started */
  get opened (): boolean { return this.ready && !this.closing }
  get writable (): boolean { return this.core?.writable ?? false }
  /** the registry's public key (hex): what replicas open */
  get key (): string { return this.requireCore().key!.toString('hex') }
  /** hex; safe to announce (it does not let anyone read the registry) */
  get discoveryKey (): string { return this.requireCore().discoveryKey!.toString('hex') }
  /** the bee's version (its core length, at least 1): what reads see now */
  get version (): number { return Math.max(1, this.core?.length ?? 0) }
  /** the version the 'change' events emitted so far have reached (lags `version` by a tick) */
  get changedVersion (): number { return this.processed }
  /** peers this core replicates with right now */
  get peerCount (): number { return this.core?.peers.length ?? 0 }

  /**
   * Replicate the registry over an existing encrypted connection: a HyperDHT / Hyperswarm
   * NoiseSecretStream, e.g. ProtomuxRPC's `.stream` (a mesh Peer's `peer.channel.stream`). It adds a
   * Protomux channel next to the RPC one; the connection stays the caller's (closing the registry
   * leaves it open). Calling it twice for one stream is a no-op.
   */
  replicate (stream: ReplicationStream): void {
    if (!this.store || this.released) throw MeshError.UNAVAILABLE('registry is not open')
    if ((stream as { destroying?: boolean }).destroying) return
    if (this.replicating.has(stream)) return
    this.replicating.add(stream)
    this.store.replicate(stream)
  }

  getModel (id: string): Promise<ModelEntry | null> {
    return this.read(async (bee) => {
      const node = await bee.get(modelKey(id), this.readOptions)
      return node ? node.value as ModelEntry : null
    })
  }

  listModels (filter: { task?: string } = {}): Promise<ModelEntry[]> {
    return this.read(async (bee) => {
      const out: ModelEntry[] = []
      for await (const node of bee.createReadStream(prefixRange(MODELS_PREFIX), this.readOptions)) {
        const m = node.value as ModelEntry
        if (filter.task && !m.tasks.includes(filter.task)) continue
        out.push(m)
      }
      return out
    })
  }

  getWorker (key: string): Promise<WorkerEntry | null> {
    return this.read(async (bee) => {
      const node = await bee.get(workerEntryKey(key), this.readOptions)
      return node ? node.value as WorkerEntry : null
    })
  }

  listWorkers (filter: { state?: ApprovalState, model?: string } = {}): Promise<WorkerEntry[]> {
    return this.read(async (bee) => {
      const out: WorkerEntry[] = []
      for await (const node of bee.createReadStream(prefixRange(WORKERS_PREFIX), this.readOptions)) {
        const w = node.value as WorkerEntry
        if (filter.state && w.approval.state !== filter.state) continue
        if (filter.model && !w.models.includes(filter.model)) continue
        out.push(w)
      }
      return out
    })
  }

  /** A gateway the writer vouches for, or null: a worker serves only gateways listed here. */
  getGateway (key: string): Promise<GatewayEntry | null> {
    if (!/^[0-9a-fA-F]{64}$/.test(key)) return Promise.resolve(null)
    return this.read(async (bee) => {
      const node = await bee.get(gatewayEntryKey(key), this.readOptions)
      return node ? node.value as GatewayEntry : null
    })
  }

  listGateways (): Promise<GatewayEntry[]> {
    return this.read(async (bee) => {
      const out: GatewayEntry[] = []
      for await (const node of bee.createReadStream(prefixRange(GATEWAYS_PREFIX), this.readOptions)) out.push(node.value as GatewayEntry)
      return out
    })
  }

  /** The change log, oldest first unless `reverse`: what `hyperinfer registry history` prints. */
  history (opts: HistoryOptions = {}): Promise<HistoryEntry[]> {
    return this.read(async (bee) => {
      const out: HistoryEntry[] = []
      const range = { ...this.readOptions, ...(opts.gt !== undefined ? { gt: opts.gt } : {}), ...(opts.limit !== undefined ? { limit: opts.limit } : {}), reverse: !!opts.reverse }
      for await (const e of bee.createHistoryStream(range)) {
        out.push({ seq: e.seq, type: e.type, key: e.key, value: e.value ?? null })
      }
      return out
    })
  }

  // hypercore's own failures (a replica block that never came, a closed session) as coded errors
  private async read<T> (fn: (bee: Hyperbee<RegistryValue>) => Promise<T>): Promise<T> {
    const bee = this.requireBee()
    try {
      return await fn(bee)
    } catch (err) {
      if (err instanceof MeshError) throw err
      const code = (err as { code?: string })?.code
      if (code === 'REQUEST_TIMEOUT') throw MeshError.TIMEOUT('registry read timed out waiting for a block from the writer (is a replication connection up?)')
      if (code === 'SESSION_CLOSED' || code === 'REQUEST_CANCELLED') throw MeshError.UNAVAILABLE('registry is closed')
      throw err
    }
  }

  /** Call `fn` on every change; returns the unsubscribe function. Same as `on('change', fn)`. */
  watch (fn: (change: RegistryChange) => void): () => void {
    this.on('change', fn)
    return () => { this.off('change', fn) }
  }

  /**
   * Resolves once 'change' events up to `version` have been emitted (TIMEOUT otherwise). On a
   * replica, `await replica.waitForVersion(writerVersion)` means reads show the writer's state then.
   */
  async waitForVersion (version: number = this.version, timeoutMs = 5000): Promise<void> {
    if (this.processed >= version) return
    const ac = new AbortController()
    const timer = setTimeout(() => ac.abort(), timeoutMs)
    try {
      while (this.processed < version) await once(this, 'change', { signal: ac.signal })
    } catch {
      throw MeshError.TIMEOUT(`registry did not reach version ${version} within ${timeoutMs} ms (at ${this.processed})`)
    } finally {
      clearTimeout(timer)
    }
  }

  protected requireCore (): Hypercore {
    if (!this.core) throw MeshError.UNAVAILABLE('registry is not open')
    return this.core
  }

  protected requireBee (): Hyperbee<RegistryValue> {
    if (!this.bee || this.released) throw MeshError.UNAVAILABLE('registry is not open')
    return this.bee
  }

  // One drain at a time walks the log from the last change we reported to the core's length, so
  // listeners see every change once, in order, however appends (local or replicated) are batched.
  private scheduleDrain (): void {
    if (this.closing) return
    if (this.draining) { this.drainAgain = true; return }
    this.draining = this.drain()
      .catch((err) => { if (!this.closing) this.log?.warn({ err }, 'registry: reading changes failed') })
      .finally(() => { this.draining = null })
  }

  private async drain (): Promise<void> {
    do {
      this.drainAgain = false
      const core = this.core
      const bee = this.bee
      if (!core || !bee || this.closing) return
      if (core.length < this.processed) {
        this.processed = Math.max(1, core.length)
        this.emit('change', { version: this.processed, keys: [], entries: [], truncated: true } satisfies RegistryChange)
        continue
      }
      const target = core.length
      if (target <= this.processed) continue
      const entries: HistoryEntry[] = []
      for await (const e of bee.createHistoryStream({ ...this.readOptions, gte: this.processed, lt: target })) {
        entries.push({ seq: e.seq, type: e.type, key: e.key, value: e.value ?? null })
      }
      this.processed = target
      const keys = [...new Set(entries.map((e) => e.key))]
      this.emit('change', { version: target, keys, entries, truncated: false } satisfies RegistryChange)
    } while (this.drainAgain)
  }
}

/**
 * The read side the writer and a replica share, for code that should not care which one it holds
 * (narrow with `instanceof Registry` where a write is needed).
 */
export type RegistryReader = Pick<RegistryBase,
  'open' | 'close' | 'key' | 'discoveryKey' | 'version' | 'changedVersion' | 'replicate' | 'getModel' | 'listModels' |
  'getWorker' | 'listWorkers' | 'getGateway' | 'listGateways' | 'history' | 'watch' | 'waitForVersion' | 'on' | 'off'>

function prefixRange (prefix: string): { gte: string, lt: string } {
  // utf-8 keys sort by bytes; the prefix's last byte + 1 ends the range
  const end = prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1)
  return { gte: prefix, lt: end }
}

