import { MeshError } from '../errors.ts'
import type { Bootstrap } from '../mesh/dht.ts'
import type { ModelListing, Quota } from '../protocol/gateway.ts'
import type { UsageReceipt } from '../receipt.ts'
import type { ChatMessage, Usage } from '../protocol/inference.ts'
import type { FinishReason, GenerationRequest, ResponseFormat, TokenLogprob, ToolCall, ToolChoice, ToolDefinition } from '../protocol/chat.ts'
import { HttpTransport } from './http-transport.ts'
import { RpcTransport } from './rpc-transport.ts'
import { checkCompare, type CompareEntry, type CompareOptions, type CompareRequest, type CompareResult } from './compare.ts'

// hyperinfer/sdk: one client, two transports. `{ gateway }` speaks RPC straight to a gateway over
// the DHT; `{ baseUrl }` speaks the web service's OpenAI-compatible HTTP routes. Both give the same
// results and fail with the same MeshError codes, so callers branch on `err.code` whatever the wire.
//
//   const ai = new AIInferenceClient({ apiKey, gateway: '…64 hex…', bootstrap: 'host:port' })
//   const r = await ai.inference({ prompt: 'hi', maxTokens: 16 })
//   const s = ai.stream({ prompt: 'hi' })
//   for await (const delta of s) process.stdout.write(delta)
//   const { usage } = await s.result
//   await ai.close()

export { MeshError, ErrorCodes, isMeshError } from '../errors.ts'
export type { ChatMessage, FinishReason, Quota, ResponseFormat, TokenLogprob, ToolCall, ToolChoice, ToolDefinition, Usage }
export { GatewayConnection, type GatewayConnectionOptions } from './rpc-transport.ts'
export type { CompareEntry, CompareOptions, CompareRequest, CompareResult, UsageReceipt }
export { verifyReceipt } from '../receipt.ts'
export { MAX_COMPARE_MODELS } from '../compare.ts'

/**
 * A request: a prompt or messages, and any generation field of the mesh's chat request
 * (shared/protocol/chat.ts): tools, toolChoice, parallelToolCalls, responseFormat, maxTokens,
 * temperature, topP, seed, penalties, logitBias, logprobs, topLogprobs, stop, user.
 */
export type InferenceRequest = Partial<Omit<GenerationRequest, 'messages'>> & {
  /** give exactly one of prompt and messages; a prompt is one user message */
  prompt?: string
  messages?: ChatMessage[]
  /** over RPC the gateway picks its default model when omitted; over HTTP see HttpTransport */
  model?: string
  /** the response cache (RPC): true caches even a non-deterministic request; 'no-store' keeps it out */
  cache?: boolean | 'no-store'
  /**
   * the request's idempotency key (made for you when omitted): the SDK retries with it when the
   * connection is lost, and the gateway answers the retry from the first attempt, charged once
   */
  requestId?: string
}

export interface InferenceResult {
  id: string
  /** the gateway's id of the request: what receipt() takes (over RPC the same as `id`; over HTTP `id` is the web's chatcmpl- id) */
  requestId?: string
  model: string
  text: string
  /** the tool calls the answer made (finishReason 'tool_calls'); streamed ones are collected here too */
  toolCalls?: ToolCall[]
  /** each token's log probability, when the request asked for them */
  logprobs?: TokenLogprob[]
  /** the request's parameters the serving backend does not honour (the mesh's names) */
  ignored?: string[]
  usage: Usage
  finishReason: FinishReason
  /** hex key of the worker that served the request (RPC only) */
  worker?: string
  /** gateway-measured time to first token and total time (RPC only) */
  ttftMs?: number | null
  durationMs?: number
  /** answered from the response cache (RPC) */
  cached?: true
  /** what the request was charged, USD (RPC only) */
  costUsd?: number
}

/** A model the mesh serves: the gateway's listing, of which HTTP gives only the id and backend (no worker count). */
export type ModelSummary = Pick<ModelListing, 'id'> & Partial<Pick<ModelListing, 'backend' | 'workers' | 'contextLength'>>

