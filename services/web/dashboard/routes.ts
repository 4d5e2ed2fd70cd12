import fs from 'node:fs'
import path from 'node:path'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Logger } from '../../../shared/log.ts'
import { MeshError } from '../../../shared/errors.ts'
import { PACKAGE_ROOT } from '../../../shared/package.ts'
import type { MeshClient } from '../../../shared/mesh/client.ts'
import type { GatewayCaller } from '../../../shared/mesh/failover.ts'
import { parseRequest } from '../../../shared/mesh/method.ts'
import { AuthProtocol } from '../../../shared/protocol/auth.ts'
import { AuthSafetyProtocol, SafetyProtocol } from '../../../shared/protocol/safety.ts'
import { GatewayProtocol, type GatewayHealth, type RegistryListing } from '../../../shared/protocol/gateway.ts'
import { httpStatusOf } from '../http-errors.ts'
import type { RelayedAuth } from '../relayed-auth.ts'
import type { Metric } from './chart.ts'
import { adminPage, errorPage, keyPage, keysPage, loginPage, modelsPage, overviewPage, registerPage, type Maybe, type WebHealth } from './pages/index.ts'
import { registerMeshApi, registerMeshPages, type PageCtx } from './mesh-routes.ts'
import { DashboardKeys } from './session-keys.ts'
import { registerPayoutRoutes } from '../payout-routes.ts'
import { checkCsrf, clearSessionCookie, sessionToken, Sessions, setSessionCookie, type SessionUser } from './session.ts'

// The dashboard: HTML pages under /login, /register and /dashboard/*, and the JSON API their script
// calls under /api/dashboard/*. Every page and call works on behalf of the user in the session
// cookie only: auth scopes keys and usage to the token's user, and the admin check is made here,
// on the server, from the role inside the token auth has just verified.

export interface DashboardDeps {
  auth: () => MeshClient
  /** logins and registrations, gated per client address */
  relayed: RelayedAuth
  gateway: () => GatewayCaller
  /** the registry's models (the web service's replica, else the gateway) */
  registry: () => Promise<RegistryListing>
  webHealth: () => WebHealth
  log: Logger
  /** how long an RPC call to the gateway may take (compare's key check) */
  rpcTimeoutMs: number
}

// the sources' copy: the build compiles TypeScript only, so dist/ has no static files
const STATIC_DIR = path.join(PACKAGE_ROOT, 'services', 'web', 'dashboard', 'static')
const STATIC = new Map<string, { type: string, body: Buffer }>([
  ['app.css', { type: 'text/css; charset=utf-8', body: fs.readFileSync(path.join(STATIC_DIR, 'app.css')) }],
  ['app.js', { type: 'text/javascript; charset=utf-8', body: fs.readFileSync(path.join(STATIC_DIR, 'app.js')) }],
  ['compare.js', { type: 'text/javascript; charset=utf-8', body: fs.readFileSync(path.join(STATIC_DIR, 'compare.js')) }],
  ['operator.js', { type: 'text/javascript; charset=utf-8', body: fs.readFileSync(path.join(STATIC_DIR, 'operator.js')) }]
])

const PAGE_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

const TITLES: Record<number, string> = { 400: 'Bad request', 402: 'Out of credits', 403: 'Not allowed', 404: 'Not found', 429: 'Slow down', 502: 'Upstream error', 503: 'Temporarily unavailable', 504: 'Timed out' }
/** codes that share a status but deserve their own title */
const TITLES_BY_CODE: Record<string, string> = {
  INSUFFICIENT_CREDITS: 'Out of credits',
  BUDGET_EXCEEDED: 'Key budget spent',
  QUOTA_EXCEEDED: 'Usage limit reached',
  RATE_LIMITED: 'Slow down',
  CSRF_REJECTED: 'Request refused'
}
/** what to do about it, after the service's own message */
const HINTS: Record<string, string> = {
  INSUFFICIENT_CREDITS: 'Your credits cannot cover this; an administrator can add more (hyperinfer credits grant).',
  BUDGET_EXCEEDED: "This key has spent its budget; create a key with a new budget, or use another key.",
  QUOTA_EXCEEDED: 'A token limit of your tier is reached; the Usage page shows when it resets.',
  RATE_LIMITED: 'Too many requests this hour; the Usage page shows when the limit resets.'
}

const WORKER_KEY = /^[0-9a-fA-F]{64}$/

