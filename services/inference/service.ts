import { createHash } from 'node:crypto'
import { MeshService, type MeshServiceOptions } from '../../shared/mesh/service.ts'
import { handlers, type HandlerContext, type HandlerTable } from '../../shared/mesh/peer.ts'
import type { MeshClient } from '../../shared/mesh/client.ts'
import { abortSignalOf } from '../../shared/mesh/cancel.ts'
import { modelName } from '../../shared/protocol/common.ts'
import { InferenceProtocol, type EmbedResult, type ModelInfo, type ModelStatus, type PromptResult, type TokenChunk } from '../../shared/protocol/inference.ts'
import { lookupTopic, networkTopic } from '../../shared/mesh/discovery.ts'
import { GatewayProtocol } from '../../shared/protocol/gateway.ts'
import type { RequestOf } from '../../shared/mesh/method.ts'
import { MeshError } from '../../shared/errors.ts'
import type { Backend } from './backends/types.ts'
import { relayGeneration } from './generation.ts'
import { countBackendError, trackWorkerLoad } from './metrics.ts'
import type { Approval, WorkerStatus } from './status.ts'
import { GatewayTrust, guardHandlers } from './gateway-trust.ts'
import { workerJoinProof } from '../../shared/worker-proof.ts'
import { chargeFor } from '../../shared/receipt.ts'
import { ReceiptSigner } from './receipts.ts'

// An inference worker: one or more backends behind the adapter interface. It dials the gateways it is
// given and serves them over that same channel, so a worker behind NAT needs no open port; mesh
// members may also call it directly on its own key. Gateways found by the network key are served
// only once the registry vouches for them (./gateway-trust.ts); a token is never sent, only proven.

export interface InferenceServiceOptions extends Omit<MeshServiceOptions, 'name'> {
  backends: Backend[]
  /** hex public keys of the gateways to join */
  gateways: string[]
  /** the network key: find and join every gateway announced on its topic */
  network?: string
  /** how often the network topic is looked up again for new gateways */
  discoverEveryMs?: number
  /** the network's worker token or a join token, proven (never sent) to gateways that do not know this worker's key */
  workerToken?: string
  capacity?: number
  label?: string
  modelRefreshMs?: number
  /** how often load (in flight, queue, draining) goes to each gateway */
  heartbeatMs?: number
  /** told each change of this worker's state (a supervising process: ./status.ts) */
  onStatus?: (status: WorkerStatus) => void
}

interface ModelStats { inflight: number, served: number, errors: number }

export class InferenceService extends MeshService {
  private readonly backends: Backend[]
  private readonly opts: InferenceServiceOptions
  private catalog = new Map<string, { info: ModelInfo, backend: Backend }>()
  private readonly stats = new Map<string, ModelStats>()
  private readonly gatewayClients = new Map<string, MeshClient>()
  private readonly trust: GatewayTrust
  private refreshTimer: NodeJS.Timeout | null = null
  private heartbeatTimer: NodeJS.Timeout | null = null
  private draining = false
  private readonly receipts = new ReceiptSigner(this.keyPair.secretKey)

  constructor (opts: InferenceServiceOptions) {
    super({ ...opts, name: 'inference' })
    this.opts = opts
    this.backends = opts.backends
    this.trust = new GatewayTrust({ network: opts.network, explicit: opts.gateways, log: this.log })
    // worker gauges read the live per-model stats at scrape time
    trackWorkerLoad(this.metrics, () => ({
      capacity: opts.capacity ?? 64,
      inflight: new Map([...this.stats].map(([model, s]) => [model, s.inflight]))
    }))
  }

  get models (): ModelInfo[] { return [...this.catalog.values()].map((m) => m.info) }

  protected handlers (): HandlerTable {
    return handlers()
      .on(InferenceProtocol.processPrompt, (req, ctx) => this.processPrompt(req, ctx))
      .on(InferenceProtocol.embed, (req, ctx) => this.embed(req, abortSignalOf(ctx.signal)))
      .on(InferenceProtocol.listAvailableModels, () => ({ models: this.models }))
      .on(InferenceProtocol.getModelStatus, (req) => this.getModelStatus(req.model))
      .table
  }

  private readonly joined = new Set<string>()
  private discoverTimer: NodeJS.Timeout | null = null

