import crypto from 'node:crypto'
import type pg from 'pg'
import { MeshService, type MeshServiceOptions } from '../../shared/mesh/service.ts'
import { handlers, type HandlerContext, type HandlerTable } from '../../shared/mesh/peer.ts'
import type { MeshClient } from '../../shared/mesh/client.ts'
import type { RequestOf } from '../../shared/mesh/method.ts'
import { AuthEvents, AuthProtocol, type Credits, type KeyIdentity } from '../../shared/protocol/auth.ts'
import { GatewayProtocol, type AiResponse, type GatewayHealth, type InferResult, type JoinTokenInfo, type Quota, type QuotaLimit } from '../../shared/protocol/gateway.ts'
import { InferenceProtocol, type ChatMessage, type TokenChunk } from '../../shared/protocol/inference.ts'
import { MeshError } from '../../shared/errors.ts'
import { sha256Hex } from '../../shared/apikey.ts'
import { KeyCache } from './keycache.ts'
import { Accounting, type AdmitResult, type CounterSpec } from './accounting.ts'
import { countersFor, countPromptTokens, describeCounter, parseTiers, Pricing, promptTokenHold, toUsd, type Price, type TierLimits } from './limits.ts'
import { WorkerPool, type WorkerConn } from './workers.ts'
import { route, type ModelCandidate, type Weights } from './router.ts'
import { Catalog, type RegistryWrite } from './catalog.ts'
import { announceOn, networkTopic } from '../../shared/mesh/discovery.ts'
import type { Peer } from '../../shared/mesh/peer.ts'

// The public entry of the mesh. Per inference request: validate → authenticate the key (cached) →
// check the model → take a rate-limit slot → pick a worker → stream tokens back → record usage.

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
  /** how often measured latency is written to the registry, at most */
  measureIntervalMs?: number
  breaker?: { threshold?: number, cooldownMs?: number }
}

const FINISH_REASONS = new Set<unknown>(['stop', 'length', 'cancelled'])
/** a token count from a peer: a non-negative integer (capped), anything else counts as unknown (0) */
function count (v: unknown): number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v > 0 ? Math.min(v, 100_000_000) : 0
}

const MAX_PENDING_WORKERS = 100

const RETRYABLE = new Set(['UNAVAILABLE', 'TIMEOUT', 'BACKEND_ERROR', 'SHUTTING_DOWN', 'INTERNAL', 'UNKNOWN_MODEL'])

interface JoinTokenRow { id: string, prefix: string, label: string, created_at: Date, expires_at: Date | null, revoked_at: Date | null, uses: number, last_used_at: Date | null }

function joinTokenInfo (r: JoinTokenRow): JoinTokenInfo {
  const expired = r.expires_at !== null && r.expires_at.getTime() <= Date.now()
  return {
    id: r.id, prefix: r.prefix, label: r.label, createdAt: r.created_at.toISOString(), expiresAt: r.expires_at?.toISOString() ?? null,
    revokedAt: r.revoked_at?.toISOString() ?? null, uses: r.uses, lastUsedAt: r.last_used_at?.toISOString() ?? null,
    status: r.revoked_at ? 'revoked' : expired ? 'expired' : 'active'
  }
}

export class GatewayService extends MeshService {
  private readonly pool: pg.Pool
  private readonly opts: GatewayOptions
  private auth!: MeshClient
  readonly workers: WorkerPool
  readonly catalog: Catalog
  private stopAnnounce: (() => Promise<void>) | null = null
  readonly keys: KeyCache
  readonly accounting: Accounting
  readonly pricing: Pricing
  private readonly tiers: Record<string, TierLimits>
  private readonly accountingOn: boolean
  private sweepTimer: NodeJS.Timeout | null = null
  private dbProbe: { at: number, ok: Promise<boolean> } | null = null
  /** moving average of time to first token per model, as this gateway measured it */
  private readonly ttftAvg = new Map<string, number>()

  constructor (opts: GatewayOptions) {
    super({ ...opts, name: 'gateway' })
    this.opts = opts
    this.pool = opts.pool
    this.keys = new KeyCache((keyHash) => this.auth.call(AuthProtocol.validateApiKey, { keyHash }, 5000), opts.keyCacheTtlMs)
    this.accounting = new Accounting(this.pool, { log: this.log, stuckAfterMs: opts.stuckAfterMs, sweepEveryMs: opts.sweepEveryMs })
    this.pricing = new Pricing(opts.prices)
    this.tiers = opts.tiers ?? parseTiers(undefined, opts.rateLimits)
    this.accountingOn = opts.accounting ?? true
    this.workers = new WorkerPool(opts.breaker)
    this.catalog = new Catalog({
      home: opts.home ?? '.hyperinfer', name: opts.instance ?? 'gateway', registryKey: opts.registryKey, log: this.log, measureIntervalMs: opts.measureIntervalMs
    })
    this.pricing.source((model) => this.catalog.price(model))
  }

