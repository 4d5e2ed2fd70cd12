import type pg from 'pg'
import { MeshService, type MeshServiceOptions } from '../../shared/mesh/service.ts'
import { handlers, type HandlerTable } from '../../shared/mesh/peer.ts'
import type { MeshClient } from '../../shared/mesh/client.ts'
import type { Peer } from '../../shared/mesh/peer.ts'
import { announceOn, networkTopic } from '../../shared/mesh/discovery.ts'
import { AuthEvents, AuthProtocol } from '../../shared/protocol/auth.ts'
import { GatewayProtocol, type GatewayHealth } from '../../shared/protocol/gateway.ts'
import type { RequestOf } from '../../shared/mesh/method.ts'
import type { Credential, PeerRole } from '../../shared/mesh/roles.ts'
import { MeshError } from '../../shared/errors.ts'
import { AccountReads } from './account-reads.ts'
import { Adaptive, type AdaptiveOptions } from './adaptive.ts'
import { Accounting } from './accounting.ts'
import { Admission } from './admission.ts'
import { aiRequest } from './ai-request.ts'
import { AUTH_PROXIES } from './auth-proxy.ts'
import { Catalog } from './catalog.ts'
import { Dispatcher } from './dispatch.ts'
import { Disclosure } from './disclosure.ts'
import { JoinTokens } from './join-tokens.ts'
import { Idempotency, idempotent } from './idempotency.ts'
import { authValidator, KeyCache } from './keycache.ts'
import { parseTiers, Pricing, type Price, type TierLimits } from './limits.ts'
import { ReceiptDesk, ReceiptReads } from './receipts.ts'
import { Listings } from './listings.ts'
import { Membership } from './membership.ts'
import { OperatorMethods } from './operators.ts'
import { RequestDoor } from './drain.ts'
import { DatabaseProbe, gatewayHealth } from './health.ts'
import { OperatorStore } from './operator-store.ts'
import { RequestPipeline } from './pipeline.ts'
import { SafetyLayer, type SafetyConfig } from './safety/layer.ts'
import { SessionUsers } from './sessions.ts'
import { Settler } from './settlement.ts'
import { WorkerPool } from './workers.ts'
import { WorkerTokens } from './worker-tokens.ts'

// The public entry of the mesh. This file wires the gateway's parts together and holds its handler
// table, lifecycle and health; each part is its own module: a request's steps (pipeline.ts and the
// modules it names), worker membership, join tokens, account reads, the registry (catalog.ts) and
// the account methods answered by auth (auth-proxy.ts).

/** registry changes a gateway makes on its own (a worker joins, offers a model); anything else is an admin's */
const REPLICA_OWN_CHANGES = new Set(['putWorker', 'approveWorker', 'addModel'])

export interface GatewayOptions extends Omit<MeshServiceOptions, 'name' | 'privateOnly'> {
  pool: pg.Pool
  authKey: string
  workerToken?: string
  /** requests per hour per key, by key tier (shorthand for tiers.*.requestsPerHour) */
  rateLimits?: { default: number, premium: number }
  /** full tier limits; see limits.ts */
  tiers?: Record<string, TierLimits>
  /** USD per 1M tokens, by model; unpriced models are free */
  prices?: Record<string, Price>
  /** the completion budget held (and enforced) for a request that names no maxTokens */
  defaultMaxTokens?: number
  /** benchmarks only: no limits, no credits, no usage rows */
  accounting?: boolean
  /** a request still 'processing' after this long is failed by the sweeper */
  stuckAfterMs?: number
  /** 'write' (default): an answer waits until the kernel has its settlement (synced within 10 ms); 'fsync': until it survives a power cut */
  settlementSync?: 'fsync' | 'write'
  /** an unused lease slice goes back to PostgreSQL after this long */
  leaseIdleMs?: number
  /** at rest, finished requests wait this long for company before they go to PostgreSQL */
  recordDelayMs?: number
  sweepEveryMs?: number
  maxPromptChars?: number
  defaultModel?: string
  keyCacheTtlMs?: number
  /** no token or response from a worker for this long fails the attempt */
  workerIdleTimeoutMs?: number
  maxAttempts?: number
  /** state dir: the registry lives under registry/<instance> */
  home?: string
  /** this gateway's instance name (gateway, gateway-2, …) */
  instance?: string
  /** follow this registry (a replica) instead of writing one; writes go to `registryFrom` */
  registryKey?: string
  /** the public key of the gateway that writes the registry */
  registryFrom?: string
  /** writer only: the replica gateways it vouches for in the registry at start (workers serve only vouched gateways) */
  replicaGateways?: string[]
  /** how often measured latency is written to the registry, at most */
  measureIntervalMs?: number
  breaker?: { threshold?: number, cooldownMs?: number }
  /** the response cache, predictive warm-up and learned routing (adaptive.ts) */
  adaptive?: AdaptiveOptions
  /** how long an idempotent request's answer is kept for retries */
  idempotencyTtlMs?: number
  /** the safety layer's operator settings (safety/layer.ts); default: flag, no restoring, model when served, alerts only */
  safety?: SafetyConfig
  /** the network's share of each charge, percent; the serving worker's owner earns the rest (default 10) */
  networkFeePct?: number
  /** on close, how long running requests may take to finish before the gateway stops anyway (default 20000) */
  drainTimeoutMs?: number
}

