import { MeshError } from '../../shared/errors.ts'
import type { Logger } from '../../shared/log.ts'
import type { RequestOf, ResponseOf } from '../../shared/mesh/method.ts'
import type { HandlerContext } from '../../shared/mesh/peer.ts'
import type { GatewayProtocol } from '../../shared/protocol/gateway.ts'
import type { Catalog } from './catalog.ts'
import type { Pricing } from './limits.ts'
import type { WorkerConn, WorkerPool } from './workers.ts'
import type { WorkerTokens } from './worker-tokens.ts'

// Which workers get traffic. A worker announces itself (registerWorker): mesh members and workers
// that prove they hold the network's worker token or a join token are approved at once (a proof
// that matches no valid token is refused); anyone else is recorded as pending and gets no traffic
// until an operator approves it (`hyperinfer workers approve <key>`).
// A revoked worker is refused, token or not. Approvals and revocations made in the registry (by any
// gateway) reach connected workers through reconcile().

/** strangers may not grow the shared registry without bound */
const MAX_PENDING_WORKERS = 100

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
}

type Caller = Pick<HandlerContext, 'remoteKey' | 'peer'>

export class Membership {
  private readonly deps: MembershipDeps

  constructor (deps: MembershipDeps) {
    this.deps = deps
  }

  async register (req: RequestOf<typeof GatewayProtocol.registerWorker>, ctx: Caller): Promise<ResponseOf<typeof GatewayProtocol.registerWorker>> {
    const { catalog, workers, log } = this.deps
    const key = ctx.remoteKey
    const member = this.deps.isMeshMember(key)
    const entry = catalog.worker(key)
    if (entry?.approval.state === 'revoked') throw MeshError.FORBIDDEN(`this worker was revoked by ${entry.approval.by}`)
    const proof = !member && req.proof ? await this.deps.tokens.verify(req.proof, key) : null
    if (proof && !proof.ok && proof.reason === 'mismatch' && entry?.approval.state !== 'approved') {
      throw MeshError.FORBIDDEN('the worker token was not accepted: it is wrong, rotated, expired or revoked')
    }
    const tokenBy = proof?.ok ? proof.by : null
    const approved = member || tokenBy !== null || entry?.approval.state === 'approved'
    const models = req.models.map((m) => m.id)
    // a bounded queue of pending workers, whose models enter the catalog only once they are approved
    if (!approved && !entry && catalog.allWorkers().filter((e) => e.approval.state === 'pending').length >= MAX_PENDING_WORKERS) {
      throw MeshError.FORBIDDEN(`${MAX_PENDING_WORKERS} workers are already waiting for approval; ask an operator for a join token`)
    }
    if (models.length > 256) throw MeshError.BAD_REQUEST('a worker may offer at most 256 models')
    const capacity = req.capacity ?? 64
    const w = workers.upsert(ctx.peer, req.models, capacity, req.label ?? null, approved)
    try {
      if (approved) await this.ensureModels(w)
      if (!entry || entry.models.join(',') !== models.join(',') || entry.capacity !== capacity) {
        await catalog.write({ op: 'putWorker', input: { key, models, capacity, label: req.label ?? '' } }, 'worker:' + key.slice(0, 16))
      }
      if (approved && catalog.worker(key)?.approval.state !== 'approved') {
        const by = member ? 'mesh-allow-list' : tokenBy ?? 'registry'
        await catalog.write({ op: 'approveWorker', key }, by)
      }
    } catch (err) {
      // the registry is the record, not the gate: a worker admitted by token still serves
      log.warn({ worker: key.slice(0, 16), err: (err as Error).message }, 'could not record the worker in the registry')
    }
    log.info({ worker: w.publicKey.slice(0, 16), models, approved }, approved ? 'worker registered' : 'worker registered, pending approval')
    return { accepted: true, gateway: this.deps.gateway, approval: approved ? 'approved' : 'pending' }
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