  protected handlers (): HandlerTable {
    // account and key methods are proxied to auth, so a CLI needs nothing but the gateway's key
    const t = 15_000
    return handlers()
      .on(GatewayProtocol.register, (req, ctx) => this.auth.call(AuthProtocol.registerUser, { ...req, source: ctx.remoteKey }, t))
      .on(GatewayProtocol.login, (req, ctx) => this.auth.call(AuthProtocol.loginUser, { ...req, source: ctx.remoteKey }, t))
      .on(GatewayProtocol.createKey, (req) => this.auth.call(AuthProtocol.generateApiKey, req, t))
      .on(GatewayProtocol.listKeys, (req) => this.auth.call(AuthProtocol.listApiKeys, req, t))
      .on(GatewayProtocol.revokeKey, (req) => this.auth.call(AuthProtocol.revokeApiKey, req, t))
      .on(GatewayProtocol.usage, (req) => this.auth.call(AuthProtocol.getUserUsage, req, t))
      .on(GatewayProtocol.whoami, (req) => this.auth.call(AuthProtocol.whoami, req, t))
      .on(GatewayProtocol.logout, (req) => this.auth.call(AuthProtocol.logout, req, t))
      .on(GatewayProtocol.credits, (req) => this.auth.call(AuthProtocol.getCredits, req, t))
      .on(GatewayProtocol.grantCredits, (req) => this.auth.call(AuthProtocol.grantCredits, req, t))
      .on(GatewayProtocol.infer, (req, ctx) => this.infer(req, ctx))
      .on(GatewayProtocol.embed, (req, ctx) => this.embed(req, ctx))
      .on(GatewayProtocol.aiRequest, (req, ctx) => this.aiRequest(req, ctx))
      .on(GatewayProtocol.models, () => ({ models: this.listing() }))
      .on(GatewayProtocol.registry, () => ({ key: this.catalog.key, writable: this.catalog.writable, models: this.registryListing() }))
      .on(GatewayProtocol.registryChange, async (req) => ({ result: await this.catalog.write(req.change as RegistryWrite, await this.adminName(req.token)) }))
      .on(GatewayProtocol.registryForward, async (req) => ({ result: await this.catalog.write(req.change as RegistryWrite, req.by) }))
      .on(GatewayProtocol.registryHistory, async (req) => {
        await this.adminName(req.token)
        return { key: this.catalog.key, entries: await this.catalog.history(req.limit ?? 50) }
      })
      .on(GatewayProtocol.workers, async (req) => { await this.adminName(req.token); return { workers: this.registryWorkers() } })
      .on(GatewayProtocol.joinTokens, (req) => this.joinTokens(req))
      .on(GatewayProtocol.getServiceHealth, () => this.health())
      .on(GatewayProtocol.getUserQuota, (req) => this.quota(req.apiKey))
      .on(GatewayProtocol.accountQuota, (req) => this.accountQuota(req.token))
      .on(GatewayProtocol.registerWorker, (req, ctx) => this.registerWorker(req, ctx))
      .on(GatewayProtocol.workerHeartbeat, (req, ctx) => {
        const w = this.workers.get(ctx.remoteKey)
        if (!w || w.peer !== ctx.peer) throw MeshError.FORBIDDEN('register as a worker first')
        this.workers.heartbeat(w, req)
        return { ok: true as const }
      })
      .table
  }

  protected onPeer (peer: Peer): void {
    // the registry replicates to mesh members (other gateways, web) over the same connection
    if (this.isMeshMember(peer.remoteKey) && this.catalog.registry.opened) this.catalog.serve(peer)
  }

  protected async onOpen (): Promise<void> {
    await this.catalog.open()
    for (const p of this.peers) this.onPeer(p)
    // workers that know only the network key (the registry key) find gateways on its topic
    this.stopAnnounce = announceOn(this.dhtNode, networkTopic(this.catalog.key), this.keyPair, this.log)
    this.catalog.onChange(() => this.reconcileWorkers())
    if (this.opts.registryFrom) {
      const writer = this.connectTo(this.opts.registryFrom, { name: 'registry-writer' })
      this.catalog.follow(writer, (change, by) => writer.call(GatewayProtocol.registryForward, { change: change as any, by }, 10_000).then((r) => r.result))
    } else {
      await this.seedPrices()
    }
    this.auth = this.connectTo(this.opts.authKey, {
      name: 'auth',
      handlers: handlers().on(AuthEvents.keyRevoked, (ev) => { this.keys.dropKeyId(ev.keyId) }).table
    })
    // a revocation pushed while we were disconnected would be missed: forget every cached key
    this.auth.on('close', () => this.keys.clear())
    this.auth.on('open', () => this.keys.clear())
    if (this.accountingOn) this.accounting.start()
    this.sweepTimer = setInterval(() => { this.keys.sweep() }, 60_000)
    this.sweepTimer.unref()
  }

  protected async onClose (): Promise<void> {
    if (this.sweepTimer) clearInterval(this.sweepTimer)
    await this.stopAnnounce?.()
    await this.accounting.close()
    await this.catalog.close()
  }

