import crypto from 'node:crypto'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { z } from 'zod'
import { MeshError } from '../../shared/errors.ts'
import type { MeshClient } from '../../shared/mesh/client.ts'
import { GatewayProtocol, type InferResult } from '../../shared/protocol/gateway.ts'
import { modelName } from '../../shared/protocol/common.ts'
import type { ChatMessage } from '../../shared/protocol/inference.ts'
import { cacheHeaders, cacheRequestField } from './cache-routes.ts'

// The OpenAI-compatible API: code written for OpenAI works unchanged against our base URL with our
// key. The edge only translates shapes; authentication, limits, routing and usage stay in the gateway.
// One zod schema per route; parameters OpenAI defines that we do not act on are accepted and ignored,
// so existing clients never break on them.

const text = z.string().max(1_000_000)
const contentPart = z.object({ type: z.literal('text'), text }).passthrough()
const chatMessage = z.object({
  role: z.enum(['system', 'developer', 'user', 'assistant']),
  content: z.union([text, z.array(contentPart).max(256)]).nullable()
}).passthrough()
const stop = z.union([z.string().min(1).max(100), z.array(z.string().min(1).max(100)).max(4)]).nullish()
const common = {
  model: modelName,
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().nullish() }).passthrough().nullish(),
  max_tokens: z.number().int().min(1).max(32_768).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  stop,
  user: z.string().max(256).nullish(),
  n: z.literal(1).nullish()
}

export const chatCompletionSchema = z.object({
  ...common,
  messages: z.array(chatMessage).min(1).max(256),
  max_completion_tokens: z.number().int().min(1).max(32_768).nullish()
}).passthrough()

export const completionSchema = z.object({
  ...common,
  prompt: z.union([text, z.array(text).length(1)])
}).passthrough()

export const embeddingSchema = z.object({
  model: modelName,
  input: z.union([z.string().min(1).max(100_000), z.array(z.string().min(1).max(100_000)).min(1).max(256)]),
  encoding_format: z.enum(['float', 'base64']).nullish(),
  user: z.string().max(256).nullish()
}).passthrough()

type ChatBody = z.infer<typeof chatCompletionSchema>
type CompletionBody = z.infer<typeof completionSchema>

export interface OpenAIRouteDeps {
  gateway: () => MeshClient
  rpcTimeoutMs: number
}

function apiKeyOf (req: FastifyRequest): string {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '')
  if (!m) throw MeshError.INVALID_API_KEY('missing Authorization: Bearer <api key> header')
  return m[1]!
}

function parse<S extends z.ZodType> (schema: S, body: unknown): z.infer<S> {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw MeshError.BAD_REQUEST('request body must be a JSON object')
  const r = schema.safeParse(body)
  if (!r.success) {
    const issue = r.error.issues[0]
    throw MeshError.BAD_REQUEST(`${issue?.path.join('.') || 'body'}: ${issue?.message ?? 'invalid'}`, { param: issue?.path.join('.') ?? null })
  }
  return r.data
}

function toMessages (messages: ChatBody['messages']): ChatMessage[] {
  return messages.map((m) => ({
    role: m.role === 'developer' ? 'system' : m.role,
    content: typeof m.content === 'string' ? m.content : (m.content ?? []).map((p) => p.text).join('')
  }))
}

function stopList (s: ChatBody['stop']): string[] | undefined {
  if (s === null || s === undefined) return undefined
  return typeof s === 'string' ? [s] : s
}

function usageOf (r: InferResult) {
  return { prompt_tokens: r.usage.promptTokens, completion_tokens: r.usage.completionTokens, total_tokens: r.usage.promptTokens + r.usage.completionTokens }
}

function finishOf (r: InferResult): 'stop' | 'length' {
  return r.finishReason === 'length' ? 'length' : 'stop'
}

interface Shape {
  id: string
  created: number
  /** the object a non-streaming answer returns */
  whole: (r: InferResult, text: string) => unknown
  /** one streamed delta; `first` carries the role for chat */
  delta: (model: string, text: string, first: boolean) => unknown
  /** the closing chunk with the finish reason */
  finish: (model: string, reason: 'stop' | 'length') => unknown
  usage: (r: InferResult) => unknown
}

function chatShape (): Shape {
  const id = 'chatcmpl-' + crypto.randomUUID()
  const created = Math.floor(Date.now() / 1000)
  const chunk = (model: string, choice: unknown) => ({ id, object: 'chat.completion.chunk', created, model, system_fingerprint: null, choices: [choice] })
  return {
    id,
    created,
    whole: (r, t) => ({
      id, object: 'chat.completion', created, model: r.model, system_fingerprint: null,
      choices: [{ index: 0, message: { role: 'assistant', content: t, refusal: null }, logprobs: null, finish_reason: finishOf(r) }],
      usage: usageOf(r)
    }),
    delta: (model, t, first) => chunk(model, { index: 0, delta: first ? { role: 'assistant', content: t } : { content: t }, logprobs: null, finish_reason: null }),
    finish: (model, reason) => chunk(model, { index: 0, delta: {}, logprobs: null, finish_reason: reason }),
    usage: (r) => ({ id, object: 'chat.completion.chunk', created, model: r.model, system_fingerprint: null, choices: [], usage: usageOf(r) })
  }
}

function completionShape (): Shape {
  const id = 'cmpl-' + crypto.randomUUID()
  const created = Math.floor(Date.now() / 1000)
  const chunk = (model: string, t: string, reason: string | null) => ({ id, object: 'text_completion', created, model, choices: [{ index: 0, text: t, logprobs: null, finish_reason: reason }] })
  return {
    id,
    created,
    whole: (r, t) => ({ ...chunk(r.model, t, finishOf(r)), usage: usageOf(r) }),
    delta: (model, t) => chunk(model, t, null),
    finish: (model, reason) => chunk(model, '', reason),
    usage: (r) => ({ id, object: 'text_completion', created, model: r.model, choices: [], usage: usageOf(r) })
  }
}

