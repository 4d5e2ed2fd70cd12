import type { FastifyInstance, FastifyRequest } from 'fastify'
import { MeshError } from '../../shared/errors.ts'
import { GatewayProtocol } from '../../shared/protocol/gateway.ts'
import { apiKeyOf } from './openai/request.ts'
import type { OpenAIRouteDeps } from './openai.ts'

// HTTP for the response cache and learned routing. A caller steers the cache per request with
// `x-hyperinfer-cache: use` (cache even a non-deterministic request) or `no-store` (also
// `Cache-Control: no-store`); every generation answer says `x-hyperinfer-cache: hit` or `miss` and
// carries the gateway's request id in `x-hyperinfer-request-id`, which `POST /v1/feedback` takes
// with a score (an answer of n choices names n ids). The OpenAI routes call cacheRequestField and
// cacheHeaders; registerCacheRoutes adds the feedback route.

export const CACHE_HEADER = 'x-hyperinfer-cache'
export const REQUEST_ID_HEADER = 'x-hyperinfer-request-id'

/** The `cache` field of the gateway request, from the caller's headers. */
export function cacheRequestField (req: FastifyRequest): { cache?: true | 'no-store' } {
  const asked = String(req.headers[CACHE_HEADER] ?? '').trim().toLowerCase()
  const control = String(req.headers['cache-control'] ?? '').toLowerCase()
  if (asked === 'no-store' || /(^|,)\s*no-store\s*(,|$)/.test(control)) return { cache: 'no-store' }
  if (asked === 'use' || asked === 'true') return { cache: true }
  return {}
}

/** Response headers for an answer's choices (or the first frame of a streamed one): a hit when every choice was. */
export function cacheHeaders (rs: Array<{ cached?: true, id?: string }>): Record<string, string> {
  const ids = rs.map((r) => r.id).filter((id): id is string => !!id)
  return { [CACHE_HEADER]: rs.length > 0 && rs.every((r) => r.cached) ? 'hit' : 'miss', ...(ids.length ? { [REQUEST_ID_HEADER]: ids.join(', ') } : {}) }
}

export function registerCacheRoutes (app: FastifyInstance, deps: OpenAIRouteDeps): void {
  // { "request_id": "<x-hyperinfer-request-id or x-request-id>", "score": 0..1, "comment": "…" }
  app.post('/v1/feedback', async (req) => {
    const apiKey = apiKeyOf(req)
    const body = req.body
    if (!body || typeof body !== 'object' || Array.isArray(body)) throw MeshError.BAD_REQUEST('request body must be a JSON object')
    const { request_id: requestId, score, comment } = body as Record<string, unknown>
    const parsed = GatewayProtocol.feedback.request.safeParse({ apiKey, requestId, score, ...(comment !== undefined ? { comment } : {}) })
    if (!parsed.success) {
      const issue = parsed.error.issues[0]
      const param = issue?.path[0] === 'requestId' ? 'request_id' : String(issue?.path[0] ?? 'body')
      throw MeshError.BAD_REQUEST(`${param}: ${issue?.message ?? 'invalid'}`, { param })
    }
    const r = await deps.gateway().call(GatewayProtocol.feedback, parsed.data, deps.rpcTimeoutMs)
    return { object: 'feedback', request_id: r.requestId, model: r.model, score: r.score }
  })
}
