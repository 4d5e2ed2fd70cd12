import { EventEmitter, once } from 'node:events'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import Corestore, { type ReplicationStream } from 'corestore'
import Hyperbee, { type BeeReadOptions } from 'hyperbee'
import type Hypercore from 'hypercore'
import type { HypercoreDownload } from 'hypercore'
import { MeshError } from '../errors.ts'
import type { Logger } from '../log.ts'
import {
  MODELS_PREFIX, WORKERS_PREFIX, actor, measurementSample, modelEntry, modelId, modelInput, modelKey, modelPatch,
  parseOrThrow, workerEntry, workerEntryKey, workerInput, workerKey,
  type ApprovalState, type MeasurementSample, type Measured, type ModelEntry, type ModelInput, type ModelPatch,
  type RegistryValue, type WorkerEntry, type WorkerInput
} from './schema.ts'

// The model/worker registry: one Hyperbee in a Corestore. The gateway owns the writable copy
// (Registry); other gateways and the web hold read-only copies (RegistryReplica) that follow it by its
// key over connections they already have (store.replicate(noiseStream) shares the stream's Protomux
// with @hyperswarm/rpc). Both emit 'change' with the keys that changed, in log order, for local
// writes and for replicated appends alike.

export const REGISTRY_CORE_NAME = 'hyperinfer-registry'

export interface HistoryEntry {
  /** the Hypercore index of the change (1 is the first change; 0 is the bee's header) */
  seq: number
  type: 'put' | 'del'
  key: string
  /** the value written, or null for a delete */
  value: RegistryValue | null
}

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

interface BaseOptions {
  log?: Logger
  /** a clock, for the `at` / `updatedAt` fields and measurement pacing */
  now?: () => number
}

export interface RegistryOptions extends BaseOptions {
  /** Corestore directory; the same directory always gives the same registry key */
  storage: string
  /** the actor recorded when a write names none (e.g. the gateway's public key) */
  by?: string
  /** a model's `measured` is written at most once per this many ms (default 30 000) */
  measureIntervalMs?: number
  /** the last this-many samples per model make up `measured` (default 500) */
  measureWindow?: number
}

export interface RegistryReplicaOptions extends BaseOptions {
  /** the writer's registry key (hex, or a Buffer) */
  key: string | Buffer
  /** Corestore directory; a fresh temporary one (removed on close) when left out */
  storage?: string
  /** a read that needs a block not yet downloaded fails after this many ms (default 10 000) */
  readTimeoutMs?: number
}

interface Aggregate {
  samples: MeasurementSample[]
  next: number // ring index once full
  dirty: boolean
  lastWriteAt: number
  timer: NodeJS.Timeout | null
  flushing: Promise<void> | null
}

/** Read API, change events, replication and lifecycle, shared by the writer and its replicas. */
export abstract class RegistryBase extends EventEmitter {
  protected readonly log?: Logger
  protected readonly now: () => number
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

  constructor (opts: BaseOptions) {
    super()
    this.setMaxListeners(0)
    this.log = opts.log
    this.now = opts.now ?? Date.now
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
    if (this.opening) await this.opening.catch(() => {})
    try { await this.beforeClose() } catch (err) { this.log?.warn({ err }, 'registry: close step failed') }
    this.released = true
    // closing the bee first cancels a replica read still waiting for a block, so close never waits on it
    if (this.bee) await this.bee.close().catch(() => {})
    if (this.draining) await this.draining.catch(() => {})
    if (this.store) await this.store.close().catch(() => {})
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

  // --- writes: only the writer may; a replica answers every write with FORBIDDEN ---

  protected assertWritable (): void {
    if (!this.writable) throw MeshError.FORBIDDEN('the registry replica is read-only; write through the registry\'s writer (the gateway that owns it)')
  }
}

/** The writable registry: a named core, so the same storage directory always gives the same key. */
export class Registry extends RegistryBase {
  private readonly storage: string
  private readonly by: string
  private readonly measureIntervalMs: number
  private readonly measureWindow: number
  private readonly aggregates = new Map<string, Aggregate>()
  private writeTail: Promise<unknown> = Promise.resolve()

