import { MeshError, isErrorCode, type ErrorCode } from '../errors.ts'
import type { Quota } from '../protocol/gateway.ts'
import type { UsageReceipt } from '../receipt.ts'
import type { InferenceRequest, InferenceResult, ModelSummary, Transport } from './index.ts'
import type { TokenLogprob, ToolCall } from '../protocol/chat.ts'
import { ignoredOf, logprobsOf, openAIBody, openAIMessage, toolCallsOf, type WireToolCall } from './openai-body.ts'
import { ToolCallCollector } from './tool-calls.ts'
import { compareResult, entryOfWire, type CompareEntry, type CompareOptions, type CompareRequest, type CompareResult, type WireCompareResult } from './compare.ts'

// The SDK over the web service's OpenAI-compatible routes, with nothing but global fetch. The web
// service answers errors as `{ error: { message, type, code } }` with the mesh's code in `code`, so
// a failure here is the same MeshError the RPC transport gives. Differences from RPC, by design of
// the HTTP API: `model` is required (the route's schema demands it; the SDK says so before sending),
// results carry no worker or timings, models carry no worker count, and there is no quota route.

const STATUS_CODES: Record<number, ErrorCode> = {
  400: 'BAD_REQUEST', 401: 'INVALID_API_KEY', 403: 'FORBIDDEN', 404: 'NOT_FOUND', 409: 'CONFLICT', 413: 'PROMPT_TOO_LARGE',
  422: 'IDEMPOTENCY_KEY_MISMATCH', 429: 'RATE_LIMITED', 502: 'BACKEND_ERROR', 503: 'UNAVAILABLE', 504: 'TIMEOUT'
}

interface WireCompletion {
  id?: string
  model?: string
  choices?: Array<{
    message?: { content?: string | null, tool_calls?: WireToolCall[] | null }
    delta?: { content?: string | null, tool_calls?: WireToolCall[] | null }
    logprobs?: Parameters<typeof logprobsOf>[0]
    finish_reason?: string | null
  }>
  usage?: { prompt_tokens?: number, completion_tokens?: number } | null
  error?: { message?: string, code?: string | null, details?: unknown }
}

export class HttpTransport implements Transport {
  readonly kind = 'http' as const
  private readonly base: string
  private readonly apiKey: string
  private readonly timeoutMs: number
  private readonly pending = new Set<RequestControl>()

  constructor (opts: { baseUrl: string, apiKey: string, timeoutMs: number }) {
    try { new URL(opts.baseUrl) } catch { throw MeshError.BAD_REQUEST(`baseUrl '${opts.baseUrl}' is not a URL`) }
    this.base = opts.baseUrl.replace(/\/+$/, '')
    this.apiKey = opts.apiKey
    this.timeoutMs = opts.timeoutMs
  }

  async inference (req: InferenceRequest, signal?: AbortSignal): Promise<InferenceResult> {
    return this.withControl('chat completion', signal, async (ctl) => {
      const res = await this.fetch('POST', '/v1/chat/completions', ctl, body(req, false), req.requestId)
      const json = await res.json() as WireCompletion
      const choice = json.choices?.[0]
      if (typeof choice?.message?.content !== 'string' && choice?.message?.content !== null) throw MeshError.INTERNAL('malformed chat completion from the server')
      return extras(result(json.id, json.model, choice.message.content ?? '', json.usage, choice.finish_reason), toolCallsOf(choice.message.tool_calls), logprobsOf(choice.logprobs), res)
    })
  }

  async stream (req: InferenceRequest, onDelta: (text: string) => void, signal: AbortSignal): Promise<InferenceResult> {
    return this.withControl('chat completion stream', signal, async (ctl) => {
      const res = await this.fetch('POST', '/v1/chat/completions', ctl, body(req, true), req.requestId)
      if (!res.body) throw MeshError.INTERNAL('the server sent no event stream')
      let id: string | undefined
      let model: string | undefined
      let text = ''
      let finish: string | null | undefined
      let usage: WireCompletion['usage']
      const calls = new ToolCallCollector()
      const logprobs: TokenLogprob[] = []
      for await (const data of sseData(res.body, () => ctl.touch())) {
        if (data === '[DONE]') return extras(result(id, model, text, usage, finish), calls.calls.length ? calls.calls : undefined, req.logprobs ? logprobs : undefined, res)
        const chunk = JSON.parse(data) as WireCompletion
        // after the first token the status is sent: a later failure arrives as an error event
        if (chunk.error) throw wireError(chunk.error, 0, null)
        id ??= chunk.id
        model ??= chunk.model
        const choice = chunk.choices?.[0]
        const delta = choice?.delta?.content
        if (typeof delta === 'string' && delta) { text += delta; onDelta(delta) }
        for (const c of choice?.delta?.tool_calls ?? []) calls.add({ index: c.index ?? 0, id: c.id, name: c.function?.name, arguments: c.function?.arguments })
        logprobs.push(...logprobsOf(choice?.logprobs) ?? [])
        if (choice?.finish_reason) finish = choice.finish_reason
        if (chunk.usage) usage = chunk.usage
      }
      throw MeshError.UNAVAILABLE('the event stream ended before [DONE]')
    })
  }