  /** MODEL_PRICES from the environment go into the registry, where every gateway reads them. */
  private async seedPrices (): Promise<void> {
    for (const [id, p] of Object.entries(this.pricing.all())) {
      const cur = this.catalog.model(id)
      if (cur && cur.pricePer1MInput === p.input && cur.pricePer1MOutput === p.output) continue
      const change: RegistryWrite = cur
        ? { op: 'setModel', id, patch: { pricePer1MInput: p.input, pricePer1MOutput: p.output } }
        : { op: 'putModel', input: { id, provider: 'configured', backendModel: id, tasks: ['chat'], contextLength: 8192, pricePer1MInput: p.input, pricePer1MOutput: p.output, quality: 0.5, safety: 0.5 } }
      await this.catalog.write(change, 'MODEL_PRICES').catch((err) => this.log.warn({ model: id, err: (err as Error).message }, 'could not seed a price'))
    }
  }

  /** The session's user, if an admin; the actor name recorded with registry changes. */
  private async adminName (token: string): Promise<string> {
    return 'user:' + (await this.adminUser(token)).username
  }

  private async adminUser (token: string) {
    const { user } = await this.auth.call(AuthProtocol.whoami, { token }, 10_000)
    if (user.role !== 'admin') throw MeshError.FORBIDDEN('only an admin can do this')
    return user
  }

  /** Admins create, list and revoke worker join tokens (kept in PostgreSQL, so every gateway honours them). */
  private async joinTokens (req: RequestOf<typeof GatewayProtocol.joinTokens>) {
    const user = await this.adminUser(req.token)
    const admin = 'user:' + user.username
    let created: (JoinTokenInfo & { token: string }) | undefined
    if (req.op === 'create') {
      const token = 'hij_' + crypto.randomBytes(32).toString('base64url')
      const { rows } = await this.pool.query<JoinTokenRow>(
        `INSERT INTO worker_join_tokens (token_hash, prefix, label, created_by, expires_at)
         VALUES ($1, $2, $3, $4, CASE WHEN $5::int IS NULL THEN NULL ELSE now() + make_interval(hours => $5::int) END) RETURNING *`,
        [sha256Hex(token), token.slice(0, 10), req.label, user.id, req.expiresInHours ?? null])
      created = { ...joinTokenInfo(rows[0]!), token }
      this.log.info({ id: rows[0]!.id, by: admin }, 'join token created')
    } else if (req.op === 'revoke') {
      const { rowCount } = await this.pool.query('UPDATE worker_join_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1', [req.id])
      if (!rowCount) throw MeshError.NOT_FOUND('no such join token')
    }
    const { rows } = await this.pool.query<JoinTokenRow>('SELECT * FROM worker_join_tokens ORDER BY created_at DESC LIMIT 200')
    return { tokens: rows.map(joinTokenInfo), ...(created ? { created } : {}) }
  }

  /** A join token's label if the token is valid (counted as used), else null. */
  private async joinTokenLabel (token: string): Promise<string | null> {
    if (!token.startsWith('hij_')) return null
    const { rows } = await this.pool.query<{ label: string }>(
      `UPDATE worker_join_tokens SET uses = uses + 1, last_used_at = now()
       WHERE token_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()) RETURNING label`, [sha256Hex(token)])
    return rows[0]?.label ?? null
  }

  /** The models an approved worker offers enter the registry (with configured prices, if any). */
  private async ensureModels (w: WorkerConn): Promise<void> {
    for (const m of w.models.values()) {
      await this.catalog.ensureModel(m.id, m.backend, m.contextLength, 'worker:' + w.publicKey.slice(0, 16), this.pricing.configured(m.id))
    }
  }

  /** Apply approvals and revocations from the registry to connected workers. */
  private reconcileWorkers (): void {
    for (const w of this.workers.all()) {
      const entry = this.catalog.worker(w.publicKey)
      if (!entry) continue
      if (entry.approval.state === 'approved' && !w.approved) {
        w.approved = true
        void this.ensureModels(w).catch(() => {})
        this.log.info({ worker: w.publicKey.slice(0, 16), by: entry.approval.by }, 'worker approved')
      } else if (entry.approval.state === 'revoked' && w.approved !== false) {
        w.approved = false
        this.log.warn({ worker: w.publicKey.slice(0, 16), by: entry.approval.by }, 'worker revoked: disconnecting')
        w.peer.channel.stream?.destroy?.()
      }
    }
  }

  private listing () {
    return this.workers.listing().map((m) => ({ ...m, ...this.registryFields(m.id) }))
  }

  private registryFields (id: string) {
    const e = this.catalog.model(id)
    if (!e) return {}
    return {
      tasks: e.tasks, price: { input: e.pricePer1MInput, output: e.pricePer1MOutput }, quality: e.quality, safety: e.safety,
      latency: e.measured ? { p50Ms: e.measured.p50LatencyMs, ttftMs: e.measured.ttftMs, errorRate: e.measured.errorRate, samples: e.measured.samples } : null
    }
  }

  /** Every model in the registry, with how many connected workers serve it now. */
  private registryListing () {
    const live = new Map(this.workers.listing().map((m) => [m.id, m]))
    return this.catalog.allModels().map((e) => ({
      id: e.id, backend: live.get(e.id)?.backend ?? e.provider, contextLength: e.contextLength, workers: live.get(e.id)?.workers ?? 0, ...this.registryFields(e.id)
    })).sort((a, b) => a.id.localeCompare(b.id))
  }

