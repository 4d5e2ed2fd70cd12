import path from 'node:path'
import type { AddressInfo } from 'node:net'
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import { allowedHosts, hostAllowed, hostRefusal } from '../../shared/host-allow.ts'
import { MeshService, type MeshServiceOptions } from '../../shared/mesh/service.ts'
import type { MeshClient } from '../../shared/mesh/client.ts'
import { GatewayGroup, type GatewayCaller } from '../../shared/mesh/failover.ts'
import type { HandlerTable } from '../../shared/mesh/peer.ts'
import { parseRequest } from '../../shared/mesh/method.ts'
import { cancelOnHangUp } from './hang-up.ts'
import { MeshError, type ErrorCode } from '../../shared/errors.ts'
import { AuthProtocol } from '../../shared/protocol/auth.ts'
import { GatewayProtocol, type RegistryListing } from '../../shared/protocol/gateway.ts'
import { RegistryReplica, registryListing, replicateOverClient } from '../../shared/registry/index.ts'
import { landingPage } from './landing.ts'
import { drain, DRAIN_LIMIT, DRAIN_MS } from './drain-body.ts'
import { registerOpenAIRoutes } from './openai.ts'
import { anthropicErrorBody } from './anthropic/messages.ts'
import { registerCors } from './cors.ts'
import { registerSafetyRoutes } from './safety-routes.ts'
import { registerCacheRoutes } from './cache-routes.ts'
import { errorTypeOf, httpStatusOf } from './http-errors.ts'
import { AccessLog } from './access-log.ts'
import { registerDashboardRoutes } from './dashboard/routes.ts'
import { RelayedAuth } from './relayed-auth.ts'
import { registerHttpTracing, traceparentOf } from './tracing.ts'
import { requestIdOf } from '../../shared/tracing/context.ts'

export { httpStatusOf }

// The HTTP edge of the mesh for browsers and plain HTTP clients. No business logic lives here: every
// route checks a body against the protocol's own schema (the check auth or the gateway would make,
// with the same coded error), calls auth or the gateway over RPC, and maps the coded error that comes
// back to an HTTP status and an OpenAI-style error body.

export interface WebServiceOptions extends Omit<MeshServiceOptions, 'name' | 'privateOnly'> {
  /** hex public key of the auth service */
  authKey: string
  /** hex public key of the gateway */
  gatewayKey: string
  /** more gateways of the same mesh: a request that fails before its first token goes to the next one */
  moreGateways?: string[]
  port: number
  host?: string
  /** timeout of each RPC call, including waiting for the connection, ms */
  rpcTimeoutMs?: number
  /** state dir: the registry replica lives under registry/web */
  home?: string
  /** origins browsers may call /v1 from (CORS_ORIGINS); empty: no cross-origin access */
  corsOrigins?: readonly string[]
  /** proxies whose X-Forwarded-For names the client (WEB_TRUSTED_PROXIES); none: the socket's peer is the client */
  trustedProxies?: readonly string[]
}

export const BODY_LIMIT = 1024 * 1024
const INFER_IDLE_TIMEOUT_MS = 60_000

/** codes the OpenAI API words in lower case, which OpenAI clients may test for */
const OPENAI_WORDS = new Set<ErrorCode>(['INVALID_API_KEY', 'DATABASE_UNAVAILABLE', 'IDEMPOTENCY_IN_PROGRESS', 'IDEMPOTENCY_KEY_MISMATCH'])

type Body = Record<string, unknown>

export class WebService extends MeshService {
  private readonly authKey: string
  private readonly gatewayKey: string
  private readonly httpPort: number
  private readonly httpHost: string
  private readonly rpcTimeoutMs: number
  private auth: MeshClient | null = null
  private readonly relayed = new RelayedAuth(() => this.client('auth'))
  private replica: RegistryReplica | null = null
  private closingRegistry = false
  private readonly home: string
  private readonly corsOrigins: readonly string[]
  private readonly moreGateways: string[]
  private readonly trustedProxies: string[]
  private gateway: GatewayGroup | null = null
  private app: FastifyInstance | null = null
  private readonly access: AccessLog