  protected async onOpen (): Promise<void> {
    await this.refreshModels()
    await this.trust.open()
    this.trust.onDropped((key) => this.leaveGateway(key))
    for (const key of this.opts.gateways) this.joinGateway(key)
    if (this.opts.network) {
      const topic = networkTopic(this.opts.network)
      const discover = async () => {
        const keys = await lookupTopic(this.dhtNode, topic).catch((err) => { this.log.warn({ err: (err as Error).message }, 'network lookup failed'); return [] })
        for (const key of keys) if (key !== this.publicKey) this.joinGateway(key)
        // look again soon while nothing is found, then now and then for new gateways
        if (!this.draining) this.discoverTimer = setTimeout(() => { void discover() }, this.joined.size === 0 ? 1000 : this.opts.discoverEveryMs ?? 30_000)
      }
      await discover()
    }
    this.refreshTimer = setInterval(() => { void this.refreshAndAnnounce() }, this.opts.modelRefreshMs ?? 30_000)
    this.refreshTimer.unref()
    // liveness and load go to the gateways directly, never through the registry
    this.heartbeatTimer = setInterval(() => { void this.heartbeat() }, this.opts.heartbeatMs ?? 2000)
    this.heartbeatTimer.unref()
    this.report({ type: 'ready', publicKey: this.publicKey, models: this.models.map((m) => m.id) })
  }

  private joinGateway (key: string): void {
    key = key.toLowerCase()
    if (this.joined.has(key)) return
    this.joined.add(key)
    this.log.info({ gateway: key }, 'joining gateway')
    if (this.trust.trusts(key)) this.report({ type: 'joining', gateway: key })
    let approval: Approval = 'approved'
    let up = false
    const client = this.connectTo(key, {
      name: `gateway:${key.slice(0, 8)}`,
      // a gateway that restarts gets its workers back within a second of being reachable
      maxBackoff: 1000,
      // a dialled peer is served only while it is a gateway this worker trusts
      handlers: guardHandlers(this.handlers(), (k) => this.trust.trusts(k) || this.isMeshMember(k)),
      dialled: 'gateway',
      // every (re)connect checks the gateway, then announces what this worker serves
      onOpen: async (peer) => {
        const vouched = this.trust.trusts(key)
        try {
          await this.trust.check(key, peer)
        } catch (err) {
          this.log.warn({ gateway: key.slice(0, 16) }, 'not a gateway of this network: nothing sent, nothing served')
          this.leaveGateway(key)
          throw err
        }
        if (!vouched) this.report({ type: 'joining', gateway: key })
        await peer.call(GatewayProtocol.registerWorker, this.registration(key), { timeout: 10_000 }).then((r) => {
          approval = r.approval
          const log = { peer: `gateway:${key.slice(0, 8)}`, approval: r.approval }
          if (r.approval === 'pending') this.log.warn(log, 'registered, pending approval: no traffic until an operator approves this worker')
          else this.log.info(log, 'registration answered')
        }, (err: unknown) => {
          const code = err instanceof Error && 'code' in err && typeof err.code === 'string' ? err.code : 'UNKNOWN'
          this.report({ type: 'registration-failed', gateway: key, code })
          throw err
        })
      }
    })
    client.on('open', () => { up = true; this.report({ type: 'registered', gateway: key, approval }) })
    client.on('close', () => { if (up) this.report({ type: 'gateway-lost', gateway: key }); up = false })
    this.gatewayClients.set(key, client)
  }

  /** Stop serving a gateway and close its connection; discovery may dial it again later. */
  private leaveGateway (key: string): void {
    const client = this.gatewayClients.get(key)
    this.gatewayClients.delete(key)
    this.joined.delete(key)
    this.trust.forget(key)
    // closing only destroys the connection; it has nothing to report
    void client?.close()
  }

  private report (status: WorkerStatus): void {
    this.opts.onStatus?.(status)
  }

  private async heartbeat (): Promise<void> {
    const capacity = this.opts.capacity ?? 64
    const inflight = this.inflight()
    const beat = { inflight, queue: Math.max(0, inflight - capacity), capacity, draining: this.draining }
    // a missed beat needs no handling: the next one follows, and a gateway that hears none skips this worker
    await Promise.all([...this.gatewayClients.values()].filter((c) => c.connected).map((c) => c.call(GatewayProtocol.workerHeartbeat, beat, 2000).catch(() => {})))
  }

