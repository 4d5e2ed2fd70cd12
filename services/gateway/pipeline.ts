import crypto from 'node:crypto'
import { MeshError } from '../../shared/errors.ts'
import { sha256Hex } from '../../shared/apikey.ts'
import type { RequestOf } from '../../shared/mesh/method.ts'
import { Cancellation, type CancelSignal } from '../../shared/mesh/cancel.ts'
import type { Logger } from '../../shared/log.ts'
import type { ServiceMetrics } from '../../shared/metrics.ts'
import type { Span } from '../../shared/tracing/index.ts'
import type { GatewayProtocol, InferResult } from '../../shared/protocol/gateway.ts'
import type { ChatMessage, PromptResult, TokenChunk } from '../../shared/protocol/inference.ts'
import { generationParams, imageCount, promptTexts, type FinishReason, type GenerationRequest } from '../../shared/protocol/chat.ts'
import { ignoredParams } from '../inference/backends/table.ts'
import type { Admission } from './admission.ts'
import { isRetryable, type DispatchOutcome, type WorkerDispatch } from './dispatch.ts'
import { chargedPrompt, count, measurePrompt, plus, toUsd, type PromptMeasure } from './limits.ts'
import type { Listings } from './listings.ts'
import { RequestTrace } from './request-trace.ts'
import type { ResponseCache } from './cache/response-cache.ts'
import type { LearnedRouter } from './learned-router.ts'
import { route } from './router.ts'
import type { SafetyLayer } from './safety/layer.ts'
import type { Settler } from './settlement.ts'
import type { ReceiptDesk } from './receipts.ts'
import type { TokenPrice } from '../../shared/receipt.ts'
import { TokenStream, type TokenStreamOptions } from './token-stream.ts'
import { runEmbed, type EmbedRequest, type EmbedResponse } from './embed-pipeline.ts'

// One inference request, step by step: validate its shape and size → authenticate the key and
// permit the model (admission.ts) → the safety pre-check (safety/layer.ts; a refusal costs nothing)
// → count the prompt, only now → hold the worst case (admission.ts)
// → dispatch to a worker (dispatch.ts) → stream its tokens back through the output guard (token-stream.ts) → settle
// (settlement.ts), its worker's receipt checked first (receipts.ts). What a worker reports is clamped
// to what was held and delivered, and the caller is told exactly what was charged.
// Everything it uses comes in through PipelineDeps, so it runs the same on real workers and on fakes.

export type InferRequest = RequestOf<typeof GatewayProtocol.infer>

/** The caller of one request: its cancellation, where stream frames go, and its span when traced. */
export interface Caller {
  readonly signal: CancelSignal
  /** the caller's peer key, when it came over RPC */
  readonly remoteKey?: string
  emit (chunk: TokenChunk): void
  readonly span?: Span | undefined
}

export interface PipelineDeps {
  admission: Pick<Admission, 'authenticate' | 'permit' | 'hold' | 'hasDefaultModel'>
  dispatch: WorkerDispatch
  settler: Pick<Settler, 'settle'>
  listings: Pick<Listings, 'candidates' | 'firstToken' | 'measured' | 'describe'>
  metrics: ServiceMetrics
  /** the safety layer (safety/layer.ts): input pre-check and output moderation; none: no checks */
  safety?: Pick<SafetyLayer, 'admit' | 'checkKey'>
  maxPromptChars?: number
  /** the completion budget held (and enforced) for a request that names no maxTokens */
  defaultMaxTokens?: number
  /** the response cache (cache/); the `learned` strategy's bandit; where each request's outcome goes */
  cache?: Pick<ResponseCache, 'lookup'>
  learner?: LearnedRouter
  onOutcome?: (o: RequestOutcome) => void
  /** checks each worker's receipt (receipts.ts); none: receipts are not checked or kept */
  receipts?: Pick<ReceiptDesk, 'check'>
  /** where a failure of the bookkeeping done after an answer is reported */
  log?: Logger
}

/** How a request that reached a worker ended, for learned routing and demand forecasts. */
export interface RequestOutcome { id: string, user: string, trace: string | null, model: string, route: InferRequest['route'], ok: boolean, ttftMs: number | null, seconds: number, tokens: number, costNusd: number }

const FINISH_REASONS = new Set<unknown>(['stop', 'length', 'cancelled'])
/** prompt tokens held for each image: above what a high-detail image costs on the models that take them */
export const IMAGE_TOKENS = 1500
const GENERATION_KEYS = Object.keys(generationParams) as Array<keyof typeof generationParams>