  constructor (opts: WebServiceOptions) {
    super({ ...opts, name: 'web', privateOnly: true })
    this.authKey = opts.authKey.toLowerCase()
    this.gatewayKey = opts.gatewayKey.toLowerCase()
    this.moreGateways = (opts.moreGateways ?? []).map((k) => k.toLowerCase()).filter((k) => k !== this.gatewayKey)
    this.httpPort = opts.port
    this.httpHost = opts.host ?? '127.0.0.1'
    this.rpcTimeoutMs = opts.rpcTimeoutMs ?? 10_000
    this.home = opts.home ?? '.hyperinfer'
    this.trustedProxies = [...opts.trustedProxies ?? []]
    this.corsOrigins = opts.corsOrigins ?? []
    this.access = new AccessLog(this.log)
  }

  get url (): string {
    const addr = this.app?.server.address() as AddressInfo | null | undefined
    if (!addr) throw new Error('web is not listening')
    return `http://${this.httpHost.includes(':') ? `[${this.httpHost}]` : this.httpHost}:${addr.port}`
  }

  protected handlers (): HandlerTable { return new Map() }

  protected async onOpen (): Promise<void> {
    this.auth = this.connectTo(this.authKey, { name: 'auth', defaultTimeout: this.rpcTimeoutMs })
    this.gateway = new GatewayGroup([this.gatewayKey, ...this.moreGateways].map((key, i) =>
      this.connectTo(key, { name: i === 0 ? 'gateway' : `gateway ${key.slice(0, 8)}…`, defaultTimeout: this.rpcTimeoutMs })))
    void this.followRegistry()
    const app = this.buildApp()
    await app.listen({ port: this.httpPort, host: this.httpHost })
    this.app = app
  }

  protected async onClose (): Promise<void> {
    this.closingRegistry = true
    const app = this.app
    this.app = null
    if (app) await app.close()
    this.access.flush()
    await this.replica?.close().catch((err) => this.log.debug({ err: (err as Error).message }, 'registry replica close failed; the service is closing anyway'))
  }

  /**
   * Keep a read-only replica of the model registry, replicated over the connection to the gateway
   * (the gateway serves it to mesh members), so the catalog pages read it locally and follow changes.
   */
  private async followRegistry (): Promise<void> {
    while (!this.closingRegistry) {
      try {
        const { key } = await this.client('gateway').call(GatewayProtocol.registry, {}, 5000)
        if (!key) throw MeshError.FORBIDDEN('the gateway does not count this service as a mesh member')
        const replica = new RegistryReplica({ key, storage: path.join(this.home, 'registry', 'web'), log: this.log })
        await replica.open()
        if (this.closingRegistry) { await replica.close(); return }
        replicateOverClient(replica, this.gateway!.clients[0]!)
        this.replica = replica
        this.log.info({ registry: key.slice(0, 16) }, 'following the model registry')
        return
      } catch (err) {
        this.log.debug({ err: (err as Error).message }, 'registry replica not open yet; retrying')
        await new Promise((resolve) => setTimeout(resolve, 1000))
      }
    }
  }

  /** The registry's models: from the local replica once it is replicating, else from the gateway. */
  async registryListing (): Promise<RegistryListing> {
    const r = this.replica
    if (r?.opened && r.peerCount > 0) {
      return { key: r.key, writable: false, models: registryListing(await r.listModels()) }
    }
    return this.client('gateway').call(GatewayProtocol.registry, {})
  }

  private client (which: 'auth'): MeshClient
  private client (which: 'gateway'): GatewayCaller
  private client (which: 'auth' | 'gateway'): MeshClient | GatewayCaller {
    const c = which === 'auth' ? this.auth : this.gateway
    if (!c) throw MeshError.UNAVAILABLE(`${which} is not connected`)
    return c
  }

