import OpenAI from 'openai'
import { AIInferenceClient, MeshError } from '../../shared/sdk/index.ts'

// Steady mixed load, as users make it: whole and streamed answers, over RPC (the SDK, failing over
// between the gateways) and over HTTP (the official `openai` client against the web service), from
// several keys. Every request's fate is recorded: answered, refused by a limit, failed before its
// first token, cut after it with an explicit error, or — what must never happen — ended silently
// short (a stream that stops without an error and without its whole answer).

export type Fate = 'ok' | 'refused' | 'failed-before-first-token' | 'cut-explicit' | 'cut-silent'

export interface Outcome {
  via: 'rpc' | 'http'
  stream: boolean
  key: string
  start: number
  end: number
  firstTokenAt: number | null
  fate: Fate
  code?: string
  /** the error's message, for the report of what failed and why */
  message?: string
  tokens: number
  /** how the request shows in request_logs: its id (RPC) or its trace id (HTTP's x-request-id) */
  id?: string
  trace?: string
}

export interface LoadKey { name: string, key: string }

export interface LoadOptions {
  gateways: string[]
  bootstrap: string
  webUrl: string
  keys: LoadKey[]
  model: string
  /** completion tokens each request asks for; the synthetic backend answers exactly that many */
  maxTokens: number
  /** concurrent loops per transport */
  concurrency: number
  /** pause between one loop's requests, ms */
  pauseMs?: number
  /** the `openai` client's retries of a request that got no answer (default 2, the client's own) */
  httpRetries?: number
}

/** Refusals by a limit or the account: the caller's business, not a fault of the mesh. */
const REFUSALS = new Set(['RATE_LIMITED', 'QUOTA_EXCEEDED', 'INSUFFICIENT_CREDITS', 'BUDGET_EXCEEDED'])
const HTTP_REFUSALS = new Set([402, 429])

export class Load {
  outcomes: Outcome[] = []
  private readonly opts: LoadOptions
  private readonly rpc: AIInferenceClient[]
  private readonly http: OpenAI[]
  private stopping = false
  private loops: Promise<void>[] = []

  constructor (opts: LoadOptions) {
    this.opts = opts
    this.rpc = opts.keys.map((k) => new AIInferenceClient({ apiKey: k.key, gateway: opts.gateways, bootstrap: opts.bootstrap, timeoutMs: 30_000, connectTimeoutMs: 15_000 }))
    // the client's own retries (connection errors, 5xx before any byte) are what HTTP users have
    this.http = opts.keys.map((k) => new OpenAI({ apiKey: k.key, baseURL: opts.webUrl + '/v1', maxRetries: opts.httpRetries ?? 2, timeout: 60_000 }))
  }

  start (): void {
    this.stopping = false
    for (let i = 0; i < this.opts.concurrency; i++) {
      this.loops.push(this.loop(i, 'rpc'), this.loop(i, 'http'))
    }
  }

  /** Stop the loops (each finishes its request); returns what they did since they started. */
  async pause (): Promise<Outcome[]> {
    this.stopping = true
    await Promise.all(this.loops)
    this.loops = []
    const done = this.outcomes
    this.outcomes = []
    return done
  }

  async close (): Promise<void> {
    await this.pause()
    await Promise.all(this.rpc.map((c) => c.close()))
  }

  private async loop (i: number, via: 'rpc' | 'http'): Promise<void> {
    for (let n = 0; !this.stopping; n++) {
      const k = (i + n) % this.opts.keys.length
      const stream = (i + n) % 2 === 0
      const o = via === 'rpc' ? await this.viaRpc(k, stream, `${i}.${n}`) : await this.viaHttp(k, stream, `${i}.${n}`)
      this.outcomes.push(o)
      if (o.fate !== 'ok') await sleep(200) // a refused or failed caller does not hammer
      else if (this.opts.pauseMs) await sleep(this.opts.pauseMs)
    }
  }