  async compare (req: CompareRequest, opts: CompareOptions): Promise<CompareResult> {
    return this.withControl('compare stream', opts.signal, async (ctl) => {
      const payload = {
        models: req.models, ...(req.messages ? { messages: req.messages.map(openAIMessage) } : { prompt: req.prompt }),
        max_tokens: req.maxTokens, temperature: req.temperature, top_p: req.topP, seed: req.seed, stop: req.stop, stream: true
      }
      const res = await this.fetch('POST', '/v1/compare', ctl, payload)
      if (!res.body) throw MeshError.INTERNAL('the server sent no event stream')
      const entries: CompareEntry[] = []
      for await (const data of sseData(res.body, () => ctl.touch())) {
        if (data === '[DONE]') return compareResult(entries)
        const ev = JSON.parse(data) as { type?: string, index?: number, text?: string, error?: WireCompletion['error'] } & Partial<WireCompareResult>
        if (ev.type === 'delta' && typeof ev.index === 'number' && ev.text) opts.onDelta?.(ev.index, ev.text)
        else if (ev.type === 'result') {
          const entry = entryOfWire(ev as WireCompareResult)
          entries.push(entry)
          opts.onResult?.(entry)
        } else if (!ev.type && ev.error) throw wireError(ev.error, 0, null)
      }
      throw MeshError.UNAVAILABLE('the event stream ended before [DONE]')
    })
  }

  async models (): Promise<ModelSummary[]> {
    return this.withControl('models', undefined, async (ctl) => {
      const res = await this.fetch('GET', '/v1/models', ctl)
      const json = await res.json() as { data?: Array<{ id: string, owned_by?: string }> }
      if (!Array.isArray(json.data)) throw MeshError.INTERNAL('malformed model list from the server')
      // the web service puts the backend in owned_by
      return json.data.map((m) => (m.owned_by ? { id: m.id, backend: m.owned_by } : { id: m.id }))
    })
  }

  async quota (): Promise<Quota> {
    throw new MeshError('UNSUPPORTED', 'quota() is not available over HTTP (the web service has no quota route); use the RPC transport')
  }

  async receipt (id: string): Promise<UsageReceipt> {
    return this.withControl('receipt', undefined, async (ctl) => {
      const res = await this.fetch('GET', '/v1/receipts/' + encodeURIComponent(id), ctl)
      return await res.json() as UsageReceipt
    })
  }

  async close (): Promise<void> {
    for (const ctl of this.pending) ctl.abort(MeshError.CANCELLED('client closed'))
  }

  private async withControl<T> (what: string, signal: AbortSignal | undefined, fn: (ctl: RequestControl) => Promise<T>): Promise<T> {
    const ctl = new RequestControl(what, this.timeoutMs, signal)
    this.pending.add(ctl)
    try {
      return await fn(ctl)
    } catch (err) {
      throw ctl.error(err, this.base)
    } finally {
      ctl.done()
      this.pending.delete(ctl)
    }
  }

  private async fetch (method: string, path: string, ctl: RequestControl, payload?: Record<string, unknown>, idempotencyKey?: string): Promise<Response> {
    const headers: Record<string, string> = { accept: payload?.stream ? 'text/event-stream' : 'application/json' }
    if (idempotencyKey) headers['idempotency-key'] = idempotencyKey
    if (this.apiKey) headers.authorization = `Bearer ${this.apiKey}`
    if (payload !== undefined) headers['content-type'] = 'application/json'
    const res = await fetch(this.base + path, { method, headers, body: payload === undefined ? undefined : JSON.stringify(payload), signal: ctl.signal })
    ctl.touch()
    if (!res.ok) {
      const json = await res.json().catch(() => null) as WireCompletion | null // a body that is not JSON: the error is built from the status
      throw wireError(json?.error ?? {}, res.status, res.headers.get('retry-after'))
    }
    return res
  }
}

function body (req: InferenceRequest, stream: boolean) {
  // the OpenAI route requires a model; refusing here names the cause instead of echoing a schema path
  if (!req.model) throw MeshError.BAD_REQUEST('model is required over HTTP (only the RPC transport lets the gateway pick its default)')
  return openAIBody(req, stream)
}

/** A result with what the answer carried beyond text. */
function extras (r: InferenceResult, toolCalls: ToolCall[] | undefined, logprobs: TokenLogprob[] | undefined, res: Response): InferenceResult {
  const ignored = ignoredOf(res.headers.get('x-hyperinfer-ignored-params'))
  const requestId = res.headers.get('x-hyperinfer-request-id')
  return { ...r, ...(requestId ? { requestId } : {}), ...(toolCalls ? { toolCalls } : {}), ...(logprobs ? { logprobs } : {}), ...(ignored ? { ignored } : {}) }
}