  private registryWorkers () {
    const seen = new Set<string>()
    const out = this.catalog.allWorkers().map((e) => {
      seen.add(e.key)
      const w = this.workers.get(e.key)
      const live = w && !w.peer.isClosed
      return {
        ...e, connected: !!live, inflight: live ? w.inflight : 0, served: w?.served ?? 0, failures: w?.failures ?? 0,
        breaker: live ? (w.openUntil > Date.now() ? 'open' as const : w.openUntil !== 0 ? 'half-open' as const : 'closed' as const) : null
      }
    })
    return out
  }

  /** The models the router may choose among: served now, described by the registry and our own measurements. */
  private candidates (): ModelCandidate[] {
    return this.workers.listing().map((m) => {
      const e = this.catalog.model(m.id)
      return {
        id: m.id, provider: e?.provider ?? m.backend, tasks: e?.tasks ?? (/embed/i.test(m.id) ? ['embed'] : ['chat']),
        priceIn: e?.pricePer1MInput ?? 0, priceOut: e?.pricePer1MOutput ?? 0, quality: e?.quality ?? 0.5, safety: e?.safety ?? 0.5,
        ttftMs: this.ttftAvg.get(m.id) ?? e?.measured?.ttftMs ?? null, inflight: this.workers.inflightFor(m.id), workers: m.workers
      }
    })
  }

  /**
   * A worker announces itself. Mesh members and holders of the network's worker token are approved at
   * once; anyone else is recorded as pending and gets no traffic until an operator approves it
   * (`hyperinfer workers approve <key>`). A revoked worker is refused, token or not.
   */
  private async registerWorker (req: RequestOf<typeof GatewayProtocol.registerWorker>, ctx: HandlerContext<any>) {
    const member = this.isMeshMember(ctx.remoteKey)
    const token = this.opts.workerToken
    // compare digests: equal length whatever the input, so the comparison is constant-time and cannot throw
    const digest = (v: string) => crypto.createHash('sha256').update(v).digest()
    const networkToken = !!token && !!req.token && crypto.timingSafeEqual(digest(req.token), digest(token))
    const key = ctx.remoteKey
    const entry = this.catalog.worker(key)
    if (entry?.approval.state === 'revoked') throw MeshError.FORBIDDEN(`this worker was revoked by ${entry.approval.by}`)
    const joinLabel = !member && !networkToken && req.token ? await this.joinTokenLabel(req.token).catch(() => null) : null
    const tokenOk = networkToken || joinLabel !== null
    const approved = member || tokenOk || entry?.approval.state === 'approved'
    const models = req.models.map((m) => m.id)
    // strangers may not grow the shared registry without bound: a bounded queue of pending workers,
    // and their models enter the catalog only once they are approved
    if (!approved && !entry && this.catalog.allWorkers().filter((e) => e.approval.state === 'pending').length >= MAX_PENDING_WORKERS) {
      throw MeshError.FORBIDDEN(`${MAX_PENDING_WORKERS} workers are already waiting for approval; ask an operator for a join token`)
    }
    if (models.length > 256) throw MeshError.BAD_REQUEST('a worker may offer at most 256 models')
    const w = this.workers.upsert(ctx.peer, req.models, req.capacity ?? 64, req.label ?? null, approved)
    try {
      if (approved) await this.ensureModels(w)
      if (!entry || entry.models.join(',') !== models.join(',') || entry.capacity !== (req.capacity ?? 64)) {
        await this.catalog.write({ op: 'putWorker', input: { key, models, capacity: req.capacity ?? 64, label: req.label ?? '' } }, 'worker:' + key.slice(0, 16))
      }
      if (approved && this.catalog.worker(key)?.approval.state !== 'approved') {
        await this.catalog.write({ op: 'approveWorker', key }, member ? 'mesh-allow-list' : networkToken ? 'worker-token' : joinLabel !== null ? `join-token:${joinLabel}`.slice(0, 128) : 'registry')
      }
    } catch (err) {
      // the registry is the record, not the gate: a worker admitted by token still serves
      this.log.warn({ worker: key.slice(0, 16), err: (err as Error).message }, 'could not record the worker in the registry')
    }
    this.log.info({ worker: w.publicKey.slice(0, 16), models, approved }, approved ? 'worker registered' : 'worker registered, pending approval')
    return { accepted: true as const, gateway: this.publicKey, approval: approved ? 'approved' as const : 'pending' as const }
  }

