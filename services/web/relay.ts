import type { FastifyReply, FastifyRequest } from 'fastify'
import { MeshError } from '../../shared/errors.ts'
import type { MeshClient } from '../../shared/mesh/client.ts'
import { GatewayProtocol, type InferResult } from '../../shared/protocol/gateway.ts'
import type { ChatMessage } from '../../shared/protocol/inference.ts'
import { EventStream } from './sse.ts'
import { Cancellation } from './cancel.ts'

// One generation relayed from the gateway to an HTTP client: the answer whole, as one JSON body, or
// streamed as server-sent events. The API's own shapes (chat, completions) come from the caller; the
// connection to the gateway is the service's one long-lived client, shared by every request.

const IDLE_TIMEOUT_MS = 60_000

export interface Shape {
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

export interface Generation {
  apiKey: string
  model: string
  messages: ChatMessage[]
  maxTokens?: number
  temperature?: number
  stop?: string[]
  stream: boolean
  includeUsage: boolean
}

export function finishOf (r: InferResult): 'stop' | 'length' {
  return r.finishReason === 'length' ? 'length' : 'stop'
}

const MARK = '\u0000delta\u0000'

/**
 * A delta's JSON for any token text, from a template made once per answer: every delta of an answer
 * is the same object but for its text, so per token only the text is encoded. (Falls back to encoding
 * the whole object if the shape does not carry the text exactly once.)
 */
function deltaEncoder (shape: Shape, model: string): (text: string) => string {
  const json = JSON.stringify(shape.delta(model, MARK, false))
  const marked = JSON.stringify(MARK)
  const at = json.indexOf(marked)
  if (at === -1 || json.indexOf(marked, at + 1) !== -1) return (text) => JSON.stringify(shape.delta(model, text, false))
  const head = json.slice(0, at)
  const tail = json.slice(at + marked.length)
  return (text) => head + JSON.stringify(text) + tail
}

/**
 * Run one generation through the gateway. Nothing is written until the gateway has accepted the
 * request (first token or final answer), so a bad key, a limit or an unknown model is a proper HTTP
 * error; after that, a failure ends the event stream with an error event and no [DONE].
 */
export async function relay (req: FastifyRequest, reply: FastifyReply, gateway: MeshClient, connectTimeout: number, shape: Shape, params: Generation): Promise<void> {
  const ac = new Cancellation()
  const raw = reply.raw
  // a client that hangs up cancels the call all the way to the backend
  const onClose = () => { if (!raw.writableFinished) ac.abort() }
  raw.once('close', onClose)
  const request = {
    apiKey: params.apiKey, model: params.model, messages: params.messages, stream: params.stream, traceId: String(req.id),
    ...(params.maxTokens !== undefined ? { maxTokens: params.maxTokens } : {}),
    ...(params.temperature !== undefined ? { temperature: params.temperature } : {}),
    ...(params.stop ? { stop: params.stop } : {})
  }
  if (!params.stream) {
    const r = await gateway.stream(GatewayProtocol.infer, request, { onChunk () {}, signal: ac, idleTimeout: IDLE_TIMEOUT_MS, connectTimeout })
    reply.send(shape.whole(r, r.text))
    return
  }
  const events = new EventStream(raw, { 'x-request-id': String(req.id) })
  const start = () => { if (!events.started) { reply.hijack(); events.open() } }
  const delta = deltaEncoder(shape, params.model)
  let first = true
  try {
    const r = await gateway.stream(GatewayProtocol.infer, request, {
      signal: ac,
      idleTimeout: IDLE_TIMEOUT_MS,
      connectTimeout,
      onChunk: (c) => {
        start()
        events.send(first ? JSON.stringify(shape.delta(params.model, c.text, true)) : delta(c.text))
        first = false
      }
    })
    start()
    let last = `data: ${JSON.stringify(shape.finish(r.model, finishOf(r)))}\n\n`
    if (params.includeUsage) last += `data: ${JSON.stringify(shape.usage(r))}\n\n`
    events.end(last + 'data: [DONE]\n\n')
  } catch (err) {
    if (!events.started) throw err // nothing sent yet: a normal HTTP error response
    if (ac.aborted) { events.end(); return }
    const e = err instanceof MeshError ? err : MeshError.INTERNAL()
    events.end(`data: ${JSON.stringify({ error: { message: e.reason, type: 'server_error', code: e.code } })}\n\n`)
  } finally {
    raw.off('close', onClose)
  }
}
