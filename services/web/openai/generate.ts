import type { FastifyReply, FastifyRequest } from 'fastify'
import { MeshError } from '../../../shared/errors.ts'
import type { GatewayCaller } from '../../../shared/mesh/failover.ts'
import type { RequestOf } from '../../../shared/mesh/method.ts'
import { PARAM_WIRE_NAMES, type GenerationParam } from '../../../shared/protocol/chat.ts'
import { GatewayProtocol, type InferResult } from '../../../shared/protocol/gateway.ts'
import type { TokenChunk } from '../../../shared/protocol/inference.ts'
import { cancelOnHangUp } from '../hang-up.ts'
import { EventStream } from '../sse.ts'
import { traceparentOf } from '../tracing.ts'
import { cacheHeaders, cacheRequestField } from '../cache-routes.ts'
import { partKey } from './request.ts'

// Running a generation through the gateway for any API shape (chat completions, completions, and
// whatever else translates onto the mesh's chat request): one gateway request per choice (so `n`
// choices are billed as n requests), whole or as Server-Sent Events. Nothing is written until the
// gateway has accepted a choice (its first frame or its answer), so a bad key, a limit or an unknown
// model is a proper HTTP error; after that, a failure ends the event stream with an error event.
// Parameters the backend ignores (the gateway says which) and OpenAI-only ones the mesh does not act
// on are listed in the x-hyperinfer-ignored-params header.

export type InferBody = Omit<RequestOf<typeof GatewayProtocol.infer>, 'apiKey' | 'stream' | 'traceId'>

export const IGNORED_HEADER = 'x-hyperinfer-ignored-params'
const IDLE_TIMEOUT_MS = 60_000

/** One event, several (an array, sent in order), or none (null). */
export type Events = unknown | unknown[] | null

/** An event a shape encoded itself, sent as this SSE text (the frequent token frames skip JSON.stringify of a whole object). */
export class SseText {
  readonly text: string
  constructor (text: string) { this.text = text }
}

export interface EventShape {
  /** the event for one frame of choice `index`; `first`: the choice's first frame */
  frame (index: number, chunk: TokenChunk, first: boolean): Events
  /** the event that closes choice `index` */
  finish (index: number, result: InferResult): Events
  /** the closing usage event (stream_options.include_usage) */
  usage (results: InferResult[]): Events
  /** the events that open the stream, once the gateway has accepted the request (default: none) */
  begin?: () => Events
  /** one event as SSE text (default: `data: <json>`) */
  encode?: (event: unknown) => string
  /** what ends the stream (default: `data: [DONE]`) */
  done?: string
  /** the event that reports a failure after the stream began (default: an OpenAI error object) */
  error?: (err: MeshError) => unknown
}

export interface Generation {
  gateway: () => GatewayCaller
  rpcTimeoutMs: number
  apiKey: string
  choices: InferBody[]
  /** OpenAI parameters given that nothing acts on, already in the API's names */
  unused: string[]
  /** the Idempotency-Key header: a client that hangs up then leaves the answer running for its retry */
  idempotencyKey?: string | undefined
}

/** The gateway's names of ignored parameters in the API's, with the route's own unused ones. */
function ignoredHeader (results: Array<Pick<InferResult, 'ignored'>>, unused: string[]): string | null {
  const names = new Set(unused)
  for (const r of results) for (const p of r.ignored ?? []) names.add(PARAM_WIRE_NAMES[p as GenerationParam] ?? p)
  return names.size ? [...names].join(', ') : null
}