/** Resolves once the event loop has polled for I/O again (what was written meanwhile has gone out). */
const afterNextPoll = () => new Promise<void>((resolve) => setImmediate(() => setImmediate(resolve)))

/** The generation fields of a request, only those it gives: what goes to the worker. */
function generation (req: InferRequest, messages: ChatMessage[]): GenerationRequest {
  const out: GenerationRequest = { messages }
  for (const k of GENERATION_KEYS) if (req[k] !== undefined) (out as Record<string, unknown>)[k] = req[k]
  return out
}

export class RequestPipeline {
  readonly deps: PipelineDeps
  private readonly metrics: ServiceMetrics

  constructor (deps: PipelineDeps) {
    this.deps = deps
    this.metrics = deps.metrics
  }

  async infer (req: InferRequest, caller: Caller): Promise<InferResult> {
    const trace = RequestTrace.start(caller, 'infer')
    try {
      const result = await this.runInfer(req, caller, trace)
      trace?.end()
      return result
    } catch (err) {
      trace?.end(err)
      throw err
    }
  }

  private async runInfer (req: InferRequest, caller: Caller, trace: RequestTrace | null): Promise<InferResult> {
    const started = Date.now()
    const messages: ChatMessage[] = req.messages ?? [{ role: 'user', content: req.prompt ?? '' }]
    const request = generation(req, messages)
    const texts = promptTexts(request)
    this.checkSize(texts)
    const { admission } = this.deps
    // a stranger's request costs a key lookup and nothing more: counting the prompt comes after
    trace?.next('admission.authenticate')
    const identity = await admission.authenticate(req.apiKey)
    trace?.next('routing')
    const { requested, chosen } = this.chooseModel(req)
    const model = admission.permit(identity, requested)
    const ignored = this.checkCapabilities(model, request)
    const id = crypto.randomUUID()
    // the safety pre-check: a refusal costs nothing; a redaction changes what the worker sees
    const guard = await this.deps.safety?.admit(identity, { id, model, messages: request.messages, caller, ...(req.clientIp ? { clientIp: req.clientIp } : {}) }) ?? null
    if (guard) request.messages = guard.messages
    // the cache answers what the worker would see: a prompt the safety layer changed is neither looked up nor kept
    const cached = guard?.changed ? null : await this.deps.cache?.lookup(req, messages, model, identity, caller, { id, guard: guard?.output ?? null })
    if (cached?.result) return cached.result
    trace?.next('admission.hold', { 'hyperinfer.model': model, 'hyperinfer.routing.strategy': chosen.strategy })
    const prompt = plus(await measurePrompt(texts), imageCount(request) * IMAGE_TOKENS)
    if (caller.signal.aborted) throw MeshError.CANCELLED('the caller cancelled the request')
    const ceiling = req.maxTokens ?? this.deps.defaultMaxTokens ?? 1024
    trace?.set('hyperinfer.request_id', id)
    await admission.hold(identity, model, {
      id, kind: 'chat', promptHold: prompt.hold, completionTokens: ceiling, trace: req.traceId ?? trace?.traceId ?? null, promptHash: sha256Hex(req.prompt ?? JSON.stringify(messages))
    })
    // a streaming caller hears of ignored parameters before the first token (the web sends it as a header)
    if (req.stream && ignored.length > 0) caller.emit({ text: '', ignored })
    trace?.next('dispatch', undefined, 'client')
    const streamed = await this.stream({ requestId: id, model, ...request }, ceiling, req.stream === true, caller, trace, guard?.output ?? null, chosen.strategy === 'cost')
    const { tokens, price } = streamed
    let { out } = streamed
    // a worker that says it was cancelled when neither the caller nor the gateway stopped it cut the answer short
    if (out.ok && out.value?.finishReason === 'cancelled' && !tokens.truncated && !caller.signal.aborted) {
      out = { ok: false, err: MeshError.BACKEND_ERROR('the worker stopped before the answer was complete'), worker: out.worker, attempts: out.attempts }
    }
    trace?.note({ 'hyperinfer.worker': out.worker?.slice(0, 16), 'hyperinfer.attempts': out.attempts, 'error.type': out.ok ? null : (out.err as MeshError)?.code })
    trace?.next('settlement')

    const worker = out.worker
    const ttftMs = tokens.firstTokenAt === null ? null : tokens.firstTokenAt - started
    if (!out.ok && !tokens.truncated) {
      const err = out.err instanceof MeshError ? out.err : MeshError.INTERNAL()
      const cancelled = caller.signal.aborted
      // a stream cut short is billed for what it delivered; a whole answer that failed delivered nothing
      const billed = req.stream ? tokens.delivered : 0
      this.metrics.observeInference(model, (Date.now() - started) / 1000)
      // the model's error rate in the registry counts what its workers got wrong, not the caller's cancel
      if (!cancelled && isRetryable(err.code)) {
        this.deps.listings.measured(model, { ttftMs: ttftMs ?? 0, latencyMs: Date.now() - started, ok: false })
        this.deps.onOutcome?.({ id, user: identity.userId, trace: req.traceId ?? null, model, route: req.route, ok: false, ttftMs, seconds: (Date.now() - started) / 1000, tokens: 0, costNusd: 0 })
      }
      await this.deps.settler.settle({
        id, model, status: cancelled ? 'cancelled' : 'failed', worker, tokensIn: billed > 0 ? await chargedPrompt(null, prompt) : 0, tokensOut: billed, started, ttftMs,
        error: cancelled ? { code: 'CANCELLED', message: 'the caller cancelled the request' } : { code: err.code, message: err.message }
      })
      throw err
    }
    const usage = await this.usage(out, tokens, prompt, ceiling)
    const receipt = this.deps.receipts?.check(out.ok ? out.value?.receipt : null, { requestId: id, model, worker: worker!, price, outputSha256: tokens.receivedSha256() }) ?? null
    if (receipt && !receipt.ok) {
      // refused at settlement: billed nothing, recorded as disputed, the caller told why
      const error = MeshError.RECEIPT_DISPUTED(receipt.reason)
      await this.deps.settler.settle({ id, model, status: 'failed', worker, tokensIn: 0, tokensOut: 0, started, ttftMs, error: error.toWire(), dispute: receipt })
      throw error
    }
    const cost = await this.deps.settler.settle({
      id, model, status: 'success', worker, tokensIn: usage.promptTokens, tokensOut: usage.completionTokens, started, ttftMs, error: null, price, receipt: receipt?.receipt ?? null
    })
    const reported = out.ok && FINISH_REASONS.has(out.value?.finishReason) ? out.value.finishReason : 'stop'
    // tool calls are what the answer ended on, unless it was cut short; a worker's word alone makes none
    const finishReason: FinishReason = tokens.filtered ? 'content_filter' : tokens.truncated || reported === 'length' ? 'length' : tokens.calls > 0 ? 'tool_calls' : reported
    const ended = Date.now()
    const bookkeep = (fn: () => void) => { try { fn() } catch (err) { this.deps.log?.error({ err: (err as Error).message, request: id }, 'bookkeeping after an answer failed') } }
    // the cache and learning take the answer before it goes, so the caller's next request (a repeat,
    // or feedback on it) finds it; a failure there costs an entry or an observation, never the answer
    bookkeep(() => {
      this.deps.onOutcome?.({ id, user: identity.userId, trace: req.traceId ?? null, model, route: req.route, ok: true, ttftMs, seconds: (ended - started) / 1000, tokens: usage.promptTokens + usage.completionTokens, costNusd: cost })
      // only plain text answers are kept: tool calls and logprobs are not replayed
      if (tokens.calls === 0 && !req.logprobs) cached?.store({ id, chunks: tokens.chunks, usage, finishReason })
    })
    // measurements and metrics once it has gone
    setImmediate(() => bookkeep(() => {
      this.deps.listings.measured(model, { ttftMs: ttftMs ?? 0, latencyMs: ended - started, ok: true })
      this.metrics.countTokens(model, usage.promptTokens, usage.completionTokens)
      this.metrics.observeInference(model, (ended - started) / 1000)
    }))
    return {
      id, model, worker: worker!, text: req.stream ? '' : tokens.text, usage, costUsd: toUsd(cost),
      ...(!req.stream && tokens.toolCalls.length ? { toolCalls: tokens.toolCalls } : {}),
      ...(!req.stream && req.logprobs ? { logprobs: tokens.logprobs } : {}),
      ...(ignored.length ? { ignored } : {}),
      finishReason,
      ttftMs, durationMs: Date.now() - started,
      routing: { ...chosen, attempts: out.attempts }
    }
  }