  async infer (req: RequestOf<typeof GatewayProtocol.infer>, ctx: HandlerContext<TokenChunk>): Promise<InferResult> {
    const started = Date.now()
    const messages: ChatMessage[] = req.messages ?? [{ role: 'user', content: req.prompt ?? '' }]
    const chars = messages.reduce((n, m) => n + m.content.length, 0)
    const max = this.opts.maxPromptChars ?? 100_000
    if (chars > max) throw MeshError.PROMPT_TOO_LARGE(`prompt is ${chars} characters; the limit is ${max}`)
    if (chars === 0) throw MeshError.BAD_REQUEST('prompt is empty')

    const promptTokens = countPromptTokens(messages)
    const ceiling = req.maxTokens ?? this.opts.defaultMaxTokens ?? 1024
    const id = crypto.randomUUID()
    let chosen: { strategy: string, reason: string, score: number | null }
    let requested = req.model
    if (requested) chosen = { strategy: 'explicit', reason: 'the caller named the model', score: null }
    else if (req.route) {
      const r = route(this.candidates(), req.route)
      requested = r.ranked[0]!.id
      chosen = { strategy: r.strategy, reason: r.reason, score: r.ranked[0]!.score }
    } else chosen = { strategy: 'default', reason: this.opts.defaultModel ? 'the gateway\'s DEFAULT_MODEL' : 'the first model served', score: null }
    const { model } = await this.admit(req.apiKey, requested, {
      id, kind: 'chat', promptTokens, completionTokens: ceiling, trace: req.traceId ?? null, promptHash: sha256Hex(req.prompt ?? JSON.stringify(messages))
    })

    // the gateway holds the request to `ceiling` completion tokens whatever the backend does: it
    // stops the worker there, so the hold taken at admission is a true bound on the charge
    const stop = new AbortController()
    const onAbort = () => stop.abort()
    ctx.signal.addEventListener('abort', onAbort, { once: true })
    if (ctx.signal.aborted) stop.abort() // the caller left while we admitted: cancel before any work
    let delivered = 0
    let truncated = false
    let text = ''
    let firstTokenAt: number | null = null
    const out = await this.dispatch(model, stop.signal, (worker) => {
      const dispatched = Date.now()
      // an answer not streamed to the caller yet can start over on another worker
      if (!req.stream) { text = ''; delivered = 0; firstTokenAt = null }
      return worker.peer.stream(InferenceProtocol.processPrompt, {
        requestId: id, model, messages, maxTokens: req.maxTokens, temperature: req.temperature, ...(req.stop ? { stop: req.stop } : {})
      }, {
        signal: stop.signal,
        idleTimeout: this.opts.workerIdleTimeoutMs ?? 60_000,
        onChunk: (chunk) => {
          if (truncated || typeof chunk?.text !== 'string') return // a malformed frame is not a token
          // a backend that runs past the ceiling (or ignores maxTokens) is stopped there
          if (delivered >= ceiling) { truncated = true; stop.abort(); return }
          if (firstTokenAt === null) {
            firstTokenAt = Date.now()
            const ms = firstTokenAt - dispatched
            this.metrics.observeTtft(model, ms / 1000)
            const prev = this.ttftAvg.get(model)
            this.ttftAvg.set(model, prev === undefined ? ms : prev * 0.8 + ms * 0.2)
          }
          delivered++
          if (req.stream) ctx.emit({ text: chunk.text })
          else text += chunk.text
        }
      })
    // once a token reached a streaming caller, another worker would repeat it: fail instead of retrying
    }, () => !req.stream || firstTokenAt === null)
    ctx.signal.removeEventListener('abort', onAbort)

    const worker = out.worker?.publicKey ?? null
    const ttftMs = firstTokenAt === null ? null : firstTokenAt - started
    if (!out.ok && !truncated) {
      const err = out.err instanceof MeshError ? out.err : MeshError.INTERNAL()
      const cancelled = ctx.signal.aborted
      // a stream cut short is billed for what it delivered; a whole answer that failed delivered nothing
      const billed = req.stream ? delivered : 0
      this.metrics.observeInference(model, (Date.now() - started) / 1000)
      // the model's error rate in the registry counts what its workers got wrong, not the caller's cancel
      if (!cancelled && RETRYABLE.has(err.code)) this.catalog.recordMeasurement(model, { ttftMs: ttftMs ?? 0, latencyMs: Date.now() - started, ok: false })
      await this.settle(id, model, cancelled ? 'cancelled' : 'failed', worker, billed > 0 ? promptTokens : 0, billed, started, ttftMs, cancelled ? 'CANCELLED' : err.code, cancelled ? 'the caller cancelled the request' : err.message)
      throw err
    }
    // what a worker reports is checked like any input: a count is a non-negative integer or nothing
    const reported = out.ok && out.value && typeof out.value.usage === 'object' && out.value.usage !== null
      ? { promptTokens: count(out.value.usage.promptTokens), completionTokens: count(out.value.usage.completionTokens) }
      : null
    const usage = {
      promptTokens: reported?.promptTokens || promptTokens,
      completionTokens: Math.min(reported && !truncated ? Math.max(reported.completionTokens, delivered) : delivered, ceiling)
    }
    const cost = await this.settle(id, model, 'success', worker, usage.promptTokens, usage.completionTokens, started, ttftMs, null, null)
    this.catalog.recordMeasurement(model, { ttftMs: ttftMs ?? 0, latencyMs: Date.now() - started, ok: true })
    this.metrics.countTokens(model, usage.promptTokens, usage.completionTokens)
    this.metrics.observeInference(model, (Date.now() - started) / 1000)
    return {
      id, model, worker: worker!, text: req.stream ? '' : text, usage, costUsd: toUsd(cost),
      finishReason: truncated ? 'length' : out.ok && FINISH_REASONS.has(out.value?.finishReason) ? out.value.finishReason : 'stop', ttftMs, durationMs: Date.now() - started,
      routing: { ...chosen, attempts: out.attempts }
    }
  }