/** Answer with every choice whole: `body` shapes them into the response object. */
export async function generateWhole (req: FastifyRequest, reply: FastifyReply, g: Generation, body: (results: InferResult[]) => unknown): Promise<void> {
  // a client that hangs up cancels every choice (with an Idempotency-Key the answer runs on for its retry)
  const { cancel, detach } = cancelOnHangUp(reply, g.idempotencyKey !== undefined)
  try {
    // one choice failing stops the others
    const results = await Promise.all(g.choices.map((choice, index) => g.gateway().stream(GatewayProtocol.infer,
      { ...choice, apiKey: g.apiKey, stream: false, traceId: String(req.id), ...cacheRequestField(req), ...partKey(g.idempotencyKey, index), clientIp: req.ip },
      { onChunk () {}, signal: cancel, idleTimeout: IDLE_TIMEOUT_MS, connectTimeout: g.rpcTimeoutMs, traceparent: traceparentOf(req) }
    ).catch((err: unknown) => { cancel.abort(); throw err })))
    const ignored = ignoredHeader(results, g.unused)
    if (ignored) reply.header(IGNORED_HEADER, ignored)
    reply.headers(cacheHeaders(results)).send(body(results))
  } finally {
    detach()
  }
}

/** Answer with every choice as Server-Sent Events, interleaved as their frames come. */
export async function generateStream (req: FastifyRequest, reply: FastifyReply, g: Generation, shape: EventShape, includeUsage: boolean): Promise<void> {
  // a client that hangs up cancels every choice all the way to the backend
  // (with an Idempotency-Key the answer runs on for the client's retry, which gets it whole)
  const { cancel, detach } = cancelOnHangUp(reply, g.idempotencyKey !== undefined)
  let ignored: string[] = []
  let events: EventStream | null = null
  const start = (first?: TokenChunk): EventStream => {
    if (events) return events
    reply.hijack()
    const header = ignoredHeader([{ ignored }], g.unused)
    events = new EventStream(reply.raw, {
      ...(reply.getHeaders() as Record<string, string>), 'x-request-id': String(req.id), ...(header ? { [IGNORED_HEADER]: header } : {}), ...cacheHeaders([first ?? {}])
    })
    events.open()
    const ev = events
    send(shape.begin?.() ?? null)
    return ev
  }
  const encode = shape.encode ?? ((obj: unknown) => `data: ${JSON.stringify(obj)}\n\n`)
  const send = (ev: Events): void => {
    if (Array.isArray(ev)) { for (const e of ev) send(e); return }
    if (ev !== null && ev !== undefined) start().write(ev instanceof SseText ? ev.text : encode(ev))
  }
  try {
    const results = await Promise.all(g.choices.map(async (choice, index) => {
      let first = true
      try {
        const r = await g.gateway().stream(GatewayProtocol.infer, { ...choice, apiKey: g.apiKey, stream: true, traceId: String(req.id), ...cacheRequestField(req), ...partKey(g.idempotencyKey, index), clientIp: req.ip }, {
          signal: cancel,
          idleTimeout: IDLE_TIMEOUT_MS,
          connectTimeout: g.rpcTimeoutMs,
          traceparent: traceparentOf(req),
          onChunk: (c) => {
            // the gateway's word on ignored parameters comes before the first token
            if (c.ignored) { if (!events) ignored = c.ignored; return }
            start(c)
            send(shape.frame(index, c, first))
            first = false
          }
        })
        send(shape.finish(index, r))
        return r
      } catch (err) {
        cancel.abort()
        throw err
      }
    }))
    if (includeUsage) send(shape.usage(results))
    start().end(shape.done ?? 'data: [DONE]\n\n')
  } catch (err) {
    if (!events) throw err // nothing sent yet: a normal HTTP error response
    // the caller left: there is no one to tell
    if (reply.raw.writableEnded || reply.raw.destroyed) return
    const e = err instanceof MeshError ? err : MeshError.INTERNAL()
    const safe = e.code === 'INTERNAL' ? MeshError.INTERNAL('internal error') : e
    send(shape.error ? shape.error(safe) : { error: { message: safe.reason, type: 'server_error', code: safe.code } })
    start().end()
  } finally {
    // a choice that failed has cancelled the others already; an answer that ended needs no cancelling
    detach()
  }
}