  constructor (opts: RegistryOptions) {
    super(opts)
    this.storage = opts.storage
    this.by = opts.by ?? 'registry'
    this.measureIntervalMs = opts.measureIntervalMs ?? 30_000
    this.measureWindow = opts.measureWindow ?? 500
  }

  protected storageDir (): string {
    fs.mkdirSync(this.storage, { recursive: true })
    return this.storage
  }

  protected openCore (store: Corestore): Hypercore {
    return store.get({ name: REGISTRY_CORE_NAME })
  }

  protected async beforeClose (): Promise<void> {
    // what was measured but not yet written goes out once, then nothing more is scheduled
    const pending: Promise<void>[] = []
    for (const [id, agg] of this.aggregates) {
      if (agg.timer) clearTimeout(agg.timer)
      agg.timer = null
      if (agg.flushing) pending.push(agg.flushing)
      else if (agg.dirty && this.bee) pending.push(this.flushMeasurement(id, agg, true))
    }
    await Promise.allSettled(pending)
    await this.writeTail.catch(() => {})
  }

  /** Add or replace a model. Its `measured` figures are kept. */
  async putModel (input: ModelInput, by: string = this.by): Promise<ModelEntry> {
    this.assertWritable()
    const spec = parseOrThrow(modelInput, input, 'model', MeshError.BAD_REQUEST)
    const who = parseActor(by)
    return this.serialized(async () => {
      const existing = await this.getModel(spec.id)
      const entry = parseOrThrow(modelEntry, { ...spec, measured: existing?.measured ?? null, updatedAt: this.now(), updatedBy: who }, 'model', MeshError.BAD_REQUEST)
      await this.requireBee().put(modelKey(spec.id), entry)
      return entry
    })
  }

  /** Change some fields of an existing model (NOT_FOUND if there is none). */
  async setModel (id: string, patch: ModelPatch, by: string = this.by): Promise<ModelEntry> {
    this.assertWritable()
    const mid = parseOrThrow(modelId, id, 'model id', MeshError.BAD_REQUEST)
    const changes = parseOrThrow(modelPatch, patch, 'model update', MeshError.BAD_REQUEST)
    const who = parseActor(by)
    return this.serialized(async () => {
      const existing = await this.getModel(mid)
      if (!existing) throw MeshError.NOT_FOUND(`model '${mid}' is not in the registry`)
      const entry = parseOrThrow(modelEntry, { ...existing, ...changes, updatedAt: this.now(), updatedBy: who }, 'model', MeshError.BAD_REQUEST)
      await this.requireBee().put(modelKey(mid), entry)
      return entry
    })
  }

  /** Remove a model (NOT_FOUND if there is none). Workers that list it keep their list. */
  async removeModel (id: string): Promise<void> {
    this.assertWritable()
    const mid = parseOrThrow(modelId, id, 'model id', MeshError.BAD_REQUEST)
    await this.serialized(async () => {
      if (!await this.getModel(mid)) throw MeshError.NOT_FOUND(`model '${mid}' is not in the registry`)
      const agg = this.aggregates.get(mid)
      if (agg?.timer) clearTimeout(agg.timer)
      this.aggregates.delete(mid)
      await this.requireBee().del(modelKey(mid))
    })
  }

  /**
   * Add a worker or update what it serves. A new worker starts `pending`; an existing one keeps its
   * approval (only approveWorker / revokeWorker change it).
   */
  async putWorker (input: WorkerInput, by: string = this.by): Promise<WorkerEntry> {
    this.assertWritable()
    const spec = parseOrThrow(workerInput, input, 'worker', MeshError.BAD_REQUEST)
    const who = parseActor(by)
    return this.serialized(async () => {
      const existing = await this.getWorker(spec.key)
      const now = this.now()
      const entry = parseOrThrow(workerEntry, {
        ...spec,
        models: [...new Set(spec.models)],
        approval: existing?.approval ?? { state: 'pending', by: who, at: now },
        updatedAt: now
      }, 'worker', MeshError.BAD_REQUEST)
      await this.requireBee().put(workerEntryKey(spec.key), entry)
      return entry
    })
  }