interface CommonOptions {
  /** the API key requests are made with; may be empty when only models() is used */
  apiKey: string
  /** a request fails with TIMEOUT when no data arrives for this long (default 60000) */
  timeoutMs?: number
}
/**
 * `gateway`: one key, or several (an array or comma-separated): a request that fails before its first
 * token goes to the next. `retries`: how often a request is sent again (same requestId) after the
 * connection was lost (default 3)
 */
export type RpcClientOptions = CommonOptions & { gateway: string | string[], bootstrap?: string | Bootstrap, connectTimeoutMs?: number, retries?: number }
export type HttpClientOptions = CommonOptions & { baseUrl: string }
export type AIInferenceClientOptions = RpcClientOptions | HttpClientOptions

/** What a transport provides; the client adds request checks, error normalisation and the stream object. */
export interface Transport {
  readonly kind: 'rpc' | 'http'
  inference (req: InferenceRequest, signal?: AbortSignal): Promise<InferenceResult>
  /** calls onDelta with each non-empty text delta in order; the result's text is all of them joined */
  stream (req: InferenceRequest, onDelta: (text: string) => void, signal: AbortSignal): Promise<InferenceResult>
  /** every model's request at once; never rejects for one model's failure (that is in its entry) */
  compare (req: CompareRequest, opts: CompareOptions): Promise<CompareResult>
  models (): Promise<ModelSummary[]>
  quota (): Promise<Quota>
  receipt (id: string): Promise<UsageReceipt>
  close (): Promise<void>
}

export class AIInferenceClient {
  readonly transport: 'rpc' | 'http'
  private readonly t: Transport
  private readonly apiKey: string

  constructor (opts: AIInferenceClientOptions) {
    const timeoutMs = opts.timeoutMs ?? 60_000
    this.apiKey = opts.apiKey
    this.t = 'baseUrl' in opts
      ? new HttpTransport({ baseUrl: opts.baseUrl, apiKey: opts.apiKey, timeoutMs })
      : new RpcTransport({ gateway: opts.gateway, bootstrap: opts.bootstrap, connectTimeoutMs: opts.connectTimeoutMs, apiKey: opts.apiKey, timeoutMs, retries: opts.retries })
    this.transport = this.t.kind
  }

  /** One whole answer. Aborting `signal` cancels it upstream and rejects with CANCELLED. */
  inference (req: InferenceRequest, opts: { signal?: AbortSignal } = {}): Promise<InferenceResult> {
    return meshErrors(() => this.t.inference(this.check(req), opts.signal))
  }

  /**
   * The answer as text deltas, in order. Breaking out of the loop or aborting `signal` cancels the
   * request upstream; `result` then rejects with CANCELLED. The request starts at once, and deltas
   * that arrive before the loop reads them are buffered.
   */
  stream (req: InferenceRequest, opts: { signal?: AbortSignal } = {}): InferenceStream {
    return new InferenceStream((onDelta, signal) => meshErrors(() => this.t.stream(this.check(req), onDelta, signal)), opts.signal)
  }

  /**
   * One prompt to several models at once, each its own request (own id, limits and charge). Resolves
   * with one entry per model, in order, once all are done; a model that failed has `error` set and
   * the others are unaffected. `onDelta` gets each model's text as it streams, `onResult` each entry
   * as its model ends. A bad key rejects the whole comparison; aborting `signal` cancels every model.
   */
  compare (req: CompareRequest, opts: CompareOptions = {}): Promise<CompareResult> {
    return meshErrors(() => { this.requireKey(); return this.t.compare(checkCompare(req), opts) })
  }

  models (): Promise<ModelSummary[]> {
    return meshErrors(() => this.t.models())
  }

