import type { FastifyInstance } from 'fastify'
import { MeshError } from '../../shared/errors.ts'
import { messages } from './anthropic/messages.ts'
import type { GatewayCaller } from '../../shared/mesh/failover.ts'
import { GatewayProtocol } from '../../shared/protocol/gateway.ts'
import { chatCompletions } from './openai/chat.ts'
import { compare } from './openai/compare.ts'
import { completions } from './openai/completions.ts'
import { embeddings } from './openai/embeddings.ts'
import { apiKeyOf } from './openai/request.ts'
import { responses } from './openai/responses.ts'
import { traceparentOf } from './tracing.ts'

// The OpenAI-compatible API: code written for OpenAI works unchanged against our base URL with our
// key (and Anthropic-SDK code against /v1/messages). The edge only translates shapes (one module per
// endpoint under ./openai/ and ./anthropic/); authentication, limits, routing and usage stay in the
// gateway.

export interface OpenAIRouteDeps {
  gateway: () => GatewayCaller
  rpcTimeoutMs: number
}

export function registerOpenAIRoutes (app: FastifyInstance, deps: OpenAIRouteDeps): void {
  app.post('/v1/chat/completions', (req, reply) => chatCompletions(req, reply, deps))
  app.post('/v1/completions', (req, reply) => completions(req, reply, deps))
  app.post('/v1/embeddings', (req) => embeddings(req, deps))
  app.post('/v1/responses', (req, reply) => responses(req, reply, deps))
  app.post('/v1/messages', (req, reply) => messages(req, reply, deps))
  app.post('/v1/compare', (req, reply) => compare(req, reply, deps))

  // a task-level request { task, input, preferences }: the caller names the task, the gateway's router picks the model
  app.post('/v1/ai/request', async (req) => {
    const apiKey = apiKeyOf(req)
    const body = req.body
    if (!body || typeof body !== 'object' || Array.isArray(body)) throw MeshError.BAD_REQUEST('request body must be a JSON object')
    const { task, input, preferences, max_tokens: maxTokens } = body as Record<string, unknown>
    return deps.gateway().call(GatewayProtocol.aiRequest, {
      apiKey, task, input, ...(preferences !== undefined ? { preferences } : {}), ...(maxTokens !== undefined ? { maxTokens } : {})
    } as never, 60_000, traceparentOf(req))
  })

  // the usage receipt of one of the caller's own requests, by the id an answer carries in x-hyperinfer-request-id:
  // the document `hyperinfer receipts verify` checks; another account's, or one without a receipt, is a 404
  app.get<{ Params: { id: string } }>('/v1/receipts/:id', async (req) => {
    const apiKey = apiKeyOf(req)
    const id = /^[\x21-\x7e]{1,100}$/.test(req.params.id) ? req.params.id : '-'
    return deps.gateway().call(GatewayProtocol.receipt, { apiKey, id }, deps.rpcTimeoutMs)
  })

  app.get('/v1/models', async (req) => {
    // the key is checked like any other call (cheap: the gateway caches it); listing costs no quota
    await deps.gateway().call(GatewayProtocol.getUserQuota, { apiKey: apiKeyOf(req) }, deps.rpcTimeoutMs)
    const { models } = await deps.gateway().call(GatewayProtocol.models, {}, deps.rpcTimeoutMs)
    return { object: 'list', data: models.map((m) => ({ id: m.id, object: 'model', created: 0, owned_by: m.backend })) }
  })

  app.get<{ Params: { id: string } }>('/v1/models/:id', async (req) => {
    await deps.gateway().call(GatewayProtocol.getUserQuota, { apiKey: apiKeyOf(req) }, deps.rpcTimeoutMs)
    const { models } = await deps.gateway().call(GatewayProtocol.models, {}, deps.rpcTimeoutMs)
    const m = models.find((x) => x.id === req.params.id)
    if (!m) throw MeshError.UNKNOWN_MODEL(req.params.id, models.map((x) => x.id))
    return { id: m.id, object: 'model', created: 0, owned_by: m.backend }
  })
}