  private async viaRpc (k: number, stream: boolean, tag: string): Promise<Outcome> {
    const o: Outcome = { via: 'rpc', stream, key: this.opts.keys[k]!.name, start: Date.now(), end: 0, firstTokenAt: null, fate: 'ok', tokens: 0 }
    const req = { model: this.opts.model, prompt: `chaos ${tag}`, maxTokens: this.opts.maxTokens }
    try {
      if (stream) {
        const s = this.rpc[k]!.stream(req)
        for await (const _ of s) { o.firstTokenAt ??= Date.now() }
        const r = await s.result
        o.tokens = r.usage.completionTokens
        o.id = r.id
      } else {
        const r = await this.rpc[k]!.inference(req)
        o.firstTokenAt = Date.now()
        o.tokens = r.usage.completionTokens
        o.id = r.id
      }
      // an answer that ended without an error must be whole
      if (o.tokens < this.opts.maxTokens) o.fate = 'cut-silent'
    } catch (err) {
      o.code = err instanceof MeshError ? err.code : String((err as Error)?.message ?? err)
      o.message = String((err as Error)?.message ?? err)
      o.fate = REFUSALS.has(o.code) ? 'refused' : o.firstTokenAt === null ? 'failed-before-first-token' : 'cut-explicit'
    }
    o.end = Date.now()
    return o
  }

  private async viaHttp (k: number, stream: boolean, tag: string): Promise<Outcome> {
    const o: Outcome = { via: 'http', stream, key: this.opts.keys[k]!.name, start: Date.now(), end: 0, firstTokenAt: null, fate: 'ok', tokens: 0 }
    const body = { model: this.opts.model, messages: [{ role: 'user' as const, content: `chaos ${tag}` }], max_tokens: this.opts.maxTokens }
    try {
      if (stream) {
        const { data: s, response } = await this.http[k]!.chat.completions.create({ ...body, stream: true, stream_options: { include_usage: true } }).withResponse()
        o.trace = response.headers.get('x-request-id') ?? undefined
        let finished = false
        let usage = 0
        for await (const chunk of s) {
          if (chunk.choices[0]?.delta?.content) o.firstTokenAt ??= Date.now()
          if (chunk.choices[0]?.finish_reason) finished = true
          if (chunk.usage) usage = chunk.usage.completion_tokens
        }
        o.tokens = usage
        // the client ends its loop at [DONE] or at the end of the body: only a finish and the usage make it whole
        if (!finished || usage < this.opts.maxTokens) o.fate = 'cut-silent'
      } else {
        const { data: r, response } = await this.http[k]!.chat.completions.create(body).withResponse()
        o.trace = response.headers.get('x-request-id') ?? undefined
        o.firstTokenAt = Date.now()
        o.tokens = r.usage?.completion_tokens ?? 0
        if (o.tokens < this.opts.maxTokens) o.fate = 'cut-silent'
      }
    } catch (err) {
      const e = err as { status?: number, code?: string, error?: { code?: string }, message?: string }
      o.code = String(e.code ?? e.error?.code ?? e.status ?? e.message)
      o.message = String(e.message ?? err)
      o.fate = (e.status && HTTP_REFUSALS.has(e.status)) || REFUSALS.has(o.code) ? 'refused' : o.firstTokenAt === null ? 'failed-before-first-token' : 'cut-explicit'
    }
    o.end = Date.now()
    return o
  }
}

export function sleep (ms: number): Promise<void> { return new Promise((resolve) => setTimeout(resolve, ms)) }

/** Counts of the outcomes that started in [from, to). */
export function tally (outcomes: Outcome[], from: number, to: number): Record<Fate, number> & { requests: number } {
  const t = { requests: 0, ok: 0, refused: 0, 'failed-before-first-token': 0, 'cut-explicit': 0, 'cut-silent': 0 }
  for (const o of outcomes) {
    if (o.start < from || o.start >= to) continue
    t.requests++
    t[o.fate]++
  }
  return t
}
