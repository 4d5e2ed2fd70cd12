import fs from 'node:fs'
import type Corestore from 'corestore'
import type Hypercore from 'hypercore'
import { MeshError } from '../errors.ts'
import { REGISTRY_CORE_NAME, RegistryBase, type RegistryBaseOptions } from './base.ts'
import { Measurements } from './measurements.ts'
import {
  actor, gatewayEntry, gatewayEntryKey, gatewayInput, modelEntry, modelInput, modelKey, modelName, modelPatch, parseOrThrow, workerEntry, workerEntryKey, workerInput,
  workerKey, type ApprovalState, type MeasurementSample, type ModelEntry, type ModelInput, type ModelPatch,
  type GatewayEntry, type GatewayInput, type WorkerEntry, type WorkerInput
} from './schema.ts'

// The writable registry: a named core, so the same storage directory always gives the same key.
// Every write is validated against ./schema.ts, then applied under one queue.

export interface RegistryOptions extends RegistryBaseOptions {
  /** Corestore directory; the same directory always gives the same registry key */
  storage: string
  /** the actor recorded when a write names none (e.g. the gateway's public key) */
  by?: string
  /** a clock, for the `at` / `updatedAt` fields and measurement pacing */
  now?: () => number
  /** a model's `measured` is written at most once per this many ms (default 30 000) */
  measureIntervalMs?: number
  /** the last this-many samples per model make up `measured` (default 500) */
  measureWindow?: number
}

export class Registry extends RegistryBase {
  private readonly storage: string
  private readonly by: string
  private readonly now: () => number
  private readonly measurements: Measurements
  private writeTail: Promise<unknown> = Promise.resolve()

  constructor (opts: RegistryOptions) {
    super(opts)
    this.storage = opts.storage
    this.by = opts.by ?? 'registry'
    this.now = opts.now ?? Date.now
    this.measurements = new Measurements({
      intervalMs: opts.measureIntervalMs ?? 30_000,
      window: opts.measureWindow ?? 500,
      now: this.now,
      log: this.log,
      write: (id, measured) => this.serialized(async () => {
        if (!this.bee) return true
        const existing = await this.getModel(id)
        if (!existing) return false
        await this.bee.put(modelKey(id), { ...existing, measured })
        return true
      })
    })
  }

  protected storageDir (): string {
    fs.mkdirSync(this.storage, { recursive: true })
    return this.storage
  }

  protected openCore (store: Corestore): Hypercore {
    return store.get({ name: REGISTRY_CORE_NAME })
  }

  protected async beforeClose (): Promise<void> {
    await this.measurements.close()
    // each queued write's failure went to its own caller
    await this.writeTail.catch(() => {})
  }

  /** Add or replace a model. Its `measured` figures are kept. */
  async putModel (input: ModelInput, by: string = this.by): Promise<ModelEntry> {
    this.requireBee()
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
    this.requireBee()
    const mid = parseOrThrow(modelName, id, 'model id', MeshError.BAD_REQUEST)
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
    this.requireBee()
    const mid = parseOrThrow(modelName, id, 'model id', MeshError.BAD_REQUEST)
    await this.serialized(async () => {
      if (!await this.getModel(mid)) throw MeshError.NOT_FOUND(`model '${mid}' is not in the registry`)
      this.measurements.forget(mid)
      await this.requireBee().del(modelKey(mid))
    })
  }

  /**
   * Add a worker or update what it serves. A new worker starts `pending`; an existing one keeps its
   * approval (only approveWorker / revokeWorker change it).
   */
  async putWorker (input: WorkerInput, by: string = this.by): Promise<WorkerEntry> {
    this.requireBee()
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
    this.requireBee()
    const wk = parseOrThrow(workerKey, key, 'worker key', MeshError.BAD_REQUEST)
    await this.serialized(async () => {
      if (!await this.getWorker(wk)) throw MeshError.NOT_FOUND(`worker ${wk.slice(0, 16)}… is not in the registry`)
      await this.requireBee().del(workerEntryKey(wk))
    })
  }

  /** Vouch for a gateway: workers that know the network key serve it. Writing it again updates the label. */
  async putGateway (input: GatewayInput, by: string = this.by): Promise<GatewayEntry> {
    this.requireBee()
    const spec = parseOrThrow(gatewayInput, input, 'gateway', MeshError.BAD_REQUEST)
    const who = parseActor(by)
    return this.serialized(async () => {
      const entry = parseOrThrow(gatewayEntry, { ...spec, by: who, at: this.now() }, 'gateway', MeshError.BAD_REQUEST)
      await this.requireBee().put(gatewayEntryKey(spec.key), entry)
      return entry
    })
  }

  /** Stop vouching for a gateway (NOT_FOUND if it is not listed): workers drop it. */
  async removeGateway (key: string): Promise<void> {
    this.requireBee()
    const gk = parseOrThrow(workerKey, key, 'gateway key', MeshError.BAD_REQUEST)
    await this.serialized(async () => {
      if (!await this.getGateway(gk)) throw MeshError.NOT_FOUND(`gateway ${gk.slice(0, 16)}… is not in the registry`)
      await this.requireBee().del(gatewayEntryKey(gk))
    })
  }

  private async setApproval (key: string, state: ApprovalState, by: string): Promise<WorkerEntry> {
    this.requireBee()
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
   * write time. BAD_REQUEST on a malformed sample; ignored once the registry is closing.
   */
  recordMeasurement (id: string, sample: MeasurementSample): void {
    if (this.closing) return
    this.requireBee()
    this.measurements.record(id, sample)
  }

  /** Write every pending measurement now (e.g. before a planned shutdown; close() does this too). */
  flushMeasurements (): Promise<void> {
    return this.measurements.flush()
  }

  // read-modify-write under one queue, so concurrent writers in this process never lose an update
  private serialized<T> (fn: () => Promise<T>): Promise<T> {
    const run = this.writeTail.then(fn, fn)
    this.writeTail = run.catch(() => {}) // the caller gets the failure through `run`
    return run
  }
}

function parseActor (by: string): string {
  return parseOrThrow(actor, by, 'actor (by)', MeshError.BAD_REQUEST)
}