export class GatewayService extends MeshService {
  private readonly pool: pg.Pool
  private readonly opts: GatewayOptions
  private auth!: MeshClient
  readonly workers: WorkerPool
  readonly catalog: Catalog
  readonly keys: KeyCache
  readonly accounting: Accounting
  readonly pricing: Pricing
  readonly pipeline: RequestPipeline
  readonly adaptive: Adaptive
  readonly safety: SafetyLayer
  readonly idempotency: Idempotency
  private readonly accountingOn: boolean
  private readonly listings: Listings
  private readonly sessions: SessionUsers
  private readonly disclosure: Disclosure
  private readonly reads: AccountReads
  private readonly receipts: ReceiptReads
  private readonly joinTokens: JoinTokens
  private readonly workerTokens: WorkerTokens
  private readonly membership: Membership
  readonly operators: OperatorStore
  private readonly operatorMethods: OperatorMethods
  private stopAnnounce: (() => Promise<void>) | null = null
  private sweepTimer: NodeJS.Timeout | null = null
  private readonly database: DatabaseProbe
  /** requests go elsewhere until the parts they need are up (started), and once closing (draining) */
  private readonly door: RequestDoor

  constructor (opts: GatewayOptions) {
    // tokens arrive from workers already gathered; each batch goes on before the turn's other work
    super({ ...opts, name: 'gateway', frames: 'relay' })
    this.opts = opts
    this.pool = opts.pool
    this.database = new DatabaseProbe(opts.pool)
    const tiers = opts.tiers ?? parseTiers(undefined, opts.rateLimits)
    this.accountingOn = opts.accounting ?? true
    this.door = new RequestDoor(this.log, this.accountingOn ? () => this.database.ok() : undefined)
    this.keys = new KeyCache(authValidator(() => this.auth, () => this.database.ok()), opts.keyCacheTtlMs)
    this.sessions = new SessionUsers((token) => this.auth.call(AuthProtocol.whoami, { token }, 10_000).then((r) => r.user))
    this.disclosure = new Disclosure(this.sessions, (key) => this.isMeshMember(key))
    const desk = new ReceiptDesk(this.keyPair)
    this.accounting = new Accounting(this.pool, {
      completeReceipts: (rs) => desk.completeAll(rs),
      log: this.log, gateway: this.publicKey, logDir: Accounting.logDir(opts.home ?? '.hyperinfer', opts.instance ?? 'gateway'),
      sync: opts.settlementSync, leaseIdleMs: opts.leaseIdleMs, recordDelayMs: opts.recordDelayMs, stuckAfterMs: opts.stuckAfterMs, sweepEveryMs: opts.sweepEveryMs,
      feePct: opts.networkFeePct
    })
    this.idempotency = new Idempotency({ pool: this.accountingOn ? this.pool : null, gateway: this.publicKey, log: this.log, ttlMs: opts.idempotencyTtlMs })
    this.pricing = new Pricing(opts.prices)
    this.workers = new WorkerPool(opts.breaker)
    // operators' accounts, prices and drains, read from memory on every request
    this.operators = new OperatorStore({ pool: this.pool, log: this.log })
    this.pricing.operators((w, m) => this.operators.priceOf(w, m), (m) => this.workers.servers(m))
    this.workers.operators((w) => this.operators.isDrained(w), (w, m) => { const p = this.pricing.tokenPrice(m, w); return p.input + 3 * p.output })
    this.catalog = new Catalog({
      home: opts.home ?? '.hyperinfer', name: opts.instance ?? 'gateway', registryKey: opts.registryKey, log: this.log, measureIntervalMs: opts.measureIntervalMs
    })
    this.pricing.source((model) => this.catalog.price(model))
    this.listings = new Listings(this.catalog, this.workers, this.pricing)
    this.reads = new AccountReads({
      pool: this.pool, keys: this.keys, sessionUser: (token) => this.sessions.user(token), tiers,
      ...(this.accountingOn ? { settled: () => this.accounting.flushed(), unused: (name: string) => this.accounting.unused(name) } : {})
    })
    this.receipts = new ReceiptReads({ pool: this.pool, ...(this.accountingOn ? { settled: () => this.accounting.flushed() } : {}) })
    this.joinTokens = new JoinTokens(this.pool, this.log)
    this.workerTokens = new WorkerTokens({ pool: this.pool, joinTokens: this.joinTokens, log: this.log, gateway: this.publicKey, seed: opts.workerToken })
    this.membership = new Membership({
      catalog: this.catalog, workers: this.workers, pricing: this.pricing, tokens: this.workerTokens, log: this.log,
      isMeshMember: (key) => this.isMeshMember(key), gateway: this.publicKey, operators: this.operators
    })
    this.operatorMethods = new OperatorMethods({
      pool: this.pool, store: this.operators, user: (t) => this.sessions.user(t), feePct: this.accounting.feePct,
      workers: () => this.membership.withPending(this.listings.registryWorkers()),
      modelsOf: (w) => this.catalog.worker(w)?.models ?? [...(this.workers.get(w)?.models.keys() ?? [])],
      settled: () => this.accountingOn ? this.accounting.flushed() : Promise.resolve()
    })
    const ledger = this.accountingOn ? this.accounting : null
    const dispatch = new Dispatcher(this.workers, {
      maxAttempts: opts.maxAttempts, idleTimeoutMs: opts.workerIdleTimeoutMs, log: this.log, price: (model, worker) => this.pricing.tokenPrice(model, worker)
    })
    this.safety = new SafetyLayer({
      config: opts.safety ?? { defaultPolicy: 'flag', restoreRedacted: false, useModel: true, anomaly: { threshold: 10, action: 'alert', webhook: null } },
      pool: this.accountingOn ? this.pool : null, metrics: this.metrics, log: this.log, auth: () => this.auth, keys: this.keys,
      sessionUser: (token) => this.sessions.user(token), candidates: () => this.listings.candidates(), dispatch, memberKind: (key) => this.memberKind(key)
    })
    this.adaptive = new Adaptive({
      pool: this.pool, pricing: this.pricing, metrics: this.metrics, log: this.log, gateway: this.publicKey, ledger: this.accountingOn,
      dispatch: () => dispatch, workers: () => this.workers.summaries(), identity: (k) => this.keys.resolve(k), user: (t) => this.sessions.user(t),
      recorded: () => this.accountingOn ? this.accounting.flushed() : Promise.resolve()
    }, opts.adaptive)
    this.pipeline = new RequestPipeline({
      admission: new Admission({
        keys: this.keys, served: this.workers, accounting: ledger, pricing: this.pricing, tiers, metrics: this.metrics, gateway: this.publicKey, defaultModel: opts.defaultModel
      }),
      dispatch,
      safety: this.safety,
      settler: new Settler(this.pricing, ledger, (w) => this.operators.ownerOf(w), desk),
      receipts: desk,
      listings: this.listings,
      metrics: this.metrics,
      maxPromptChars: opts.maxPromptChars,
      defaultMaxTokens: opts.defaultMaxTokens,
      log: this.log,
      ...this.adaptive.pipelineDeps()
    })
  }