  async embed (req: EmbedRequest, caller: Pick<Caller, 'signal' | 'span'>): Promise<EmbedResponse> {
    const trace = RequestTrace.start(caller, 'embed')
    try {
      const result = await runEmbed(this.deps, req, caller, trace)
      trace?.end()
      return result
    } catch (err) {
      trace?.end(err)
      throw err
    }
  }

  /** Refuse a prompt over the size limit before it costs anything (an empty one is a valid prompt). */
  private checkSize (texts: string[]): void {
    const chars = texts.reduce((n, t) => n + t.length, 0)
    const max = this.deps.maxPromptChars ?? 100_000
    if (chars > max) throw MeshError.PROMPT_TOO_LARGE(`prompt is ${chars} characters; the limit is ${max}`)
  }

  /**
   * What the serving backend cannot do with this request: images need a model the registry tags
   * 'vision' (BAD_REQUEST naming it); parameters it does not honour are returned, by their names.
   */
  private checkCapabilities (model: string, req: GenerationRequest): string[] {
    const about = this.deps.listings.describe(model)
    if (about && imageCount(req) > 0 && !about.tasks.includes('vision')) {
      throw MeshError.BAD_REQUEST(`model '${model}' does not take images: the registry does not tag it 'vision'`, { param: 'messages', capability: 'vision' })
    }
    return about ? ignoredParams(about.backend, req) : []
  }