  protected async onClose (): Promise<void> {
    this.draining = true
    this.report({ type: 'draining' })
    if (this.refreshTimer) clearInterval(this.refreshTimer)
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer)
    if (this.discoverTimer) clearTimeout(this.discoverTimer)
    // tell the gateways first, so they route new requests elsewhere instead of trying this worker
    await this.heartbeat()
    // drain: let in-flight streams finish (bounded), take no new ones
    const deadline = Date.now() + 5000
    const answering = this.inflight() > 0
    while (this.inflight() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
    // closing drops what is not yet on the wire: the last answers' responses get 250 ms to leave
    if (answering) await new Promise((r) => setTimeout(r, 250))
    for (const b of this.backends) await b.close?.().catch((err: Error) => this.log.debug({ backend: b.name, err: err.message }, 'backend close failed; nothing is served from it any more'))
    await this.trust.close()
  }

  private inflight (): number {
    let n = 0
    for (const s of this.stats.values()) n += s.inflight
    return n
  }

  /** What this worker tells the gateway `gateway`: a token proof made for that gateway alone. */
  private registration (gateway: string) {
    const token = this.opts.workerToken
    return {
      ...(token ? { proof: workerJoinProof(token, this.publicKey, gateway) } : {}),
      models: this.models.map((m) => ({ id: m.id, backend: m.backend, ...(m.contextLength ? { contextLength: m.contextLength } : {}) })),
      capacity: this.opts.capacity,
      label: this.opts.label
    }
  }

  /** Ask every backend for its models; a backend that is down simply contributes none for now. */
  async refreshModels (): Promise<boolean> {
    const next = new Map<string, { info: ModelInfo, backend: Backend }>()
    for (const backend of this.backends) {
      const ac = new AbortController()
      const timer = setTimeout(() => ac.abort(), 3000)
      try {
        for (const info of await backend.listModels(ac.signal)) {
          // a name the registry would refuse cannot be announced to a gateway: serve the others
          if (!modelName.safeParse(info.id).success) { this.log.warn({ backend: backend.name, model: info.id.slice(0, 200) }, 'model name not accepted by the mesh; not served'); continue }
          if (!next.has(info.id)) next.set(info.id, { info, backend })
        }
      } catch (err) {
        this.log.warn({ backend: backend.name, code: (err as MeshError).code }, 'backend did not list its models')
      } finally {
        clearTimeout(timer)
      }
    }
    const changed = [...next.keys()].sort().join('\n') !== [...this.catalog.keys()].sort().join('\n')
    this.catalog = next
    return changed
  }

  private async refreshAndAnnounce (): Promise<void> {
    if (!(await this.refreshModels())) return
    this.log.info({ models: [...this.catalog.keys()] }, 'model catalog changed')
    this.report({ type: 'models', models: [...this.catalog.keys()] })
    for (const [key, client] of this.gatewayClients) {
      if (client.connected) {
        await client.call(GatewayProtocol.registerWorker, this.registration(key))
          .catch((err: Error) => this.log.debug({ peer: client.name, err: err.message }, 'catalog announce failed; the next reconnect announces it again'))
      }
    }
  }

  private statsFor (model: string): ModelStats {
    let s = this.stats.get(model)
    if (!s) { s = { inflight: 0, served: 0, errors: 0 }; this.stats.set(model, s) }
    return s
  }