  approveWorker (key: string, by: string): Promise<WorkerEntry> { return this.setApproval(key, 'approved', by) }
  revokeWorker (key: string, by: string): Promise<WorkerEntry> { return this.setApproval(key, 'revoked', by) }

  /** Forget a worker entirely (NOT_FOUND if there is none). Revoking keeps the record; this does not. */
  async removeWorker (key: string): Promise<void> {
    this.assertWritable()
    const wk = parseOrThrow(workerKey, key, 'worker key', MeshError.BAD_REQUEST)
    await this.serialized(async () => {
      if (!await this.getWorker(wk)) throw MeshError.NOT_FOUND(`worker ${wk.slice(0, 16)}… is not in the registry`)
      await this.requireBee().del(workerEntryKey(wk))
    })
  }

  private async setApproval (key: string, state: ApprovalState, by: string): Promise<WorkerEntry> {
    this.assertWritable()
    const wk = parseOrThrow(workerKey, key, 'worker key', MeshError.BAD_REQUEST)
    const who = parseActor(by)
    return this.serialized(async () => {
      const existing = await this.getWorker(wk)
      if (!existing) throw MeshError.NOT_FOUND(`worker ${wk.slice(0, 16)}… is not in the registry`)
      const now = this.now()
      const entry: WorkerEntry = { ...existing, approval: { state, by: who, at: now }, updatedAt: now }
      await this.requireBee().put(workerEntryKey(wk), entry)
      return entry
    })
  }

  /**
   * Note one request's outcome for a model. Cheap and synchronous: samples are kept in memory (the
   * last `measureWindow` per model) and `measured` is written off the hot path, at most once per
   * `measureIntervalMs` per model. Samples for a model that is not in the registry are dropped at
   * write time. BAD_REQUEST on a malformed sample.
   */
  recordMeasurement (id: string, sample: MeasurementSample): void {
    this.assertWritable()
    if (this.closing) return
    const s = parseOrThrow(measurementSample, sample, 'measurement', MeshError.BAD_REQUEST)
    let agg = this.aggregates.get(id)
    if (!agg) {
      agg = { samples: [], next: 0, dirty: false, lastWriteAt: -Infinity, timer: null, flushing: null }
      this.aggregates.set(id, agg)
    }
    if (agg.samples.length < this.measureWindow) agg.samples.push(s)
    else { agg.samples[agg.next] = s; agg.next = (agg.next + 1) % this.measureWindow }
    agg.dirty = true
    this.scheduleMeasurement(id, agg)
  }

  /** Write every pending measurement now (e.g. before a planned shutdown; close() does this too). */
  async flushMeasurements (): Promise<void> {
    const pending: Promise<void>[] = []
    for (const [id, agg] of this.aggregates) {
      if (agg.timer) { clearTimeout(agg.timer); agg.timer = null }
      pending.push(agg.flushing ?? (agg.dirty ? this.flushMeasurement(id, agg, true) : Promise.resolve()))
    }
    await Promise.allSettled(pending)
  }

  private scheduleMeasurement (id: string, agg: Aggregate): void {
    if (agg.timer || agg.flushing) return // the running write reschedules when it ends
    const delay = Math.max(0, agg.lastWriteAt + this.measureIntervalMs - this.now())
    agg.timer = setTimeout(() => {
      agg.timer = null
      this.flushMeasurement(id, agg, false).catch(() => {})
    }, delay)
    agg.timer.unref()
  }

  private flushMeasurement (id: string, agg: Aggregate, final: boolean): Promise<void> {
    agg.dirty = false
    agg.lastWriteAt = this.now()
    const measured = summarise(agg.samples, agg.lastWriteAt)
    const run = this.serialized(async () => {
      if (!this.bee) return
      const existing = await this.getModel(id)
      if (!existing) { this.aggregates.delete(id); return }
      await this.bee.put(modelKey(id), { ...existing, measured })
    }).catch((err) => {
      if (!this.closing || final) this.log?.warn({ err, model: id }, 'registry: writing measurements failed')
    }).finally(() => {
      agg.flushing = null
      if (agg.dirty && !this.closing && this.aggregates.get(id) === agg) this.scheduleMeasurement(id, agg)
    })
    agg.flushing = run
    return run
  }