  protected handlers (): HandlerTable {
    const table = handlers()
    for (const proxy of AUTH_PROXIES) proxy.mount(table, () => this.auth)
    this.safety.mount(table)
    this.operatorMethods.mount(table, (token) => this.sessions.admin(token))
    this.receipts.mount(table, (token) => this.sessions.user(token))
    return this.adaptive.mount(table)
      .on(GatewayProtocol.infer, (req, ctx) => this.door.run(() => this.safety.track(ctx, () => idempotent(this.idempotency, this.keys, 'infer', req, ctx, (caller) => this.pipeline.infer(req, caller)))))
      .on(GatewayProtocol.embed, (req, ctx) => this.door.run(() => idempotent(this.idempotency, this.keys, 'embed', req, { signal: ctx.signal, span: ctx.span }, (caller) => this.pipeline.embed(req, caller))))
      .on(GatewayProtocol.aiRequest, (req, ctx) => this.door.run(() => aiRequest(this.pipeline, req, ctx)))
      .on(GatewayProtocol.usage, (req) => this.reads.usage(req))
      .on(GatewayProtocol.credits, (req) => this.reads.ledger(req))
      .on(GatewayProtocol.getUserQuota, (req) => this.reads.quota(req.apiKey))
      .on(GatewayProtocol.receipt, async (req) => this.receipts.get(await this.keys.resolve(req.apiKey), req.id))
      .on(GatewayProtocol.accountQuota, (req) => this.reads.accountQuota(req.token))
      .on(GatewayProtocol.models, () => ({ models: this.listings.served() }))
      .on(GatewayProtocol.registry, (req, ctx) => this.disclosure.registry({ key: this.catalog.key, writable: this.catalog.writable, models: this.listings.registryModels(), gateways: this.catalog.allGateways() }, ctx.remoteKey, req.token))
      .on(GatewayProtocol.registryChange, async (req) => ({ result: await this.membership.adminChange(req.change, await this.sessions.adminName(req.token), req.token) }))
      .on(GatewayProtocol.registryForward, async (req, ctx) => ({ result: await this.catalog.write(req.change, await this.forwardedBy(req, ctx.remoteKey)) }))
      .on(GatewayProtocol.registryHistory, async (req) => {
        await this.sessions.admin(req.token)
        return { key: this.catalog.key, entries: await this.catalog.history(req.limit ?? 50) }
      })
      .on(GatewayProtocol.workers, (req) => this.operatorMethods.workers(req.token))
      .on(GatewayProtocol.pendingWorkers, async (req) => { await this.sessions.admin(req.token); return this.membership.managePending(req) })
      .on(GatewayProtocol.joinTokens, async (req) => this.joinTokens.manage(req, await this.sessions.admin(req.token)))
      .on(GatewayProtocol.rotateWorkerToken, async (req) => this.workerTokens.rotate(await this.sessions.admin(req.token)))
      .on(GatewayProtocol.registerWorker, (req, ctx) => this.membership.register(req, ctx))
      .on(GatewayProtocol.workerHeartbeat, (req, ctx) => this.membership.heartbeat(req, ctx))
      .on(GatewayProtocol.getServiceHealth, async (req, ctx) => this.disclosure.health(await this.health(), ctx.remoteKey, req.token))
      .table
  }

