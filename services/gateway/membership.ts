import { MeshError } from '../../shared/errors.ts'
import type { Logger } from '../../shared/log.ts'
import type { RequestOf, ResponseOf } from '../../shared/mesh/method.ts'
import type { HandlerContext } from '../../shared/mesh/peer.ts'
import type { GatewayProtocol, RegistryWorker } from '../../shared/protocol/gateway.ts'
import { modelInput, parseOrThrow, workerInput, type RegistryWrite } from '../../shared/registry/schema.ts'
import type { Catalog } from './catalog.ts'
import type { Pricing } from './limits.ts'
import { PendingWorkers, type PendingOptions } from './pending.ts'
import { RegistrationRate, type RegistrationRateOptions } from './registration-rate.ts'
import type { WorkerConn, WorkerPool } from './workers.ts'
import type { WorkerTokens } from './worker-tokens.ts'
import type { OperatorStore } from './operator-store.ts'

// Which workers get traffic. A worker announces itself (registerWorker): mesh members and workers
// that prove they hold the network's worker token or a join token are approved at once (a proof
// that matches no valid token is refused); anyone else is recorded as
// pending and gets no traffic until an operator approves it (`hyperinfer workers approve <key>`).
// Pending workers wait in this gateway's memory (pending.ts), never in the registry; only an approval
// writes a worker there. A registration the registry could not record is refused (UNRECORDABLE), so
// every worker that is served is listed and can be revoked. A revoked worker is refused, token or
// not. Registrations are counted per worker key (registration-rate.ts). Approvals and revocations
// made in the registry (by any gateway) reach connected workers through reconcile(). A worker that
// joins with a join token belongs to the token's account from then on (operator-store.ts).

export interface MembershipDeps {
  catalog: Catalog
  workers: WorkerPool
  pricing: Pricing
  /** checks a worker's token proof */
  tokens: Pick<WorkerTokens, 'verify'>
  log: Logger
  isMeshMember (key: string): boolean
  /** this gateway's public key, told to the worker */
  gateway: string
  pending?: PendingOptions
  rate?: RegistrationRateOptions
  /** which account each worker belongs to */
  operators?: Pick<OperatorStore, 'claim' | 'ready'>
}

type WorkerRecord = ReturnType<typeof recordable>

/**
 * What the registry would hold for this worker, checked against the registry's own schemas (the
 * worker entry, and the model entry each offered model gets): UNRECORDABLE if it would refuse any.
 */
function recordable (key: string, req: RequestOf<typeof GatewayProtocol.registerWorker>) {
  const fail = (msg: string) => MeshError.UNRECORDABLE(msg.replace(/^invalid /, 'the registry cannot record this '))
  for (const m of req.models) parseOrThrow(modelInput.shape.provider, m.backend, `worker: models.${m.id}.backend`, fail)
  const record = parseOrThrow(workerInput, { key, models: [...new Set(req.models.map((m) => m.id))], capacity: req.capacity ?? 64, label: req.label ?? '' }, 'worker', fail)
  return { key: record.key, models: record.models, capacity: record.capacity, label: record.label }
}

type Caller = Pick<HandlerContext, 'remoteKey' | 'peer'>

export class Membership {
  private readonly deps: MembershipDeps
  private readonly pending: PendingWorkers
  private readonly rate: RegistrationRate

  constructor (deps: MembershipDeps) {
    this.deps = deps
    this.pending = new PendingWorkers(deps.pending)
    this.rate = new RegistrationRate(deps.rate)
  }

  async register (req: RequestOf<typeof GatewayProtocol.registerWorker>, ctx: Caller): Promise<ResponseOf<typeof GatewayProtocol.registerWorker>> {
    const { catalog, workers, log } = this.deps
    const key = ctx.remoteKey
    this.rate.take(key)
    const member = this.deps.isMeshMember(key)
    const entry = catalog.worker(key)
    if (entry?.approval.state === 'revoked') throw MeshError.FORBIDDEN(`this worker was revoked by ${entry.approval.by}`)
    const record = recordable(key, req)
    const proof = !member && req.proof ? await this.deps.tokens.verify(req.proof, key) : null
    if (proof && !proof.ok && proof.reason === 'mismatch' && entry?.approval.state !== 'approved') {
      throw MeshError.FORBIDDEN('the worker token was not accepted: it is wrong, rotated, expired or revoked')
    }
    const tokenBy = proof?.ok ? proof.by : null
    const approved = member || tokenBy !== null || entry?.approval.state === 'approved'
    const label = req.label ?? null
    if (!approved) {
      // waiting workers stay in memory: nothing a stranger repeats reaches the append-only registry
      const fresh = this.pending.put(key, ctx.peer, { models: record.models, capacity: record.capacity, label: record.label })
      workers.upsert(ctx.peer, req.models, record.capacity, label, false)
      if (fresh) log.info({ worker: key.slice(0, 16), models: record.models.length }, 'worker registered, pending approval')
      return { accepted: true, gateway: this.deps.gateway, approval: 'pending' }
    }
    // an admitted worker is served only once the registry holds it, so it is listed and can be revoked
    const by = member ? 'mesh-allow-list' : tokenBy ?? 'registry'
    await this.record(record, by)
    await this.claim(key, proof?.ok ? proof.joined : undefined)
    this.pending.delete(key)
    const w = workers.upsert(ctx.peer, req.models, record.capacity, label, true)
    await this.ensureModels(w)
    log.info({ worker: key.slice(0, 16), models: record.models.length }, 'worker registered')
    return { accepted: true, gateway: this.deps.gateway, approval: 'approved' }
  }