function result (id: string | undefined, model: string | undefined, text: string, usage: WireCompletion['usage'], finish: string | null | undefined): InferenceResult {
  if (!id || !model || typeof usage?.prompt_tokens !== 'number' || typeof usage.completion_tokens !== 'number') {
    throw MeshError.INTERNAL('the server\'s answer lacks its id, model or usage')
  }
  return {
    id, model, text,
    usage: { promptTokens: usage.prompt_tokens, completionTokens: usage.completion_tokens },
    finishReason: finish === 'length' || finish === 'cancelled' || finish === 'tool_calls' || finish === 'content_filter' ? finish : 'stop'
  }
}

/** An OpenAI-shaped error body as the MeshError it came from; the status decides when the code is missing or unknown. */
function wireError (e: NonNullable<WireCompletion['error']>, status: number, retryAfter: string | null): MeshError {
  // the OpenAI API's words for some codes are lower case (invalid_api_key, database_unavailable)
  const named = typeof e.code === 'string' ? e.code.toUpperCase() : null
  const code = isErrorCode(named) ? named : (STATUS_CODES[status] ?? (status >= 500 ? 'INTERNAL' : 'BAD_REQUEST'))
  const details: Record<string, unknown> = e.details && typeof e.details === 'object' ? { ...e.details as object } : {}
  if (status) details.status = status
  const retry = retryAfter === null ? NaN : Number(retryAfter)
  if (Number.isFinite(retry)) details.retryAfterSeconds = retry
  return new MeshError(code, typeof e.message === 'string' ? e.message : `HTTP ${status}`, details)
}

/** The `data` of each server-sent event (multi-line data joined with \n); other fields carry nothing we use. */
async function * sseData (stream: ReadableStream<Uint8Array>, onBytes: () => void): AsyncGenerator<string> {
  const decoder = new TextDecoder()
  let buf = ''
  let data: string[] = []
  for await (const bytes of stream) {
    onBytes()
    buf += decoder.decode(bytes, { stream: true })
    let i
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i).replace(/\r$/, '')
      buf = buf.slice(i + 1)
      if (line === '') {
        if (data.length) yield data.join('\n')
        data = []
      } else if (line.startsWith('data:')) {
        data.push(line.slice(line.startsWith('data: ') ? 6 : 5))
      }
    }
  }
  if (data.length) yield data.join('\n')
}

/**
 * One HTTP request's life: the caller's signal cancels it (CANCELLED), no bytes for `timeoutMs`
 * fails it (TIMEOUT). Both abort the fetch, which closes the connection, which the web service
 * turns into a cancel all the way to the worker.
 */
class RequestControl {
  private readonly ac = new AbortController()
  private timer: NodeJS.Timeout | null = null
  private readonly what: string
  private readonly timeoutMs: number
  private readonly outer?: AbortSignal
  private readonly onAbort = () => this.abort(MeshError.CANCELLED())

  constructor (what: string, timeoutMs: number, outer?: AbortSignal) {
    this.what = what
    this.timeoutMs = timeoutMs
    this.outer = outer
    if (outer?.aborted) this.onAbort()
    else outer?.addEventListener('abort', this.onAbort, { once: true })
    this.touch()
  }

  get signal (): AbortSignal { return this.ac.signal }

  touch (): void {
    if (this.timer) clearTimeout(this.timer)
    this.timer = setTimeout(() => this.abort(MeshError.TIMEOUT(`${this.what}: no data for ${this.timeoutMs} ms`)), this.timeoutMs)
  }

  abort (reason: MeshError): void {
    if (!this.ac.signal.aborted) this.ac.abort(reason)
  }

  /** What to throw for `err`: our own abort reason first, then the server's coded error, else the network's. */
  error (err: unknown, base: string): MeshError {
    const reason: unknown = this.ac.signal.reason
    if (this.ac.signal.aborted && reason instanceof MeshError) return reason
    if (err instanceof MeshError) return err
    if (err instanceof SyntaxError) return MeshError.INTERNAL(`malformed JSON from ${base}`)
    // undici reports a refused, reset or dropped connection as a TypeError with the socket error as cause
    if (err instanceof TypeError && err.cause) {
      const code = (err.cause as { code?: string }).code
      return MeshError.UNAVAILABLE(`${this.what} failed: ${base} is not reachable or closed the connection${code ? ` (${code})` : ''}`)
    }
    return MeshError.INTERNAL((err as Error)?.message ?? String(err))
  }

  done (): void {
    if (this.timer) clearTimeout(this.timer)
    this.outer?.removeEventListener('abort', this.onAbort)
  }
}
