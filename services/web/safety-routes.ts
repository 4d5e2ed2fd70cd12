import crypto from 'node:crypto'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { MeshError } from '../../shared/errors.ts'
import type { MeshClient } from '../../shared/mesh/client.ts'
import type { GatewayCaller } from '../../shared/mesh/failover.ts'
import { parseRequest } from '../../shared/mesh/method.ts'
import { AuthSafetyProtocol, SafetyProtocol, type ModerationVerdict } from '../../shared/protocol/safety.ts'

// The safety layer over HTTP. POST /v1/moderations answers as OpenAI's does (the official client's
// moderations.create works against it), from the mesh's moderation model or the built-in
// detectors; the REST routes set a key's or the account's safety policy, resume a suspended key
// (admins) and read the record of safety decisions. Every check is the gateway's or auth's.

export interface SafetyRouteDeps {
  auth: () => MeshClient
  gateway: () => GatewayCaller
}

/** OpenAI's moderation categories and which of ours each one is. */
const OPENAI_CATEGORIES: Record<string, string | null> = {
  harassment: 'harassment', 'harassment/threatening': null, hate: 'hate', 'hate/threatening': null, illicit: 'illicit', 'illicit/violent': null,
  'self-harm': 'self_harm', 'self-harm/intent': null, 'self-harm/instructions': null, sexual: 'sexual', 'sexual/minors': null, violence: 'violence', 'violence/graphic': null
}

function openaiResult (v: ModerationVerdict) {
  const categories: Record<string, boolean> = {}
  const scores: Record<string, number> = {}
  for (const [name, ours] of Object.entries(OPENAI_CATEGORIES)) {
    categories[name] = ours ? v.categories[ours] === true : false
    scores[name] = ours ? v.categoryScores[ours] ?? 0 : 0
  }
  // our own categories (personal data, secrets, prompt injection) follow OpenAI's, by our names
  for (const [name, found] of Object.entries(v.categories)) if (!Object.values(OPENAI_CATEGORIES).includes(name)) { categories[name] = found; scores[name] = v.categoryScores[name] ?? 0 }
  return { flagged: v.flagged, categories, category_scores: scores, category_applied_input_types: Object.fromEntries(Object.keys(categories).map((c) => [c, ['text']])) }
}

function bearer (req: FastifyRequest, what: 'api key' | 'token'): string {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '')
  if (!m) throw what === 'api key' ? MeshError.INVALID_API_KEY('missing Authorization: Bearer <api key> header') : MeshError.UNAUTHENTICATED('missing Authorization: Bearer <token> header')
  return m[1]!
}

function objectBody (req: FastifyRequest): Record<string, unknown> {
  const b = req.body
  if (!b || typeof b !== 'object' || Array.isArray(b)) throw MeshError.BAD_REQUEST('request body must be a JSON object')
  return b as Record<string, unknown>
}

export function registerSafetyRoutes (app: FastifyInstance, deps: SafetyRouteDeps): void {
  app.post('/v1/moderations', async (req) => {
    const apiKey = bearer(req, 'api key')
    const body = objectBody(req)
    // OpenAI's own model names ask for "the moderation model": here, the mesh's (or the built-in detectors)
    const model = typeof body.model === 'string' && !/^(?:omni-|text-)moderation/.test(body.model) ? body.model : undefined
    const input = Array.isArray(body.input)
      ? body.input.map((p) => typeof p === 'string' ? p : (p && typeof p === 'object' && (p as { type?: unknown }).type === 'text' ? (p as { text?: unknown }).text : undefined))
      : body.input
    const request = parseRequest(SafetyProtocol.moderate, { apiKey, input, ...(model ? { model } : {}) })
    const r = await deps.gateway().call(SafetyProtocol.moderate, request, 60_000)
    return { id: r.id ?? 'modr-' + crypto.randomUUID(), model: r.model, results: r.results.map(openaiResult) }
  })

  app.patch<{ Params: { id: string } }>('/api/auth/api-keys/:id', async (req) => {
    const body = objectBody(req)
    return deps.auth().call(AuthSafetyProtocol.setApiKeySafety, parseRequest(AuthSafetyProtocol.setApiKeySafety, { token: bearer(req, 'token'), id: req.params.id, safety: body.safety }))
  })
  app.get('/api/account/safety', async (req) => deps.auth().call(AuthSafetyProtocol.accountSafetyPolicy, { token: bearer(req, 'token') }))
  app.put('/api/account/safety', async (req) => {
    const body = objectBody(req)
    return deps.auth().call(AuthSafetyProtocol.accountSafetyPolicy, parseRequest(AuthSafetyProtocol.accountSafetyPolicy, { token: bearer(req, 'token'), safety: body.safety ?? null }))
  })
  app.post<{ Params: { id: string } }>('/api/admin/api-keys/:id/resume', async (req) => {
    return deps.auth().call(AuthSafetyProtocol.resumeApiKey, parseRequest(AuthSafetyProtocol.resumeApiKey, { token: bearer(req, 'token'), id: req.params.id }))
  })
  app.get<{ Querystring: { key?: string, limit?: string, all?: string } }>('/api/safety/events', async (req) => {
    const q = req.query
    return deps.gateway().call(SafetyProtocol.safetyEvents, parseRequest(SafetyProtocol.safetyEvents, {
      token: bearer(req, 'token'), ...(q.key ? { keyId: q.key } : {}), ...(q.limit ? { limit: Number(q.limit) } : {}), ...(q.all === 'true' ? { all: true } : {})
    }))
  })
}