  /** The account an admitted worker belongs to is known before it is served: its join token's, else the one recorded before. */
  private async claim (key: string, joined: { id: string, owner: string | null } | undefined): Promise<void> {
    const operators = this.deps.operators
    if (!operators) return
    await operators.ready()
    if (!joined) return
    try {
      await operators.claim(key, joined.id, joined.owner)
    } catch (err) {
      this.deps.log.warn({ worker: key.slice(0, 16), err: (err as Error).message }, 'could not record which account the worker belongs to')
      throw MeshError.UNAVAILABLE('the gateway could not record which account this worker belongs to; retry shortly')
    }
  }

  /** Write an admitted worker into the registry: what it serves if that changed, and its approval. */
  private async record (record: WorkerRecord, by: string): Promise<void> {
    const { catalog, log } = this.deps
    const entry = catalog.worker(record.key)
    try {
      if (!entry || entry.models.join(',') !== record.models.join(',') || entry.capacity !== record.capacity || entry.label !== record.label) {
        await catalog.write({ op: 'putWorker', input: record }, 'worker:' + record.key.slice(0, 16))
      }
      if (catalog.worker(record.key)?.approval.state !== 'approved') await catalog.write({ op: 'approveWorker', key: record.key }, by)
    } catch (err) {
      const code = (err as MeshError).code
      log.warn({ worker: record.key.slice(0, 16), code, err: (err as Error).message }, 'could not record the worker in the registry: refused')
      if (err instanceof MeshError && code !== 'BAD_REQUEST' && code !== 'INTERNAL') throw err
      throw MeshError.UNRECORDABLE('the registry cannot record this worker, so it is not admitted')
    }
  }

  /**
   * An admin's registry change. Approving or revoking a worker that waits here writes it into the
   * registry first (a waiting worker is not in it), from what it announced.
   */
  async adminChange (change: RegistryWrite, by: string, adminToken?: string): Promise<unknown> {
    const { catalog } = this.deps
    const key = change.op === 'approveWorker' || change.op === 'revokeWorker' ? change.key.toLowerCase() : null
    const waiting = key ? this.pending.get(key) : undefined
    if (key && waiting && !catalog.worker(key)) {
      await catalog.write({ op: 'putWorker', input: { key, models: waiting.models, capacity: waiting.capacity, label: waiting.label } }, by, adminToken)
    }
    const result = await catalog.write(change, by, adminToken)
    if (key) this.pending.delete(key)
    return result
  }

  /** Admins: clear the queue of waiting workers, or reject one; both drop their connections. */
  managePending (req: RequestOf<typeof GatewayProtocol.pendingWorkers>): ResponseOf<typeof GatewayProtocol.pendingWorkers> {
    if (req.op === 'clear') return { cleared: this.pending.clear() }
    if (!this.pending.reject(req.key.toLowerCase())) throw MeshError.NOT_FOUND(`worker ${req.key.slice(0, 16)}… is not waiting for approval here`)
    return { cleared: 1 }
  }

  /** The registry's workers with the ones waiting here (a waiting worker's live entry wins). */
  withPending (recorded: RegistryWorker[]): RegistryWorker[] {
    const waiting = this.pending.list()
    const keys = new Set(waiting.map((w) => w.key))
    return [...recorded.filter((w) => !keys.has(w.key)), ...waiting]
  }

  /** A registered worker's load report, on the connection it registered on. */
  heartbeat (req: RequestOf<typeof GatewayProtocol.workerHeartbeat>, ctx: Caller): ResponseOf<typeof GatewayProtocol.workerHeartbeat> {
    const w = this.deps.workers.get(ctx.remoteKey)
    if (!w || w.peer !== ctx.peer) throw MeshError.FORBIDDEN('register as a worker first')
    this.deps.workers.heartbeat(w, req)
    return { ok: true }
  }

  /** Apply approvals and revocations from the registry to connected workers. */
  reconcile (): void {
    const { catalog, workers, log } = this.deps
    for (const w of workers.all()) {
      const entry = catalog.worker(w.publicKey)
      if (!entry) continue
      if (entry.approval.state !== 'pending') this.pending.delete(w.publicKey)
      if (entry.approval.state === 'approved' && !w.approved) {
        w.approved = true
        void this.ensureModels(w).catch((err) => log.debug({ worker: w.publicKey.slice(0, 16), err: (err as Error).message }, 'models of an approved worker not recorded yet; its next registration retries'))
        log.info({ worker: w.publicKey.slice(0, 16), by: entry.approval.by }, 'worker approved')
      } else if (entry.approval.state === 'revoked' && w.approved !== false) {
        w.approved = false
        log.warn({ worker: w.publicKey.slice(0, 16), by: entry.approval.by }, 'worker revoked: disconnecting')
        w.peer.channel.stream?.destroy?.()
      }
    }
  }

  /** The models an approved worker offers enter the registry (with configured prices, if any). */
  private async ensureModels (w: WorkerConn): Promise<void> {
    for (const m of w.models.values()) {
      await this.deps.catalog.ensureModel(m.id, m.backend, m.contextLength, 'worker:' + w.publicKey.slice(0, 16), this.deps.pricing.configured(m.id))
    }
  }
}