  private buildApp (): FastifyInstance {
    const app = Fastify({
      logger: false,
      bodyLimit: BODY_LIMIT,
      // req.ip: the socket's peer, or the client a trusted proxy names in X-Forwarded-For
      trustProxy: this.trustedProxies.length > 0 ? this.trustedProxies : false,
      genReqId: (req) => requestIdOf(req.headers),
      frameworkErrors: (err, req, reply) => { this.sendError(err, req, reply) }
    })

    const hosts = allowedHosts(this.httpHost)
    // the verdict per Host header value, remembered for the few values real clients send (bounded:
    // a stranger chooses the header)
    const verdicts = new Map<string, boolean>()
    const hostOk = (host: string | undefined): boolean => {
      if (host === undefined) return hostAllowed(host, hosts)
      let ok = verdicts.get(host)
      if (ok === undefined) {
        ok = hostAllowed(host, hosts)
        if (verdicts.size < 64) verdicts.set(host, ok)
      }
      return ok
    }
    // callback hooks, not async ones: every request passes them, and the common case finishes at once
    app.addHook('onRequest', (req, reply, done) => {
      reply.header('x-request-id', req.id)
      reply.header('x-content-type-options', 'nosniff')
      if (!hostOk(req.headers.host)) return done(new MeshError('HOST_NOT_ALLOWED', hostRefusal(req.headers.host)))
      // a body announced over the limit is read and dropped (up to a bound, for a few seconds) before
      // the 413, so the client finishes writing and sees the answer instead of a reset connection
      const announced = Number(req.headers['content-length'])
      if (!(announced > BODY_LIMIT)) return done()
      reply.header('connection', 'close')
      const refuse = () => done(new MeshError('PAYLOAD_TOO_LARGE', `request body exceeds ${BODY_LIMIT} bytes`))
      if (announced <= DRAIN_LIMIT) void drain(req.raw, DRAIN_MS).then(refuse)
      else refuse()
    })
    const access = this.access
    app.addHook('onResponse', (req, reply, done) => {
      access.request(req.id, req.method, pathOf(req.url), reply.statusCode, Math.round(reply.elapsedTime))
      done()
    })
    registerCors(app, this.corsOrigins)
    registerHttpTracing(app)
    app.setErrorHandler((err, req, reply) => { this.sendError(err, req, reply) })
    app.setNotFoundHandler((req, reply) => { this.sendError(MeshError.NOT_FOUND(`no route for ${req.method} ${req.url.split('?')[0]}`), req, reply) })

    app.get('/', async (_req, reply) => {
      reply.header('content-security-policy', "default-src 'none'; style-src 'unsafe-inline'")
      reply.type('text/html; charset=utf-8').send(landingPage(this.gatewayKey))
    })
    app.get('/health', async () => ({
      status: this.auth?.connected && this.gateway?.connected ? 'ok' : 'degraded',
      service: this.name,
      publicKey: this.publicKey,
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      auth: this.auth?.connected ? 'connected' : 'disconnected',
      gateway: this.gateway?.connected ? 'connected' : 'disconnected',
      // the registry's key is the network key: admins read it on the dashboard, strangers get none
      registry: this.replica?.opened ? { version: this.replica.version, peers: this.replica.peerCount } : null
    }))

    app.post('/api/auth/register', async (req, reply) => {
      const res = await this.relayed.register(parseRequest(GatewayProtocol.register, objectBody(req)), req.ip)
      reply.code(201)
      return res
    })
    app.post('/api/auth/login', async (req) => this.relayed.login(parseRequest(GatewayProtocol.login, objectBody(req)), req.ip))
    app.post('/api/auth/api-keys', async (req, reply) => {
      const token = bearer(req)
      const res = await this.client('auth').call(AuthProtocol.generateApiKey, parseRequest(AuthProtocol.generateApiKey, { ...objectBody(req), token }))
      reply.code(201)
      return res
    })
    app.get('/api/auth/api-keys', async (req) => this.client('auth').call(AuthProtocol.listApiKeys, { token: bearer(req) }))
    app.delete<{ Params: { id: string } }>('/api/auth/api-keys/:id', async (req) => {
      return this.client('auth').call(AuthProtocol.revokeApiKey, { token: bearer(req), id: req.params.id })
    })
    // usage is read where it is written, at the gateway: this route and the dashboard's ask the same method
    app.get<{ Querystring: { days?: string } }>('/api/usage', async (req) => {
      const token = bearer(req)
      const days = req.query.days
      return this.client('gateway').call(GatewayProtocol.usage, days === undefined ? { token } : { token, days: Number(days) })
    })

    app.post('/api/inference', async (req, reply) => {
      const header = req.headers['x-api-key']
      if (typeof header !== 'string' || !header) throw MeshError.INVALID_API_KEY('missing X-API-Key header')
      const body = parseRequest(GatewayProtocol.infer, { ...objectBody(req), apiKey: header, stream: false, clientIp: req.ip })
      // a client that hangs up cancels the generation on the worker
      const { cancel, detach } = cancelOnHangUp(reply)
      try {
        return await this.client('gateway').stream(GatewayProtocol.infer, body,
          { onChunk () {}, signal: cancel, idleTimeout: INFER_IDLE_TIMEOUT_MS, connectTimeout: this.rpcTimeoutMs, traceparent: traceparentOf(req) })
      } finally {
        detach()
      }
    })
    app.get('/api/models', async () => this.client('gateway').call(GatewayProtocol.models, {}))
    registerOpenAIRoutes(app, { gateway: () => this.client('gateway'), rpcTimeoutMs: this.rpcTimeoutMs })
    registerSafetyRoutes(app, { auth: () => this.client('auth'), gateway: () => this.client('gateway') })
    registerCacheRoutes(app, { gateway: () => this.client('gateway'), rpcTimeoutMs: this.rpcTimeoutMs })
    registerDashboardRoutes(app, {
      auth: () => this.client('auth'), relayed: this.relayed, gateway: () => this.client('gateway'), registry: () => this.registryListing(), log: this.log, rpcTimeoutMs: this.rpcTimeoutMs,
      webHealth: () => ({
        auth: this.auth?.connected ? 'connected' : 'disconnected',
        gateway: this.gateway?.connected ? 'connected' : 'disconnected',
        uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
        publicKey: this.publicKey
      })
    })

    return app
  }