  get drainTimeoutMs (): number { return this.opts.drainTimeoutMs ?? 20_000 }

  /** Besides its configured kind: an approved worker on its own connection, and (on the writer) a replica gateway. */
  protected callerRoles (remoteKey: string, peer: Peer): Set<PeerRole> {
    const roles = super.callerRoles(remoteKey, peer)
    const w = this.workers.get(remoteKey)
    if (w && w.peer === peer && w.approved) roles.add('worker')
    if (roles.has('gateway') && this.catalog.writable) roles.add('replicaGateway')
    return roles
  }

  protected async verifyCredential (needs: Credential, value: string): Promise<void> {
    if (needs === 'apiKey') await this.keys.resolve(value)
    else if (needs === 'session') await this.sessions.user(value)
    else await this.sessions.admin(value)
  }

  /**
   * Who a forwarded registry change is recorded as: the admin whose session came with it, checked
   * here; without one, the replica itself, and only for the changes a gateway makes on its own.
   */
  private async forwardedBy (req: RequestOf<typeof GatewayProtocol.registryForward>, replicaKey: string): Promise<string> {
    if (req.token) return this.sessions.adminName(req.token)
    if (!REPLICA_OWN_CHANGES.has(req.change.op)) throw MeshError.FORBIDDEN(`a forwarded ${req.change.op} needs an admin's session`)
    return 'gateway:' + replicaKey.slice(0, 16)
  }

