import type { z } from 'zod'
import { GatewayProtocol } from '../../shared/protocol/gateway.ts'
import { AuthProtocol } from '../../shared/protocol/auth.ts'
import { chatCompletionSchema, completionSchema } from '../../services/web/openai/chat-schema.ts'
import { embeddingSchema } from '../../services/web/openai/embeddings.ts'
import { responsesSchema } from '../../services/web/openai/responses-schema.ts'
import { compareSchema } from '../../services/web/openai/compare.ts'
import { messagesSchema } from '../../services/web/anthropic/messages-schema.ts'
import { BODY_LIMIT } from '../../services/web/service.ts'
import { hostile, jsonSchemaOf, mutate, Rand, sample, type Known } from './mutate.ts'
import { Tally, type SecretScan } from './tally.ts'

// The HTTP half of the fuzzer: bent JSON bodies (and some that are not JSON at all, huge, or nested
// past any sane depth) at the web service's OpenAI and REST routes, with and without valid
// credentials. Every error must be an OpenAI error object (an Anthropic one on /v1/messages); a 5xx
// other than 503 is a failure.

/** `errors`: the shape its errors take (Anthropic's for /v1/messages; OpenAI's otherwise) */
interface Route { method: 'GET' | 'POST' | 'DELETE', path: (r: Rand) => string, auth: 'apiKey' | 'session' | 'x-api-key', schema?: z.ZodType, errors?: 'anthropic' }

export interface HttpSecrets { apiKey: string, session: string }

export class HttpFuzzer {
  readonly tally: Tally
  private readonly routes: Route[]

  constructor (private readonly baseUrl: string, private readonly creds: HttpSecrets, private readonly seed: number, scan: SecretScan, private readonly timeoutMs: number) {
    this.tally = new Tally('http', scan)
    const text = (r: Rand, max: number) => { const v = hostile(r); return (typeof v === 'string' ? v : JSON.stringify(v)).slice(0, max) }
    // every byte percent-encoded: encodeURIComponent throws on the lone surrogates hostile() makes
    const pct = (s: string) => Buffer.from(s).toString('hex').replace(/../g, '%$&')
    const seg = (r: Rand) => pct(text(r, 200))
    this.routes = [
      { method: 'POST', path: (r) => '/v1/chat/completions', auth: 'apiKey', schema: chatCompletionSchema },
      { method: 'POST', path: (r) => '/v1/completions', auth: 'apiKey', schema: completionSchema },
      { method: 'POST', path: (r) => '/v1/embeddings', auth: 'apiKey', schema: embeddingSchema },
      { method: 'POST', path: (r) => '/v1/responses', auth: 'apiKey', schema: responsesSchema },
      { method: 'POST', path: (r) => '/v1/messages', auth: 'x-api-key', schema: messagesSchema, errors: 'anthropic' },
      { method: 'POST', path: (r) => '/v1/ai/request', auth: 'apiKey', schema: GatewayProtocol.aiRequest.request },
      { method: 'POST', path: (r) => '/v1/compare', auth: 'apiKey', schema: compareSchema },
      { method: 'GET', path: (r) => '/v1/models', auth: 'apiKey' },
      { method: 'GET', path: (r) => '/v1/models/' + (r.chance(0.5) ? 'synthetic' : seg(r)), auth: 'apiKey' },
      { method: 'POST', path: (r) => '/api/auth/register', auth: 'session', schema: GatewayProtocol.register.request },
      { method: 'POST', path: (r) => '/api/auth/login', auth: 'session', schema: GatewayProtocol.login.request },
      { method: 'POST', path: (r) => '/api/auth/api-keys', auth: 'session', schema: AuthProtocol.generateApiKey.request },
      { method: 'GET', path: (r) => '/api/auth/api-keys', auth: 'session' },
      { method: 'DELETE', path: (r) => '/api/auth/api-keys/' + (r.chance(0.5) ? crypto.randomUUID() : seg(r)), auth: 'session' },
      { method: 'GET', path: (r) => '/api/usage' + (r.chance(0.7) ? '?days=' + pct(text(r, 100)) : ''), auth: 'session' },
      { method: 'POST', path: (r) => '/api/inference', auth: 'x-api-key', schema: GatewayProtocol.infer.request },
      { method: 'GET', path: (r) => '/api/models', auth: 'session' },
      { method: 'POST', path: (r) => '/api/' + seg(r), auth: 'session' }
    ]
  }

  private known (r: Rand): Known {
    return {
      model: () => r.chance(0.7) ? 'synthetic' : 'x',
      maxTokens: () => 1 + r.int(8),
      max_tokens: () => 1 + r.int(8),
      apiKey: () => this.creds.apiKey,
      token: () => this.creds.session
    }
  }

