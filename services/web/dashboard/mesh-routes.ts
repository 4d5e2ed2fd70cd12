import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { MeshError } from '../../../shared/errors.ts'
import type { GatewayCaller } from '../../../shared/mesh/failover.ts'
import { parseRequest } from '../../../shared/mesh/method.ts'
import { GatewayProtocol, type RegistryListing } from '../../../shared/protocol/gateway.ts'
import { OperatorProtocol } from '../../../shared/protocol/operators.ts'
import { RequestsProtocol } from '../../../shared/protocol/requests.ts'
import { compare } from '../openai/compare.ts'
import type { Maybe } from './maybe.ts'
import { comparePage, operatorPage, receiptPage, requestsPage } from './pages/index.ts'
import type { DashboardKeys } from './session-keys.ts'
import type { Sessions, SessionUser } from './session.ts'

// The dashboard's pages and calls about the mesh's work: comparing models on the session, the
// account's requests and their signed receipts, and the operator's workers and prices. Pages render
// on the server for the session's user; the calls sit under /api/dashboard (CSRF-checked there).

export type PageCtx = { user: SessionUser | null }
export type HtmlRoute = (handler: (req: FastifyRequest, ctx: PageCtx) => Promise<string>) => (req: FastifyRequest, reply: FastifyReply) => Promise<void>

export interface MeshRouteDeps {
  gateway: () => GatewayCaller
  registry: () => Promise<RegistryListing>
  sessions: Sessions
  keys: DashboardKeys
  rpcTimeoutMs: number
  htmlRoute: HtmlRoute
  user: (req: FastifyRequest, ctx: PageCtx) => Promise<SessionUser & { token: string }>
  optional: <T>(p: Promise<T>) => Promise<Maybe<T>>
}

const WORKER_KEY = /^[0-9a-fA-F]{64}$/
const REQUEST_ID = /^[\x21-\x7e]{1,100}$/

function idOf (req: FastifyRequest): string {
  const id = (req.params as { id: string }).id
  if (!REQUEST_ID.test(id)) throw MeshError.NOT_FOUND('no such request')
  return id
}

export function registerMeshPages (app: FastifyInstance, d: MeshRouteDeps): void {
  app.get('/dashboard/compare', d.htmlRoute(async (req, ctx) => {
    await d.user(req, ctx)
    const [{ models }, registry] = await Promise.all([d.gateway().call(GatewayProtocol.models, {}), d.optional(d.registry())])
    // the live models, with the registry's prices where it has them
    const known = new Map((registry.ok ? registry.value.models : []).map((m) => [m.id, m]))
    return comparePage(ctx.user!, models.map((m) => ({ ...known.get(m.id), ...m })))
  }))
  app.get('/dashboard/operator', d.htmlRoute(async (req, ctx) => {
    const u = await d.user(req, ctx)
    const gateway = d.gateway()
    const [workers, prices, earnings] = await Promise.all([
      d.optional(gateway.call(GatewayProtocol.workers, { token: u.token }).then((r) => r.workers)),
      d.optional(gateway.call(OperatorProtocol.prices, { token: u.token })),
      d.optional(gateway.call(OperatorProtocol.earnings, { token: u.token }))
    ])
    return operatorPage(ctx.user!, { workers, prices, earnings })
  }))
  app.get('/dashboard/requests', d.htmlRoute(async (req, ctx) => {
    const u = await d.user(req, ctx)
    const requests = await d.optional(d.gateway().call(RequestsProtocol.recentRequests, { token: u.token, limit: 50 }).then((r) => r.requests))
    return requestsPage(ctx.user!, requests)
  }))
  app.get('/dashboard/requests/:id', d.htmlRoute(async (req, ctx) => {
    const u = await d.user(req, ctx)
    const id = idOf(req)
    return receiptPage(ctx.user!, id, await d.gateway().call(RequestsProtocol.requestReceipt, { token: u.token, id }))
  }))
  // the receipt as the file `hyperinfer receipts verify` takes: shown, or (?download=1) saved
  app.get('/dashboard/requests/:id/receipt.json', async (req, reply) => {
    const u = await d.sessions.user(req)
    const id = idOf(req)
    const doc = await d.gateway().call(RequestsProtocol.requestReceipt, { token: u.token, id })
    reply.header('cache-control', 'no-store').header('x-content-type-options', 'nosniff').type('application/json; charset=utf-8')
    if ((req.query as Record<string, unknown>).download !== undefined) reply.header('content-disposition', `attachment; filename="receipt-${id.replace(/[^A-Za-z0-9-]/g, '_')}.json"`)
    return JSON.stringify(doc, null, 2) + '\n'
  })
}

/** Under /api/dashboard, where every state-changing call has passed the CSRF check. */
export function registerMeshApi (api: FastifyInstance, d: MeshRouteDeps): void {
  // compare on the session: the session's own key, held by this server, never the browser
  api.post('/compare', async (req, reply) => {
    const u = await d.sessions.user(req)
    let key = await d.keys.keyFor(u.token)
    try {
      await d.gateway().call(GatewayProtocol.getUserQuota, { apiKey: key }, d.rpcTimeoutMs)
    } catch (err) {
      // revoked from the keys page (or expired early): a fresh one, once
      if (!(err instanceof MeshError) || err.code !== 'INVALID_API_KEY') throw err
      d.keys.forget(u.token)
      key = await d.keys.keyFor(u.token)
    }
    return compare(req, reply, d, key)
  })

  api.post('/operator/workers/:key/:action', async (req) => {
    const { key, action } = req.params as { key: string, action: string }
    if (action !== 'drain' && action !== 'resume') throw MeshError.NOT_FOUND(`no route for POST /api/dashboard/operator/workers/:key/${action.slice(0, 20)}`)
    if (!WORKER_KEY.test(key)) throw MeshError.BAD_REQUEST('a worker key is 64 hex characters', { param: 'key' })
    const u = await d.sessions.user(req)
    // the gateway refuses another account's worker (FORBIDDEN) whatever this server lets through
    return d.gateway().call(OperatorProtocol.drainWorker, { token: u.token, key: key.toLowerCase(), drain: action === 'drain' })
  })
  api.post('/operator/prices', async (req) => {
    const u = await d.sessions.user(req)
    const b = req.body
    if (!b || typeof b !== 'object' || Array.isArray(b)) throw MeshError.BAD_REQUEST('request body must be a JSON object')
    return d.gateway().call(OperatorProtocol.setPrice, parseRequest(OperatorProtocol.setPrice, { ...b, token: u.token }))
  })
}