  /**
   * The signed usage receipt of one of this account's requests, by its gateway request id
   * (`result.requestId`): the worker's signed claim and the gateway's countersignature, which
   * `verifyReceipt` (or `hyperinfer receipts verify`) checks offline. Another account's, or a request
   * whose worker signed none, is NOT_FOUND.
   */
  receipt (id: string): Promise<UsageReceipt> {
    return meshErrors(() => {
      this.requireKey()
      if (typeof id !== 'string' || !/^[\x21-\x7e]{1,100}$/.test(id)) throw MeshError.BAD_REQUEST('a request id is 1 to 100 printable characters')
      return this.t.receipt(id)
    })
  }

  /** The API key's hourly limit and use (RPC only: over HTTP this fails with UNSUPPORTED). */
  quota (): Promise<Quota> {
    return meshErrors(() => { this.requireKey(); return this.t.quota() })
  }

  close (): Promise<void> { return this.t.close() }

  private requireKey (): void {
    if (!this.apiKey) throw MeshError.INVALID_API_KEY('no API key given')
  }

  // the same checks on both transports, so a bad request fails the same way whatever the wire
  private check (req: InferenceRequest): InferenceRequest {
    this.requireKey()
    if (!req || typeof req !== 'object') throw MeshError.BAD_REQUEST('the request must be an object')
    if ((req.prompt === undefined) === (req.messages === undefined)) throw MeshError.BAD_REQUEST('give exactly one of prompt or messages')
    return req
  }
}

/** An answer in progress: async-iterable text deltas, then `result`. Iterable once. */
export class InferenceStream implements AsyncIterable<string> {
  /** the final result (text = all deltas); rejects with the stream's MeshError, CANCELLED when stopped early */
  readonly result: Promise<InferenceResult>
  private readonly ac = new AbortController()
  private readonly queue: string[] = []
  private ended = false
  private failure: MeshError | null = null
  private wake: (() => void) | null = null
  private iterated = false

  constructor (run: (onDelta: (text: string) => void, signal: AbortSignal) => Promise<InferenceResult>, signal?: AbortSignal) {
    if (signal?.aborted) this.cancel()
    else signal?.addEventListener('abort', () => this.cancel(), { once: true })
    this.result = run((text) => {
      if (this.ac.signal.aborted) return
      this.queue.push(text)
      this.notify()
    }, this.ac.signal).then((res) => {
      this.ended = true
      this.notify()
      return res
    }, (err: unknown) => {
      this.failure = toMeshError(err)
      this.ended = true
      this.notify()
      throw this.failure
    })
    // a caller who only iterates must not get an unhandled rejection; awaiting `result` still throws
    this.result.catch(() => {})
  }

  /** Stop the request upstream. Undelivered deltas are dropped; the loop then throws CANCELLED. */
  cancel (): void {
    if (this.ended || this.ac.signal.aborted) return
    this.queue.length = 0
    this.ac.abort()
  }

  private notify (): void {
    const wake = this.wake
    this.wake = null
    wake?.()
  }

  [Symbol.asyncIterator] (): AsyncIterator<string> {
    if (this.iterated) throw MeshError.BAD_REQUEST('an inference stream can be iterated only once')
    this.iterated = true
    return {
      next: async (): Promise<IteratorResult<string>> => {
        for (;;) {
          // deltas that arrived before a failure are still delivered, then the failure is thrown
          if (this.queue.length > 0) return { value: this.queue.shift()!, done: false }
          if (this.failure) throw this.failure
          if (this.ended) return { value: undefined, done: true }
          await new Promise<void>((resolve) => { this.wake = resolve })
        }
      },
      // `break`, `return` or a throw in the loop body: the caller has stopped listening
      return: async (): Promise<IteratorResult<string>> => {
        this.cancel()
        return { value: undefined, done: true }
      }
    }
  }
}

function toMeshError (err: unknown): MeshError {
  return err instanceof MeshError ? err : MeshError.INTERNAL((err as Error)?.message ?? String(err))
}

/** Run `fn` so that anything it throws, synchronously or not, arrives as a MeshError. */
async function meshErrors<T> (fn: () => Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (err) {
    throw toMeshError(err)
  }
}