  /** The model the caller named, else the router's pick for the caller's route, else the default. */
  private chooseModel (req: InferRequest): { requested: string | undefined, chosen: Omit<InferResult['routing'], 'attempts'> } {
    if (req.model) return { requested: req.model, chosen: { strategy: 'explicit', reason: 'the caller named the model', score: null } }
    if (req.route) {
      const r = route(this.deps.listings.candidates(), req.route, this.deps.learner)
      return { requested: r.ranked[0]!.id, chosen: { strategy: r.strategy, reason: r.reason, score: r.ranked[0]!.score } }
    }
    const reason = this.deps.admission.hasDefaultModel ? 'the gateway\'s DEFAULT_MODEL' : 'the first model served'
    return { requested: undefined, chosen: { strategy: 'default', reason, score: null } }
  }

  /** Dispatch the prompt and carry its tokens to the caller; the caller leaving cancels the worker. */
  private async stream (req: Parameters<WorkerDispatch['prompt']>[0], ceiling: number, streaming: boolean, caller: Caller, trace: RequestTrace | null, guard: TokenStreamOptions['guard'], cheapest: boolean):
    Promise<{ out: DispatchOutcome<PromptResult>, tokens: TokenStream, price: TokenPrice | undefined }> {
    let price: TokenPrice | undefined
    // the caller leaving stops the worker, and so does the gateway (the ceiling, the output guard)
    const { cancel: stop, detach } = Cancellation.follow(caller.signal)
    const tokens = new TokenStream({
      ceiling,
      forward: streaming ? (chunk) => caller.emit(chunk) : null,
      stop: () => stop.abort(),
      guard,
      onFirstToken: (ms) => {
        trace?.firstToken(ms)
        this.metrics.observeTtft(req.model, ms / 1000)
        this.deps.listings.firstToken(req.model, ms)
      }
    })
    try {
      const out = await this.deps.dispatch.prompt(req, {
        signal: stop, onAttempt: (told) => { price = told; tokens.restart() }, onChunk: (c) => tokens.push(c), mayRetry: () => tokens.mayRetry(), traceparent: trace?.traceparent, cheapest
      })
      if (out.ok || tokens.truncated) await tokens.end()
      // the frames relayed last (often the answer's last tokens, or its only one) reach the network only
      // when the event loop next polls: let that happen before the settlement's work, not after it
      if (streaming && tokens.delivered > 0) await afterNextPoll()
      return { out, tokens, price }
    } finally {
      detach()
    }
  }

  /**
   * What the request is charged, and told it used: the worker's counts, checked like any input and
   * bounded by what was held and delivered. The prompt by its hold; the completion by the ceiling,
   * and by the bytes delivered (a token is at least a byte), never below the frames delivered.
   */
  private async usage (out: DispatchOutcome<PromptResult>, tokens: TokenStream, prompt: PromptMeasure, ceiling: number) {
    const reported = out.ok && out.value && typeof out.value.usage === 'object' && out.value.usage !== null
      ? { promptTokens: count(out.value.usage.promptTokens), completionTokens: count(out.value.usage.completionTokens) }
      : null
    const completionBound = Math.min(ceiling, Math.max(tokens.delivered, tokens.bytes))
    return {
      promptTokens: await chargedPrompt(reported?.promptTokens ?? 0, prompt),
      completionTokens: reported && !tokens.truncated ? Math.min(Math.max(reported.completionTokens, tokens.delivered), completionBound) : tokens.delivered
    }
  }
}