/** A call a page can live without: its value, or its coded error to show in place (a dead session still ends the page). */
async function optional<T> (p: Promise<T>): Promise<Maybe<T>> {
  try {
    return { ok: true, value: await p }
  } catch (err) {
    if (err instanceof MeshError && err.code === 'UNAUTHENTICATED') throw err
    return { ok: false, error: err instanceof MeshError ? `${err.code === 'INTERNAL' ? 'internal error' : err.reason} [${err.code}]` : 'no answer' }
  }
}

/** Only our own dashboard paths are ever a redirect target after logging in. */
export function safeNext (next: unknown): string | null {
  return typeof next === 'string' && /^\/dashboard(\/[A-Za-z0-9/_-]*)?(\?[A-Za-z0-9=&_-]*)?$/.test(next) ? next : null
}

function intIn (v: unknown, allowed: number[], fallback: number): number {
  const n = Number(v)
  return allowed.includes(n) ? n : fallback
}

function body (req: FastifyRequest): Record<string, unknown> {
  const b = req.body
  if (!b || typeof b !== 'object' || Array.isArray(b)) throw MeshError.BAD_REQUEST('request body must be a JSON object')
  return b as Record<string, unknown>
}

function requireAdmin (user: SessionUser): void {
  if (user.role !== 'admin') throw MeshError.FORBIDDEN('this page is for administrators only')
}

