import crypto from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { z } from 'zod'
import { compareModels, compareTotals, nanoUsd, runCompare, type CompareOutcome } from '../../../shared/compare.ts'
import { MeshError } from '../../../shared/errors.ts'
import { MAX_MESSAGES } from '../../../shared/protocol/chat.ts'
import { GatewayProtocol } from '../../../shared/protocol/gateway.ts'
import { cacheRequestField } from '../cache-routes.ts'
import { cancelOnHangUp } from '../hang-up.ts'
import { errorTypeOf, httpStatusOf } from '../http-errors.ts'
import { EventStream } from '../sse.ts'
import { traceparentOf } from '../tracing.ts'
import { openAIMessage } from './chat-schema.ts'
import { toMeshMessage } from './chat.ts'
import type { Generation, InferBody } from './generate.ts'
import { apiKeyOf, parseBody } from './request.ts'

// POST /v1/compare: one prompt (or conversation) to several models at once, one result per model
// with its text, usage, latency and cost. Each model runs as its own gateway request, concurrently,
// held, limited and billed like any other (request_logs has one row per model, all with this HTTP
// request's id as trace id). A model that fails gets an OpenAI error object in its result; the
// others go on. `stream: true` sends Server-Sent Events, each tagged with the model's index:
//   {"type":"compare.start","id","created","models"}
//   {"type":"delta","index","model","text"}            (as tokens arrive)
//   {"type":"result", …one result, as in the whole answer…}   (as each model ends)
//   {"type":"compare.done","usage","cost"}, then data: [DONE]

const IDLE_TIMEOUT_MS = 60_000

export const compareSchema = z.object({
  models: compareModels,
  prompt: z.string().max(1_000_000).optional(),
  messages: z.array(openAIMessage).min(1, 'must hold at least one message').max(MAX_MESSAGES).optional(),
  max_tokens: z.number().int().min(1).max(32_768).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  seed: z.number().int().nullish(),
  stop: z.union([z.string().min(1).max(100), z.array(z.string().min(1).max(100)).max(4)]).nullish(),
  stream: z.boolean().nullish()
}).strict().superRefine((b, ctx) => {
  if ((b.prompt === undefined) === (b.messages === undefined)) ctx.addIssue({ code: 'custom', path: ['messages'], message: 'give exactly one of prompt or messages' })
})
export type CompareBody = z.infer<typeof compareSchema>

/** The mesh request every model gets (without its model). */
function meshRequest (body: CompareBody): Omit<InferBody, 'model'> {
  const req: Omit<InferBody, 'model'> = {
    messages: body.messages ? body.messages.map(toMeshMessage) : [{ role: 'user', content: body.prompt! }]
  }
  if (body.max_tokens != null) req.maxTokens = body.max_tokens
  if (body.temperature != null) req.temperature = body.temperature
  if (body.top_p != null) req.topP = body.top_p
  if (body.seed != null) req.seed = body.seed
  if (body.stop != null) req.stop = typeof body.stop === 'string' ? [body.stop] : body.stop
  return req
}

const costOf = (nano: number) => ({ nano_usd: nano, usd: nano / 1e9 })

/** A model's failure as an OpenAI error object; an internal failure says no more than that. */
function errorObject (e: MeshError) {
  const status = httpStatusOf(e.code)
  const internal = status === 500
  return { message: internal ? 'internal error' : e.reason, type: errorTypeOf(status), code: internal ? 'INTERNAL' : e.code }
}

/** One model's result on the wire. */
export function resultOf (o: CompareOutcome) {
  const r = o.result
  if (!r) {
    return { index: o.index, model: o.model, id: null, text: '', finish_reason: null, usage: null, latency_ms: o.latencyMs, ttft_ms: null, cost: null, error: errorObject(o.error!) }
  }
  return {
    index: o.index,
    model: r.model,
    id: r.id,
    text: r.text,
    finish_reason: r.finishReason === 'cancelled' ? 'stop' : r.finishReason,
    usage: { prompt_tokens: r.usage.promptTokens, completion_tokens: r.usage.completionTokens, total_tokens: r.usage.promptTokens + r.usage.completionTokens },
    latency_ms: o.latencyMs,
    ttft_ms: r.ttftMs,
    cost: costOf(nanoUsd(r.costUsd)),
    ...(r.cached ? { cached: true } : {}),
    error: null
  }
}

function totalsOf (outcomes: CompareOutcome[]) {
  const t = compareTotals(outcomes)
  return { usage: { prompt_tokens: t.promptTokens, completion_tokens: t.completionTokens, total_tokens: t.promptTokens + t.completionTokens }, cost: costOf(t.costNanoUsd) }
}

/** `apiKey`: the caller's bearer key, or the dashboard session's own key (dashboard/session-keys.ts). */
export async function compare (req: FastifyRequest, reply: FastifyReply, deps: Pick<Generation, 'gateway' | 'rpcTimeoutMs'>, apiKey = apiKeyOf(req)): Promise<void> {
  const body = parseBody(compareSchema, req.body)
  // the key first, so a bad one is a 401 rather than the same error once per model
  await deps.gateway().call(GatewayProtocol.getUserQuota, { apiKey }, deps.rpcTimeoutMs, traceparentOf(req))
  const base = meshRequest(body)
  const stream = body.stream === true
  // a client that hangs up cancels every model all the way to its backend
  const { cancel } = cancelOnHangUp(reply)
  const id = 'cmp-' + crypto.randomUUID()
  const created = Math.floor(Date.now() / 1000)

  let events: EventStream | null = null
  const send = (ev: unknown) => { if (!reply.raw.destroyed) events?.send(JSON.stringify(ev)) }
  if (stream) {
    reply.hijack()
    events = new EventStream(reply.raw, { 'x-request-id': String(req.id) })
    send({ type: 'compare.start', id, created, models: body.models })
  }
  try {
    const outcomes = await runCompare(body.models, (model, _index, onText) => deps.gateway().stream(GatewayProtocol.infer,
      { ...base, model, apiKey, stream, traceId: String(req.id), ...cacheRequestField(req) },
      {
        signal: cancel,
        idleTimeout: IDLE_TIMEOUT_MS,
        connectTimeout: deps.rpcTimeoutMs,
        traceparent: traceparentOf(req),
        onChunk: (c) => { if (c.text) onText(c.text) }
      }
    ), {
      onDelta: (index, text) => send({ type: 'delta', index, model: body.models[index], text }),
      onOutcome: (o) => send({ type: 'result', ...resultOf(o) })
    })
    const totals = totalsOf(outcomes)
    if (events) {
      send({ type: 'compare.done', ...totals })
      events.end('data: [DONE]\n\n')
      return
    }
    reply.send({ id, object: 'compare', created, results: outcomes.map(resultOf), ...totals })
  } finally {
    cancel.abort()
  }
}