export function registerOpenAIRoutes (app: FastifyInstance, deps: OpenAIRouteDeps): void {
  /**
   * Run one generation through the gateway. Nothing is written until the gateway has accepted the
   * request (first token or final answer), so a bad key, a limit or an unknown model is a proper
   * HTTP error; after that, a failure ends the event stream with an error event.
   */
  async function generate (req: FastifyRequest, reply: FastifyReply, shape: Shape, params: {
    apiKey: string, model: string, messages: ChatMessage[], maxTokens?: number, temperature?: number, stop?: string[], stream: boolean, includeUsage: boolean
  }): Promise<void> {
    const ac = new AbortController()
    // a client that hangs up cancels the call all the way to the backend
    reply.raw.once('close', () => { if (!reply.raw.writableFinished) ac.abort() })
    const request = {
      apiKey: params.apiKey, model: params.model, messages: params.messages, stream: params.stream, traceId: String(req.id), ...cacheRequestField(req),
      ...(params.maxTokens !== undefined ? { maxTokens: params.maxTokens } : {}),
      ...(params.temperature !== undefined ? { temperature: params.temperature } : {}),
      ...(params.stop ? { stop: params.stop } : {})
    }
    if (!params.stream) {
      const r = await deps.gateway().stream(GatewayProtocol.infer, request, { onChunk () {}, signal: ac.signal, idleTimeout: 60_000, connectTimeout: deps.rpcTimeoutMs })
      reply.headers(cacheHeaders(r)).send(shape.whole(r, r.text))
      return
    }
    let started = false
    const start = (first?: { cached?: true }) => {
      if (started) return
      started = true
      reply.hijack()
      reply.raw.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-request-id': String(req.id), ...cacheHeaders(first ?? {}) })
    }
    const send = (obj: unknown) => { if (!reply.raw.writableEnded) reply.raw.write(`data: ${JSON.stringify(obj)}\n\n`) }
    let first = true
    try {
      const r = await deps.gateway().stream(GatewayProtocol.infer, request, {
        signal: ac.signal,
        idleTimeout: 60_000,
        connectTimeout: deps.rpcTimeoutMs,
        onChunk: (c) => { start(c); send(shape.delta(params.model, c.text, first)); first = false }
      })
      start()
      send(shape.finish(r.model, finishOf(r)))
      if (params.includeUsage) send(shape.usage(r))
      reply.raw.end('data: [DONE]\n\n')
    } catch (err) {
      if (!started) throw err // nothing sent yet: a normal HTTP error response
      if (ac.signal.aborted) { reply.raw.end(); return }
      const e = err instanceof MeshError ? err : MeshError.INTERNAL()
      send({ error: { message: e.reason, type: 'server_error', code: e.code } })
      reply.raw.end()
    }
  }

  app.post('/v1/chat/completions', async (req, reply) => {
    const apiKey = apiKeyOf(req)
    const body = parse(chatCompletionSchema, req.body)
    await generate(req, reply, chatShape(), {
      apiKey,
      model: body.model,
      messages: toMessages(body.messages),
      maxTokens: body.max_completion_tokens ?? body.max_tokens ?? undefined,
      temperature: body.temperature ?? undefined,
      stop: stopList(body.stop),
      stream: body.stream === true,
      includeUsage: body.stream_options?.include_usage === true
    })
  })

  app.post('/v1/completions', async (req, reply) => {
    const apiKey = apiKeyOf(req)
    const body = parse(completionSchema, req.body) as CompletionBody
    const prompt = typeof body.prompt === 'string' ? body.prompt : body.prompt[0]!
    await generate(req, reply, completionShape(), {
      apiKey,
      model: body.model,
      messages: [{ role: 'user', content: prompt }],
      maxTokens: body.max_tokens ?? undefined,
      temperature: body.temperature ?? undefined,
      stop: stopList(body.stop),
      stream: body.stream === true,
      includeUsage: body.stream_options?.include_usage === true
    })
  })

  app.post('/v1/embeddings', async (req) => {
    const apiKey = apiKeyOf(req)
    const body = parse(embeddingSchema, req.body)
    const r = await deps.gateway().call(GatewayProtocol.embed, { apiKey, model: body.model, input: body.input, traceId: String(req.id) }, 60_000)
    // the official SDK asks for base64 (little-endian float32) and decodes it itself
    const encode = body.encoding_format === 'base64'
      ? (v: number[]) => Buffer.from(new Float32Array(v).buffer).toString('base64')
      : (v: number[]) => v
    return {
      object: 'list',
      data: r.embeddings.map((embedding, index) => ({ object: 'embedding', index, embedding: encode(embedding) })),
      model: r.model,
      usage: { prompt_tokens: r.usage.promptTokens, total_tokens: r.usage.promptTokens }
    }
  })

  // a task-level request { task, input, preferences }: the caller names the task, the gateway's router picks the model
  app.post('/v1/ai/request', async (req) => {
    const apiKey = apiKeyOf(req)
    const body = req.body
    if (!body || typeof body !== 'object' || Array.isArray(body)) throw MeshError.BAD_REQUEST('request body must be a JSON object')
    const { task, input, preferences, max_tokens: maxTokens } = body as Record<string, unknown>
    return deps.gateway().call(GatewayProtocol.aiRequest, {
      apiKey, task, input, ...(preferences !== undefined ? { preferences } : {}), ...(maxTokens !== undefined ? { maxTokens } : {})
    } as never, 60_000)
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