export function registerDashboardRoutes (app: FastifyInstance, deps: DashboardDeps): void {
  const sessions = new Sessions(deps.auth)
  const keys = new DashboardKeys(deps.auth)

  const sendPage = (reply: FastifyReply, html: string, status = 200) => {
    reply.code(status)
      .header('content-security-policy', PAGE_CSP)
      .header('x-frame-options', 'DENY')
      .header('referrer-policy', 'same-origin')
      .header('cache-control', 'no-store')
      .type('text/html; charset=utf-8')
      .send(html)
  }

  type Ctx = PageCtx
  /** An HTML page: a missing or stale session goes to the login page, any other error is a page too. */
  const htmlRoute = (handler: (req: FastifyRequest, ctx: Ctx) => Promise<string>) => async (req: FastifyRequest, reply: FastifyReply) => {
    const ctx: Ctx = { user: null }
    try {
      sendPage(reply, await handler(req, ctx))
    } catch (err) {
      const code = err instanceof MeshError ? err.code : 'INTERNAL'
      if (code === 'UNAUTHENTICATED') {
        clearSessionCookie(req, reply)
        const next = safeNext(req.url)
        return reply.redirect(next ? `/login?next=${encodeURIComponent(next)}` : '/login', 303)
      }
      const status = httpStatusOf(code)
      let message = err instanceof MeshError ? err.reason : ''
      if (status === 500) {
        deps.log.error({ reqId: req.id, code, err: err instanceof MeshError ? undefined : err }, 'dashboard page failed')
        message = 'Something went wrong on our side. Try again in a moment.'
      }
      const hint = HINTS[code] ? ` ${HINTS[code]}` : ''
      sendPage(reply, errorPage(status, TITLES_BY_CODE[code] ?? TITLES[status] ?? 'Something went wrong', `${message}${hint} [${code}]`, ctx.user), status)
    }
  }

  const user = async (req: FastifyRequest, ctx: Ctx) => {
    const u = await sessions.user(req)
    ctx.user = { id: u.id, username: u.username, role: u.role }
    return u
  }

  // ---- pages ----------------------------------------------------------------------------------

  app.get('/dashboard/assets/:file', async (req: FastifyRequest<{ Params: { file: string } }>, reply) => {
    const f = STATIC.get(req.params.file)
    if (!f) throw MeshError.NOT_FOUND('no such asset')
    reply.header('cache-control', 'no-cache').type(f.type).send(f.body)
  })

  const loggedOutPage = (render: (req: FastifyRequest) => string) => async (req: FastifyRequest, reply: FastifyReply) => {
    // someone already logged in goes straight to the dashboard
    if (await sessions.user(req).then(() => true, () => false)) return reply.redirect('/dashboard', 303)
    sendPage(reply, render(req))
  }
  app.get('/login', loggedOutPage((req) => {
    const out = (req.query as Record<string, unknown>).logged_out
    if (out === 'here') return loginPage('You are logged out in this browser. The server could not end the session everywhere just now; it ends when it expires.', 'warn')
    return loginPage(out !== undefined ? 'You are logged out.' : null)
  }))
  app.get('/register', loggedOutPage(() => registerPage()))

  app.get('/dashboard', htmlRoute(async (req, ctx) => {
    const u = await user(req, ctx)
    const q = req.query as Record<string, unknown>
    const days = intIn(q.days, [7, 30, 90], 30)
    const metric: Metric = q.metric === 'tokens' || q.metric === 'cost' ? q.metric : 'requests'
    const gw = deps.gateway()
    const [usage, quota, credits, cache] = await Promise.all([
      gw.call(GatewayProtocol.usage, { token: u.token, days }),
      optional(gw.call(GatewayProtocol.accountQuota, { token: u.token })),
      optional(gw.call(GatewayProtocol.credits, { token: u.token, limit: 20 })),
      optional(gw.call(GatewayProtocol.cacheStats, { token: u.token }))
    ])
    return overviewPage(ctx.user!, usage, days, metric, quota, credits, cache)
  }))
  app.get('/dashboard/keys', htmlRoute(async (req, ctx) => {
    const u = await user(req, ctx)
    const [{ keys }, safety] = await Promise.all([
      deps.auth().call(AuthProtocol.listApiKeys, { token: u.token }),
      optional(deps.auth().call(AuthSafetyProtocol.accountSafetyPolicy, { token: u.token }))
    ])
    return keysPage(ctx.user!, keys, safety)
  }))
  app.get('/dashboard/keys/:id', htmlRoute(async (req, ctx) => {
    const u = await user(req, ctx)
    const id = (req.params as { id: string }).id
    const { keys } = await deps.auth().call(AuthProtocol.listApiKeys, { token: u.token })
    const key = keys.find((k) => k.id === id)
    // another user's key looks exactly like a missing one
    if (!key) throw MeshError.NOT_FOUND('no such API key')
    const events = await optional(deps.gateway().call(SafetyProtocol.safetyEvents, { token: u.token, keyId: key.id, limit: 20 }).then((r) => r.events))
    return keyPage(ctx.user!, key, events)
  }))
  app.get('/dashboard/models', htmlRoute(async (req, ctx) => {
    await user(req, ctx)
    const [{ models }, registry] = await Promise.all([
      deps.gateway().call(GatewayProtocol.models, {}),
      optional(deps.registry())
    ])
    return modelsPage(ctx.user!, models, registry.ok ? registry.value.models : null)
  }))
  const meshDeps = { gateway: deps.gateway, registry: deps.registry, sessions, keys, rpcTimeoutMs: deps.rpcTimeoutMs, htmlRoute, user, optional }
  registerMeshPages(app, meshDeps)
  registerPayoutRoutes(app, deps.gateway)
  app.get('/dashboard/admin', htmlRoute(async (req, ctx) => {
    const u = await user(req, ctx)
    requireAdmin(u)
    const gateway = deps.gateway()
    const [health, workers, registry] = await Promise.all([
      optional(gateway.call(GatewayProtocol.getServiceHealth, {})),
      // the gateway checks the admin role again itself
      optional(gateway.call(GatewayProtocol.workers, { token: u.token }).then((r) => r.workers)),
      optional(deps.registry().then((r) => {
        if (!r.key) throw MeshError.UNAVAILABLE('the gateway did not give the registry key')
        return { key: r.key, writable: r.writable }
      }))
    ])
    const gw: GatewayHealth | null = health.ok ? health.value : null
    return adminPage(ctx.user!, { gw, gwError: health.ok ? null : health.error, web: deps.webHealth(), workers, registry })
  }))
  app.get('/dashboard/*', htmlRoute(async (req, ctx) => {
    await user(req, ctx)
    throw MeshError.NOT_FOUND('there is no such page')
  }))

  // ---- JSON API for the pages' script ---------------------------------------------------------

  app.register(async (api) => {
    api.addHook('onRequest', async (req, reply) => {
      reply.header('cache-control', 'no-store')
      if (req.method !== 'GET' && req.method !== 'HEAD') checkCsrf(req)
    })

    api.post('/register', async (req, reply) => {
      const account = parseRequest(GatewayProtocol.register, body(req))
      const { user: created } = await deps.relayed.register(account, req.ip)
      const session = await deps.relayed.login({ email: account.email, password: account.password }, req.ip)
      setSessionCookie(req, reply, session.token, session.expiresAt)
      reply.code(201)
      return { user: created }
    })
    api.post('/login', async (req, reply) => {
      const session = await deps.relayed.login(parseRequest(GatewayProtocol.login, body(req)), req.ip)
      setSessionCookie(req, reply, session.token, session.expiresAt)
      // the token itself stays in the HttpOnly cookie
      return { user: session.user, expiresAt: session.expiresAt }
    })
    api.post('/logout', async (req, reply) => {
      // the cookie goes whatever happens; the session itself ends at auth, for every service
      clearSessionCookie(req, reply)
      // auth revokes the session's dashboard key with the session; this server forgets it now
      const token = sessionToken(req)
      if (token) keys.forget(token)
      const outcome = await sessions.logout(req)
      return { loggedOut: true, everywhere: outcome !== 'here' }
    })
    api.get('/session', async (req) => {
      const u = await sessions.user(req)
      return { user: { id: u.id, username: u.username, role: u.role } }
    })

    api.get('/keys', async (req) => {
      const u = await sessions.user(req)
      return deps.auth().call(AuthProtocol.listApiKeys, { token: u.token })
    })
    api.get('/keys/:id', async (req) => {
      const u = await sessions.user(req)
      const id = (req.params as { id: string }).id
      const { keys } = await deps.auth().call(AuthProtocol.listApiKeys, { token: u.token })
      const key = keys.find((k) => k.id === id)
      if (!key) throw MeshError.NOT_FOUND('no such API key')
      return key
    })
    api.post('/keys', async (req, reply) => {
      const u = await sessions.user(req)
      const res = await deps.auth().call(AuthProtocol.generateApiKey, parseRequest(AuthProtocol.generateApiKey, { ...body(req), token: u.token }))
      reply.code(201)
      return res
    })
    api.patch('/keys/:id/safety', async (req) => {
      const u = await sessions.user(req)
      return deps.auth().call(AuthSafetyProtocol.setApiKeySafety, parseRequest(AuthSafetyProtocol.setApiKeySafety, { token: u.token, id: (req.params as { id: string }).id, safety: body(req).safety ?? null }))
    })
    api.put('/safety', async (req) => {
      const u = await sessions.user(req)
      return deps.auth().call(AuthSafetyProtocol.accountSafetyPolicy, parseRequest(AuthSafetyProtocol.accountSafetyPolicy, { token: u.token, safety: body(req).safety ?? null }))
    })
    api.delete('/keys/:id', async (req) => {
      const u = await sessions.user(req)
      return deps.auth().call(AuthProtocol.revokeApiKey, { token: u.token, id: (req.params as { id: string }).id })
    })

    api.get('/usage', async (req) => {
      const u = await sessions.user(req)
      const days = (req.query as Record<string, unknown>).days
      return deps.gateway().call(GatewayProtocol.usage, days === undefined ? { token: u.token } : { token: u.token, days: Number(days) })
    })
    api.get('/quota', async (req) => {
      const u = await sessions.user(req)
      return deps.gateway().call(GatewayProtocol.accountQuota, { token: u.token })
    })
    api.get('/credits', async (req) => {
      const u = await sessions.user(req)
      const limit = (req.query as Record<string, unknown>).limit
      return deps.gateway().call(GatewayProtocol.credits, limit === undefined ? { token: u.token } : { token: u.token, limit: Number(limit) })
    })
    api.get('/models', async (req) => {
      await sessions.user(req)
      return deps.gateway().call(GatewayProtocol.models, {})
    })
    api.get('/registry', async (req) => {
      const u = await sessions.user(req)
      const { key, ...catalog } = await deps.registry()
      // the key is the network key: admins only
      return u.role === 'admin' ? { key, ...catalog } : catalog
    })
    api.get('/admin/health', async (req) => {
      requireAdmin(await sessions.user(req))
      return { gateway: await deps.gateway().call(GatewayProtocol.getServiceHealth, {}), web: deps.webHealth() }
    })
    api.get('/admin/workers', async (req) => {
      const u = await sessions.user(req)
      requireAdmin(u)
      return deps.gateway().call(GatewayProtocol.workers, { token: u.token })
    })
    // approve or revoke a worker: checked here from the role auth just read, and again by the gateway
    api.post('/admin/workers/:key/:action', async (req) => {
      const { key, action } = req.params as { key: string, action: string }
      if (action !== 'approve' && action !== 'revoke') throw MeshError.NOT_FOUND(`no route for POST /api/dashboard/admin/workers/:key/${action.slice(0, 20)}`)
      if (!WORKER_KEY.test(key)) throw MeshError.BAD_REQUEST('a worker key is 64 hex characters', { param: 'key' })
      const u = await sessions.user(req)
      requireAdmin(u)
      const op = action === 'approve' ? 'approveWorker' as const : 'revokeWorker' as const
      const { result } = await deps.gateway().call(GatewayProtocol.registryChange, { token: u.token, change: { op, key: key.toLowerCase() } })
      return { worker: result }
    })
    registerMeshApi(api, meshDeps)
  }, { prefix: '/api/dashboard' })
}