  protected onPeer (peer: Peer): void {
    // the registry replicates over the same connection to whoever asks for it by its key: gateways,
    // the web, and workers that check this gateway is vouched for before they join it. It is signed
    // by its writer, so any gateway (replica or writer) can pass it on.
    if (this.catalog.registry.opened) this.catalog.serve(peer)
  }

  protected async onOpen (): Promise<void> {
    // first (requests reach the server from now on and resolve their keys through auth), then the log
    // a previous process left: read now, recorded in PostgreSQL in the background (accounting.ts)
    this.auth = this.connectTo(this.opts.authKey, {
      name: 'auth',
      dialled: 'auth',
      handlers: handlers().on(AuthEvents.keyRevoked, (ev) => { this.keys.dropKeyId(ev.keyId) }).table
    })
    // a revocation pushed while we were disconnected would be missed: forget every cached key
    this.auth.on('close', () => this.keys.clear())
    this.auth.on('open', () => this.keys.clear())
    if (this.accountingOn) {
      await this.accounting.recover()
      this.accounting.start()
    }
    await this.catalog.open()
    void this.operators.start()
    // a database that is not up yet only delays the seed: the next start stores it
    await this.workerTokens.seed().catch((err) => this.log.warn({ err: (err as Error).message }, 'could not store the configured worker token'))
    for (const p of this.peers) this.onPeer(p)
    // workers that know only the network key (the registry key) find gateways on its topic
    this.stopAnnounce = announceOn(this.dhtNode, networkTopic(this.catalog.key), this.keyPair, this.log)
    this.catalog.onChange(() => this.membership.reconcile())
    if (this.opts.registryFrom) {
      const writer = this.connectTo(this.opts.registryFrom, { name: 'registry-writer' })
      this.catalog.follow(writer, (change, token) => writer.call(GatewayProtocol.registryForward, token ? { change, token } : { change }, 10_000).then((r) => r.result))
    } else {
      await this.vouchForGateways([this.publicKey, ...(this.opts.replicaGateways ?? [])])
      await this.catalog.seedPrices(this.pricing.all())
    }
    this.safety.start()
    await this.adaptive.open(this.catalog)
    this.sweepTimer = setInterval(() => {
      this.keys.sweep()
      this.idempotency.expire().catch((err) => this.log.debug({ err: (err as Error).message }, 'expired idempotency keys not deleted yet'))
    }, 60_000)
    this.sweepTimer.unref()
    this.idempotency.start()
    // requests are let in once the previous log is recorded (a restart, at once), or as soon as that
    // waits on a database out of reach: admissions are refused until it is back
    if (this.accountingOn) await Promise.race([this.accounting.recovery(), new Promise((resolve) => setTimeout(resolve, 10_000).unref())])
    this.door.open()
  }

  /** The writer vouches for itself and its configured replicas; one already listed keeps its entry. */
  private async vouchForGateways (keys: string[]): Promise<void> {
    for (const key of new Set(keys.map((k) => k.toLowerCase()))) {
      if (this.catalog.gateway(key)) continue
      const label = key === this.publicKey ? (this.opts.instance ?? 'gateway') : 'replica'
      await this.catalog.write({ op: 'putGateway', input: { key, label } }, 'gateway-config')
        .catch((err) => this.log.warn({ gateway: key.slice(0, 16), err: (err as Error).message }, 'could not vouch for a gateway in the registry'))
    }
  }

  protected async onClose (): Promise<void> {
    // unannounced first, so workers and callers looking for a gateway find the others
    await this.stopAnnounce?.()
    this.stopAnnounce = null
    await this.door.drain(this.drainTimeoutMs)
    // the answers just given are in the database before it stops, so a retry elsewhere replays them
    await this.idempotency.close()
    if (this.sweepTimer) clearInterval(this.sweepTimer)
    this.operators.close()
    await this.adaptive.close()
    if (this.accountingOn) await this.accounting.close()
    await this.safety.close()
    await this.catalog.close()
  }

  async health (): Promise<GatewayHealth> {
    return gatewayHealth({ publicKey: this.publicKey, startedAt: this.startedAt, authUp: this.auth.connected, dbOk: await this.database.ok(), workers: this.workers })
  }
}