  private headers (route: Route, r: Rand): Record<string, string> {
    const h: Record<string, string> = {}
    const roll = r.int(4)
    if (roll === 3) return h // no credentials at all
    const secret = route.auth === 'session' ? this.creds.session : this.creds.apiKey
    const value = roll === 2 ? 'hi_' + 'z'.repeat(r.pick([5, 43, 300])) : secret
    if (route.auth === 'x-api-key') h['x-api-key'] = value
    else h.authorization = r.chance(0.9) ? `Bearer ${value}` : r.pick(['Bearer', 'Basic abc', `bearer  ${value}  `, 'Bearer ' + 'A'.repeat(9000)])
    return h
  }

  private body (route: Route, r: Rand): { body: string | undefined, type: string | null } {
    const json = 'application/json'
    const roll = r.next()
    if (roll < 0.05) return { body: r.pick(['{', 'not json', '{"a":1,}', '\u0000\u0001', '[1,2', 'null', '"x"', '1e999', '']), type: json }
    if (roll < 0.08) return { body: 'model=synthetic&x=1', type: r.pick(['application/x-www-form-urlencoded', 'text/plain', 'multipart/form-data; boundary=x', 'application/xml']) }
    if (roll < 0.09) return { body: '{"model":"' + 'A'.repeat(BODY_LIMIT + 10) + '"}', type: json }
    if (roll < 0.14) {
      const depth = r.pick([1000, 10_000, 200_000])
      return { body: r.chance(0.5) ? '['.repeat(depth) + ']'.repeat(depth) : '{"a":'.repeat(depth) + '1' + '}'.repeat(depth), type: json }
    }
    if (roll < 0.16) return { body: undefined, type: r.chance(0.5) ? json : null }
    const base = route.schema ? sample(jsonSchemaOf(route.schema), r, this.known(r)) : {}
    const value = r.chance(0.15) ? base : mutate(base, r)
    return { body: JSON.stringify(value), type: json }
  }

  /** Request number `i` (its own random stream), classified. */
  async request (i: number): Promise<void> {
    const r = new Rand(this.seed + i * 0x9e3779b1)
    const route = r.pick(this.routes)
    const path = route.path(r)
    const label = `${route.method} ${path.split('?')[0]!.slice(0, 60)}`
    const headers = this.headers(route, r)
    let body: string | undefined
    if (route.method !== 'GET') {
      const b = this.body(route, r)
      body = b.body
      if (b.type) headers['content-type'] = b.type
    }
    let status: number
    let text: string
    try {
      const res = await fetch(this.baseUrl + path, { method: route.method, headers, body, signal: AbortSignal.timeout(this.timeoutMs) })
      status = res.status
      text = await res.text()
    } catch (err) {
      const e = err as Error & { cause?: { code?: string } }
      if (e.name === 'TimeoutError') this.tally.count('timeout', label)
      // a body past the limit is answered (413) before it is read, and the socket closed under it
      else if ((body?.length ?? 0) > BODY_LIMIT) this.tally.count('dropped', label)
      else this.tally.count('failure', label, `network error ${e.cause?.code ?? e.message}`)
      return
    }
    this.tally.scan(text, label)
    if (status < 400) { this.tally.count('success', label); return }
    let err: { type?: unknown, error?: { message?: unknown, type?: unknown, code?: unknown } } | null = null
    try { err = JSON.parse(text) } catch {}
    // Anthropic's errors carry a type where OpenAI's carry a code
    const anthropic = route.errors === 'anthropic'
    const coded = !!err?.error && typeof err.error.message === 'string' && typeof err.error.type === 'string' &&
      (anthropic ? err.type === 'error' : typeof err.error.code === 'string')
    // a mesh call that outlived its deadline (a CPU-starved auth hashing passwords) is a timeout, as on RPC
    if (status === 504 && coded && (anthropic ? err!.error!.type === 'timeout_error' : err!.error!.code === 'TIMEOUT')) this.tally.count('timeout', label)
    else if (status >= 500 && status !== 503) this.tally.count('failure', label, `HTTP ${status}: ${text.slice(0, 200)}`)
    else if (!coded) this.tally.count('failure', label, `HTTP ${status} without an ${anthropic ? 'Anthropic' : 'OpenAI'} error object: ${text.slice(0, 200)}`)
    else this.tally.count('coded', label, `${status} ${String(anthropic ? err!.error!.type : err!.error!.code)}`)
  }
}