  async embed (req: RequestOf<typeof GatewayProtocol.embed>, ctx: HandlerContext<any>) {
    const started = Date.now()
    const input = typeof req.input === 'string' ? [req.input] : req.input
    const chars = input.reduce((n, t) => n + t.length, 0)
    const max = this.opts.maxPromptChars ?? 100_000
    if (chars > max) throw MeshError.PROMPT_TOO_LARGE(`input is ${chars} characters; the limit is ${max}`)
    const promptTokens = countPromptTokens(input.map((content) => ({ role: 'user' as const, content })))
    const id = crypto.randomUUID()
    await this.admit(req.apiKey, req.model, { id, kind: 'embed', promptTokens, completionTokens: 0, trace: req.traceId ?? null, promptHash: sha256Hex(JSON.stringify(input)) })
    const out = await this.dispatch(req.model, ctx.signal, (worker) =>
      worker.peer.call(InferenceProtocol.embed, { requestId: id, model: req.model, input }, { timeout: this.opts.workerIdleTimeoutMs ?? 60_000 }), () => true)
    if (!out.ok) {
      const err = out.err instanceof MeshError ? out.err : MeshError.INTERNAL()
      await this.settle(id, req.model, ctx.signal.aborted ? 'cancelled' : 'failed', out.worker?.publicKey ?? null, 0, 0, started, null, err.code, err.message)
      throw err
    }
    const tokensIn = count(out.value?.usage?.promptTokens) || promptTokens
    const cost = await this.settle(id, req.model, 'success', out.worker.publicKey, tokensIn, 0, started, null, null, null)
    this.metrics.countTokens(req.model, tokensIn, 0)
    this.metrics.observeInference(req.model, (Date.now() - started) / 1000)
    return { ...out.value, usage: { ...out.value.usage, promptTokens: tokensIn }, id, worker: out.worker.publicKey, costUsd: toUsd(cost) }
  }

  /**
   * Seed 000's task-level request: the caller names a task and preferences, the router picks the
   * model. Embedding tasks try embedding-named models first and move on from models that cannot embed.
   */
  async aiRequest (req: RequestOf<typeof GatewayProtocol.aiRequest>, ctx: HandlerContext<any>): Promise<AiResponse> {
    await this.keys.resolve(req.apiKey) // a bad key is refused before anything is routed
    const weights: Weights | undefined = req.preferences ? { latency: req.preferences.speed ?? 0, cost: req.preferences.cost ?? 0, quality: req.preferences.quality ?? 0 } : undefined
    const candidates = this.candidates()
    if (candidates.length === 0) throw MeshError.NO_WORKER('no inference worker is connected')
    // a task no served model is tagged with routes over all of them (the reason says so)
    const task = req.task.toLowerCase()
    const tagged = !/^embed(ding)?s?$/.test(task) && candidates.some((c) => c.tasks.includes(task))
    const routing = route(candidates, { strategy: 'hybrid', ...(weights ? { weights } : {}), ...(tagged ? { task } : {}) })

    if (/^embed(ding)?s?$/i.test(req.task)) {
      const input = typeof req.input === 'string' ? req.input : req.input.map((m) => m.content).join('\n')
      const order = [...routing.ranked].sort((a, b) => Number(/embed/i.test(b.id)) - Number(/embed/i.test(a.id)))
      let last: unknown = null
      for (const choice of order.slice(0, 3)) {
        try {
          const r = await this.embed({ apiKey: req.apiKey, model: choice.id, input }, ctx)
          const reason = choice.id === routing.ranked[0]!.id ? routing.reason : `${choice.id}: the first model that makes embeddings, in order of score`
          return { id: r.id, model: r.model, worker: r.worker, response: r.embeddings, usage: { tokens: r.usage.promptTokens, promptTokens: r.usage.promptTokens, completionTokens: 0, cost: r.costUsd }, routing: { ...routing, reason } }
        } catch (err) {
          last = err
          const code = (err as MeshError).code
          if (code !== 'BAD_REQUEST' && code !== 'BACKEND_ERROR') throw err
        }
      }
      throw last instanceof MeshError ? last : MeshError.NO_WORKER('no model could make embeddings')
    }

    const model = routing.ranked[0]!.id
    const r = await this.infer({
      apiKey: req.apiKey, model, stream: false,
      ...(typeof req.input === 'string' ? { prompt: req.input } : { messages: req.input }),
      ...(req.maxTokens !== undefined ? { maxTokens: req.maxTokens } : {})
    }, ctx)
    return {
      id: r.id, model: r.model, worker: r.worker, response: r.text,
      usage: { tokens: r.usage.promptTokens + r.usage.completionTokens, promptTokens: r.usage.promptTokens, completionTokens: r.usage.completionTokens, cost: r.costUsd },
      routing
    }
  }