  // read-modify-write under one queue, so concurrent writers in this process never lose an update
  private serialized<T> (fn: () => Promise<T>): Promise<T> {
    const run = this.writeTail.then(fn, fn)
    this.writeTail = run.catch(() => {})
    return run
  }
}

/** A read-only copy of someone's registry, kept current over `replicate(stream)`. */
export class RegistryReplica extends RegistryBase {
  private readonly registryKey: Buffer
  private readonly storage: string | null
  private tmpDir: string | null = null
  private download: HypercoreDownload | null = null

  constructor (opts: RegistryReplicaOptions) {
    super(opts)
    const key = typeof opts.key === 'string' ? opts.key : opts.key.toString('hex')
    if (!/^[0-9a-fA-F]{64}$/.test(key)) throw MeshError.BAD_REQUEST('registry key must be 64 hex characters')
    this.registryKey = Buffer.from(key, 'hex')
    this.storage = opts.storage ?? null
    // reads never wait for a round-trip to ask for a newer length: the live download below brings
    // every append as it happens; a read of a block still on its way waits at most readTimeoutMs
    this.readOptions = { update: false, timeout: opts.readTimeoutMs ?? 10_000 }
  }

  protected storageDir (): string {
    if (this.storage) {
      fs.mkdirSync(this.storage, { recursive: true })
      return this.storage
    }
    this.tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hyperinfer-registry-replica-'))
    return this.tmpDir
  }

  protected openCore (store: Corestore): Hypercore {
    return store.get({ key: this.registryKey })
  }

  protected async afterOpen (): Promise<void> {
    // keep the whole log local, following the writer live (end: -1): the registry is small, and
    // change events and reads then never wait on the network
    this.download = this.requireCore().download({ start: 0, end: -1 })
  }

  protected async beforeClose (): Promise<void> {
    this.download?.destroy()
  }

  protected async afterClose (): Promise<void> {
    if (this.tmpDir) fs.rmSync(this.tmpDir, { recursive: true, force: true })
  }

  putModel (_input: ModelInput, _by?: string): Promise<ModelEntry> { return this.readOnly() }
  setModel (_id: string, _patch: ModelPatch, _by?: string): Promise<ModelEntry> { return this.readOnly() }
  removeModel (_id: string): Promise<void> { return this.readOnly() }
  putWorker (_input: WorkerInput, _by?: string): Promise<WorkerEntry> { return this.readOnly() }
  approveWorker (_key: string, _by: string): Promise<WorkerEntry> { return this.readOnly() }
  revokeWorker (_key: string, _by: string): Promise<WorkerEntry> { return this.readOnly() }
  removeWorker (_key: string): Promise<void> { return this.readOnly() }
  recordMeasurement (_id: string, _sample: MeasurementSample): void { this.assertWritable() }

  private async readOnly (): Promise<never> {
    this.assertWritable()
    throw MeshError.FORBIDDEN('the registry replica is read-only')
  }
}

/** The read side both classes share, for code that should not care which one it holds. */
export type RegistryReader = Pick<RegistryBase,
  'open' | 'close' | 'key' | 'discoveryKey' | 'version' | 'changedVersion' | 'replicate' | 'getModel' | 'listModels' |
  'getWorker' | 'listWorkers' | 'history' | 'watch' | 'waitForVersion' | 'on' | 'off'>

function prefixRange (prefix: string): { gte: string, lt: string } {
  // utf-8 keys sort by bytes; the prefix's last byte + 1 ends the range
  const end = prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1)
  return { gte: prefix, lt: end }
}

function parseActor (by: string): string {
  return parseOrThrow(actor, by, 'actor (by)', MeshError.BAD_REQUEST)
}

function median (xs: number[]): number {
  if (xs.length === 0) return 0
  const s = [...xs].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2
}

function summarise (samples: MeasurementSample[], at: number): Measured {
  const ok = samples.filter((s) => s.ok)
  return {
    p50LatencyMs: Math.round(median(ok.map((s) => s.latencyMs))),
    ttftMs: Math.round(median(ok.map((s) => s.ttftMs))),
    errorRate: samples.length ? (samples.length - ok.length) / samples.length : 0,
    samples: samples.length,
    updatedAt: at
  }
}