  /** Any error, ours, fastify's or the mesh's, as one HTTP status and an OpenAI-style body. */
  private sendError (err: unknown, req: FastifyRequest, reply: FastifyReply): void {
    let code: ErrorCode
    let message: string
    if (err instanceof MeshError) {
      code = err.code
      message = err.reason
      if (code === 'INTERNAL' || httpStatusOf(code) === 500) {
        this.log.warn({ reqId: req.id, code }, 'mesh call failed')
        message = 'internal error'
      }
    } else {
      const e = err as { statusCode?: number, code?: string, message?: string }
      if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
        code = 'PAYLOAD_TOO_LARGE'
        message = `request body exceeds ${BODY_LIMIT} bytes`
      } else if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
        // fastify's own request errors (malformed JSON, unsupported content type, bad URL) have fixed,
        // safe messages that never quote the body
        code = 'BAD_REQUEST'
        message = e.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' ? 'Content-Type must be application/json' : String(e.message ?? 'bad request')
      } else {
        this.log.error({ reqId: req.id, err }, 'request failed')
        code = 'INTERNAL'
        message = 'internal error'
      }
    }
    const status = httpStatusOf(code)
    if (code === 'RATE_LIMITED' || code === 'QUOTA_EXCEEDED' || code === 'DATABASE_UNAVAILABLE' || code === 'IDEMPOTENCY_IN_PROGRESS') {
      const retry = Number((err as MeshError).details?.retryAfterSeconds)
      if (Number.isFinite(retry) && retry >= 0) reply.header('retry-after', String(Math.ceil(retry)))
    }
    reply.header('x-request-id', req.id)
    const param = err instanceof MeshError && typeof err.details?.param === 'string' ? err.details.param : null
    // the OpenAI API names a bad key in its own words, which OpenAI clients may test for
    const wire = req.url.startsWith('/v1/') && OPENAI_WORDS.has(code) ? code.toLowerCase() : code
    // the Anthropic Messages route answers in Anthropic's error shape, the rest in OpenAI's
    const body = /^\/v1\/messages(\?|$)/.test(req.url) ? anthropicErrorBody(status, message) : { error: { message, type: errorTypeOf(status), param, code: wire } }
    reply.code(status).type('application/json; charset=utf-8').send(body)
  }
}

function pathOf (url: string): string {
  const q = url.indexOf('?')
  return q === -1 ? url : url.slice(0, q)
}

function objectBody (req: FastifyRequest): Body {
  const body = req.body
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw MeshError.BAD_REQUEST('request body must be a JSON object')
  return body as Body
}

function bearer (req: FastifyRequest): string {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '')
  if (!m) throw MeshError.UNAUTHENTICATED('missing Authorization: Bearer <token> header')
  return m[1]!
}