  /**
   * The gate every request passes: authenticate, check scope, model and the key's model list, then
   * hold the request's worst case on every limit and on the credits (one database round trip, shared
   * by the requests that arrive together). Refusals are coded: RATE_LIMITED, QUOTA_EXCEEDED,
   * INSUFFICIENT_CREDITS, BUDGET_EXCEEDED.
   */
  private async admit (apiKey: string, requested: string | undefined, r: { id: string, kind: 'chat' | 'embed', promptTokens: number, completionTokens: number, trace: string | null, promptHash: string }):
    Promise<{ identity: KeyIdentity, model: string }> {
    const identity = await this.keys.resolve(apiKey)
    this.metrics.userActive(identity.userId)
    if (!identity.scopes.includes('inference')) throw MeshError.FORBIDDEN('this API key lacks the inference scope')
    const model = requested ?? this.defaultModel()
    if (identity.models && !identity.models.includes(model)) throw MeshError.FORBIDDEN(`this API key may not use '${model}' (allowed: ${identity.models.join(', ')})`)
    if (!this.workers.serves(model)) throw MeshError.UNKNOWN_MODEL(model, this.workers.modelIds())
    if (!this.accountingOn) return { identity, model }

    const holdIn = promptTokenHold(r.promptTokens)
    const credit = this.pricing.cost(model, holdIn, r.completionTokens)
    const now = new Date()
    const counters = countersFor({ keyId: identity.keyId, userId: identity.userId, keyTier: identity.tier, userTier: identity.userTier, budgetNusd: identity.budgetNusd },
      this.tiers, { tokens: holdIn + r.completionTokens, nusd: credit }, now)
    const result = await this.accounting.admit({
      id: r.id, user: identity.userId, key: identity.keyId, model, kind: r.kind, promptHash: r.promptHash, trace: r.trace ?? r.id,
      gateway: this.publicKey, credit, at: now.toISOString(), counters
    })
    if (!result.ok) throw this.refusal(result)
    return { identity, model }
  }

  private refusal (r: Exclude<AdmitResult, { ok: true }>): MeshError {
    if (r.code === 'BAD_REQUEST') return MeshError.BAD_REQUEST('this request carries a value that cannot be recorded')
    const retryAfterSeconds = r.expires ? Math.max(1, Math.ceil((Date.parse(r.expires) - Date.now()) / 1000)) : null
    if (r.code === 'RATE_LIMITED') {
      this.metrics.rateLimited()
      return MeshError.RATE_LIMITED(`rate limit of ${r.cap} ${describeCounter(r.counter)} reached; retry in ${retryAfterSeconds} s`, retryAfterSeconds ?? 60, { limit: r.cap })
    }
    if (r.code === 'QUOTA_EXCEEDED') {
      this.metrics.rateLimited()
      return MeshError.LIMIT('QUOTA_EXCEEDED', `this request could use more than the ${r.cap - r.used} ${describeCounter(r.counter)} left (of ${r.cap}); lower maxTokens or retry in ${retryAfterSeconds} s`,
        { limit: r.cap, used: r.used, retryAfterSeconds })
    }
    if (r.code === 'BUDGET_EXCEEDED') {
      return MeshError.LIMIT('BUDGET_EXCEEDED', `this key's budget of $${toUsd(r.cap)} cannot cover this request's worst case; $${toUsd(r.cap - r.used)} left`, { budgetUsd: toUsd(r.cap), leftUsd: toUsd(r.cap - r.used) })
    }
    return MeshError.LIMIT('INSUFFICIENT_CREDITS', `your available credits ($${toUsd(r.cap - r.used)}) cannot cover this request's worst case ($${toUsd(r.need ?? 0)}); lower maxTokens or add credits`,
      { availableUsd: toUsd(r.cap - r.used), neededUsd: toUsd(r.need ?? 0) })
  }

  /** Record the end of a request and turn its hold into the real charge; resolves when committed. Returns the cost, nano-USD. */
  private async settle (id: string, model: string, status: 'success' | 'failed' | 'cancelled', worker: string | null, tokensIn: number, tokensOut: number,
    started: number, ttftMs: number | null, errorCode: string | null, errorMessage: string | null): Promise<number> {
    const cost = this.pricing.cost(model, tokensIn, tokensOut)
    if (!this.accountingOn) return cost
    const finishedAt = new Date()
    const done = this.accounting.settle({ id, status, worker, tokensIn, tokensOut, cost, ttftMs, durationMs: finishedAt.getTime() - started, errorCode, errorMessage, finishedAt: finishedAt.toISOString() })
    // the answer waits for the record; a database outage delays it, and past 15 s the answer goes out
    // while the settlement keeps retrying (the sweeper cannot fail it: it is younger than stuckAfterMs)
    let timer: NodeJS.Timeout | undefined
    await Promise.race([done, new Promise((resolve) => { timer = setTimeout(resolve, 15_000) })])
    clearTimeout(timer)
    return cost
  }