  async processPrompt (req: RequestOf<typeof InferenceProtocol.processPrompt>, ctx: HandlerContext<TokenChunk>): Promise<PromptResult> {
    if (this.draining) throw MeshError.SHUTTING_DOWN()
    const entry = this.catalog.get(req.model)
    if (!entry) throw MeshError.UNKNOWN_MODEL(req.model, [...this.catalog.keys()])
    const stats = this.statsFor(req.model)
    stats.inflight++
    const started = Date.now()
    let ttftMs: number | null = null
    // our own signal as well as the caller's: a stop sequence ends the backend request early
    const upstream = new AbortController()
    const onAbort = () => upstream.abort()
    ctx.signal.addEventListener('abort', onAbort, { once: true })
    ctx.span?.set('hyperinfer.backend', entry.backend.name)
    // the receipt's hash covers every frame's text as sent
    const output = createHash('sha256')
    try {
      const { requestId: _, price: _price, ...request } = req
      const { usage, completionTokens, finishReason } = await relayGeneration(entry.backend.chat(request, upstream.signal), {
        stop: req.stop,
        parallelToolCalls: req.parallelToolCalls,
        cut: () => upstream.abort(),
        emit: (frame) => {
          if (ttftMs === null) { ttftMs = Date.now() - started; ctx.span?.record('first_token', started) }
          output.update(frame.text)
          ctx.emit(frame)
        }
      })
      if (ctx.signal.aborted) throw MeshError.CANCELLED()
      stats.served++
      const promptTokens = usage?.promptTokens ?? estimateTokens(req.messages.map((m) => m.content).join(' '))
      const outTokens = usage?.completionTokens ?? completionTokens
      this.metrics.countTokens(req.model, promptTokens, outTokens)
      if (ttftMs !== null) this.metrics.observeTtft(req.model, ttftMs / 1000)
      const price = req.price ?? { input: 0, output: 0 }
      const receipt = await this.receipts.sign({
        requestId: req.requestId, model: req.model, tokensIn: promptTokens, tokensOut: outTokens, outputSha256: output.digest('hex'),
        gatewayKey: ctx.remoteKey, workerKey: this.publicKey, time: new Date().toISOString(), priceNusdPerToken: price, chargeNusd: chargeFor(price, promptTokens, outTokens)
      })
      return { model: req.model, backend: entry.backend.name, usage: { promptTokens, completionTokens: outTokens }, finishReason, ttftMs, receipt }
    } catch (err) {
      stats.errors++
      if (ctx.signal.aborted) throw MeshError.CANCELLED()
      const failure = err instanceof MeshError ? err : MeshError.BACKEND_ERROR(`${entry.backend.name} failed`)
      countBackendError(this.metrics, entry.backend.name, failure.code)
      throw failure
    } finally {
      ctx.signal.removeEventListener('abort', onAbort)
      stats.inflight--
      this.metrics.observeInference(req.model, (Date.now() - started) / 1000)
    }
  }

  async embed (req: RequestOf<typeof InferenceProtocol.embed>, signal: AbortSignal): Promise<EmbedResult> {
    if (this.draining) throw MeshError.SHUTTING_DOWN()
    const entry = this.catalog.get(req.model)
    if (!entry) throw MeshError.UNKNOWN_MODEL(req.model, [...this.catalog.keys()])
    const embed = entry.backend.embed?.bind(entry.backend)
    if (!embed) throw MeshError.BAD_REQUEST(`model '${req.model}' (${entry.backend.name}) does not make embeddings`)
    const stats = this.statsFor(req.model)
    stats.inflight++
    const started = Date.now()
    try {
      const r = await embed({ model: req.model, input: req.input, ...(req.dimensions !== undefined ? { dimensions: req.dimensions } : {}) }, signal)
      if (r.embeddings.length !== req.input.length) throw MeshError.BACKEND_ERROR(`${entry.backend.name} returned ${r.embeddings.length} embeddings for ${req.input.length} inputs`)
      stats.served++
      const promptTokens = r.promptTokens || req.input.reduce((n, i) => n + (typeof i === 'string' ? estimateTokens(i) : i.length), 0)
      this.metrics.countTokens(req.model, promptTokens, 0)
      const embeddings = req.dimensions === undefined ? r.embeddings : r.embeddings.map((v) => shorten(v, req.dimensions!))
      return { model: req.model, embeddings, usage: { promptTokens } }
    } catch (err) {
      stats.errors++
      const failure = err instanceof MeshError ? err : MeshError.BACKEND_ERROR(`${entry.backend.name} failed`)
      if (!signal.aborted) countBackendError(this.metrics, entry.backend.name, failure.code)
      throw failure
    } finally {
      stats.inflight--
      this.metrics.observeInference(req.model, (Date.now() - started) / 1000)
    }
  }

  getModelStatus (model: string): ModelStatus {
    const entry = this.catalog.get(model)
    const s = this.stats.get(model) ?? { inflight: 0, served: 0, errors: 0 }
    return { model, available: !!entry, backend: entry?.backend.name ?? null, ...s }
  }
}

/**
 * A vector cut to its first `dimensions` and scaled back to unit length: what OpenAI does for
 * `dimensions`, for a backend that returned the full length.
 */
export function shorten (v: number[], dimensions: number): number[] {
  if (v.length <= dimensions) return v
  const cut = v.slice(0, dimensions)
  const norm = Math.hypot(...cut) || 1
  return cut.map((x) => x / norm)
}

/** Rough count for backends that report no usage: ~4 characters a token. */
export function estimateTokens (text: string): number {
  return Math.max(1, Math.ceil(text.length / 4))
}