  /**
   * Run `attempt` on the least-loaded worker that serves `model`. If it fails with a retryable code
   * while `mayRetry()` holds, the next worker gets the request; each worker is tried at most once.
   */
  private async dispatch<T> (model: string, signal: AbortSignal, attempt: (w: WorkerConn) => Promise<T>, mayRetry: () => boolean):
    Promise<{ ok: true, value: T, worker: WorkerConn, attempts: number } | { ok: false, err: unknown, worker: WorkerConn | null, attempts: number }> {
    const tried = new Set<string>()
    let err: unknown = MeshError.NO_WORKER(`no worker could serve '${model}'`)
    let last: WorkerConn | null = null
    for (let i = 0; i < (this.opts.maxAttempts ?? 3); i++) {
      const worker = this.workers.pick(model, tried)
      if (!worker) break
      tried.add(worker.publicKey)
      last = worker
      worker.inflight++
      let reported = false
      try {
        const value = await attempt(worker)
        worker.served++
        this.workers.report(worker, true)
        reported = true
        return { ok: true, value, worker, attempts: i + 1 }
      } catch (e) {
        err = e
        const code = (e as MeshError).code
        // the breaker counts the worker's faults, not the caller's (cancel, bad input, limits)
        if (!signal.aborted && RETRYABLE.has(code)) { this.workers.report(worker, false); reported = true }
        if (signal.aborted || !RETRYABLE.has(code) || !mayRetry()) break
        this.log.warn({ worker: worker.publicKey.slice(0, 16), code, attempt: i }, 'worker failed before answering; retrying elsewhere')
      } finally {
        worker.inflight--
        // a half-open trial that ended without a verdict (cancelled, caller's error) frees the slot
        if (!reported) worker.trial = false
      }
    }
    return { ok: false, err, worker: last, attempts: tried.size }
  }

  private defaultModel (): string {
    const preferred = this.opts.defaultModel
    if (preferred) return preferred
    const ids = this.workers.modelIds()
    if (ids.length === 0) throw MeshError.NO_WORKER('no inference worker is connected')
    return ids[0]!
  }

  /** The account's own limits (all keys together) and credits, for a session: what the dashboard shows. */
  async accountQuota (token: string): Promise<{ tier: string, limits: QuotaLimit[], credits: Credits }> {
    const { user } = await this.auth.call(AuthProtocol.whoami, { token }, 10_000)
    const specs = countersFor({ keyId: '-', userId: user.id, keyTier: user.tier, userTier: user.tier, budgetNusd: null }, this.tiers, { tokens: 0, nusd: 0 })
      .filter((c) => c.name.split(':')[1] === 'u')
    const { limits, credits } = await this.describeLimits(specs, user.id)
    return { tier: user.tier, limits, credits }
  }

  private async describeLimits (specs: CounterSpec[], userId: string): Promise<{ limits: QuotaLimit[], credits: Credits }> {
    const [state, credits] = await Promise.all([this.accounting.counters(specs.map((c) => c.name)), this.accounting.credits(userId)])
    const limits = specs.map((c) => {
      const s = state.get(c.name)
      const used = s ? s.used + s.held : 0
      const money = c.unit === 'nusd'
      return {
        name: c.name.split(':').slice(0, 2).join(':') + (c.expires ? ':' + c.name.split(':')[3]!.slice(0, 1) : ''),
        description: describeCounter(c.name),
        unit: money ? 'usd' as const : c.unit as 'requests' | 'tokens',
        cap: money ? toUsd(c.cap) : c.cap,
        used: money ? toUsd(used) : used,
        remaining: money ? toUsd(Math.max(0, c.cap - used)) : Math.max(0, c.cap - used),
        resetsAt: c.expires
      }
    })
    return {
      limits,
      credits: { balanceUsd: toUsd(credits?.balance ?? 0), reservedUsd: toUsd(credits?.held ?? 0), availableUsd: toUsd((credits?.balance ?? 0) - (credits?.held ?? 0)) }
    }
  }

  async quota (apiKey: string): Promise<Quota> {
    const identity = await this.keys.resolve(apiKey)
    const specs = countersFor({ keyId: identity.keyId, userId: identity.userId, keyTier: identity.tier, userTier: identity.userTier, budgetNusd: identity.budgetNusd },
      this.tiers, { tokens: 0, nusd: 0 })
    const { limits, credits } = await this.describeLimits(specs, identity.userId)
    const key = limits[0]!
    return {
      tier: identity.tier, limit: key.cap, used: key.used, remaining: key.remaining, windowSeconds: 3600, resetsAt: key.resetsAt,
      limits,
      credits,
      models: identity.models
    }
  }

  /**
   * getServiceHealth is public: strangers calling it in a loop must not become database load. One
   * probe at a time, its answer reused for a second.
   */
  private databaseOk (): Promise<boolean> {
    const now = Date.now()
    if (!this.dbProbe || now - this.dbProbe.at > 1000) {
      this.dbProbe = { at: now, ok: this.pool.query('SELECT 1').then(() => true, () => false) }
    }
    return this.dbProbe.ok
  }

  async health (): Promise<GatewayHealth> {
    const dbOk = await this.databaseOk()
    const authUp = this.auth.connected
    return {
      status: authUp && dbOk && this.workers.size > 0 ? 'ok' : 'degraded',
      publicKey: this.publicKey,
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      auth: authUp ? 'connected' : 'disconnected',
      database: dbOk ? 'ok' : 'error',
      workers: this.workers.summaries(),
      models: this.workers.modelIds(),
      inflight: this.workers.inflight()
    }
  }
}
