import { compareModels, nanoUsd, type CompareAnswer, type CompareOutcome } from '../compare.ts'
import { MeshError, isErrorCode, type ErrorCode } from '../errors.ts'
import type { ChatMessage, FinishReason } from '../protocol/chat.ts'
import type { Usage } from '../protocol/inference.ts'

// The SDK's side of comparing models: the request, one entry per model, and the conversions from
// what each transport gets (the gateway's answers over RPC, /v1/compare's events over HTTP).

/** One prompt for several models: exactly one of prompt and messages, and the sampling both transports pass on. */
export interface CompareRequest {
  /** 1 to 8 distinct model ids; each runs as its own request, billed on its own */
  models: string[]
  prompt?: string
  messages?: ChatMessage[]
  maxTokens?: number
  temperature?: number
  topP?: number
  seed?: number
  stop?: string[]
}

export interface CompareEntry {
  /** the model's place in `models` */
  index: number
  model: string
  /** the gateway's request id; null when the model failed */
  id: string | null
  /** the whole answer (what streamed before a failure is not kept here) */
  text: string
  finishReason: FinishReason | null
  usage: Usage | null
  /** from the start of the comparison to this model's end, measured where the comparison ran */
  latencyMs: number
  /** the gateway's time to first token */
  ttftMs: number | null
  /** what this model's request was charged: integer nano-USD (1 USD = 1e9), and USD */
  costNanoUsd: number | null
  costUsd: number | null
  cached?: true
  /** the coded error the model failed with; the other models are not affected */
  error: { code: ErrorCode, message: string } | null
}

export interface CompareResult {
  results: CompareEntry[]
  /** the answered models' tokens and charges together */
  usage: Usage
  costNanoUsd: number
  costUsd: number
}

export interface CompareOptions {
  signal?: AbortSignal
  /** each text delta as it arrives, with the model's index */
  onDelta?: (index: number, text: string) => void
  /** each model's entry as soon as it is done */
  onResult?: (entry: CompareEntry) => void
}

/** The request checked the way /v1/compare checks it, so both transports refuse the same things. */
export function checkCompare (req: CompareRequest): CompareRequest {
  if (!req || typeof req !== 'object') throw MeshError.BAD_REQUEST('the request must be an object')
  const models = compareModels.safeParse(req.models)
  if (!models.success) {
    const issue = models.error.issues[0]!
    throw MeshError.BAD_REQUEST(`models${issue.path.map((p) => `[${String(p)}]`).join('')}: ${issue.message}`, { param: 'models' })
  }
  if ((req.prompt === undefined) === (req.messages === undefined)) throw MeshError.BAD_REQUEST('give exactly one of prompt or messages')
  return req
}

export function entryOfOutcome (o: CompareOutcome<CompareAnswer>): CompareEntry {
  const r = o.result
  if (!r) {
    const e = o.error!
    return { index: o.index, model: o.model, id: null, text: '', finishReason: null, usage: null, latencyMs: o.latencyMs, ttftMs: null, costNanoUsd: null, costUsd: null, error: { code: e.code, message: e.reason } }
  }
  const nano = r.costUsd === undefined ? null : nanoUsd(r.costUsd)
  return {
    index: o.index, model: r.model, id: r.id, text: r.text, finishReason: r.finishReason, usage: r.usage,
    latencyMs: o.latencyMs, ttftMs: r.ttftMs ?? null, costNanoUsd: nano, costUsd: nano === null ? null : nano / 1e9, ...(r.cached ? { cached: true as const } : {}), error: null
  }
}

/** One `result` event (or whole-answer result) of /v1/compare in the SDK's terms. */
export interface WireCompareResult {
  index: number
  model: string
  id: string | null
  text: string
  finish_reason: string | null
  usage: { prompt_tokens: number, completion_tokens: number } | null
  latency_ms: number
  ttft_ms: number | null
  cost: { nano_usd: number, usd: number } | null
  cached?: boolean
  error: { message?: string, code?: string } | null
}

export function entryOfWire (w: WireCompareResult): CompareEntry {
  const finish = w.finish_reason
  return {
    index: w.index, model: w.model, id: w.id, text: w.text ?? '',
    finishReason: finish === 'length' || finish === 'tool_calls' || finish === 'content_filter' || finish === 'stop' ? finish : finish === null ? null : 'stop',
    usage: w.usage ? { promptTokens: w.usage.prompt_tokens, completionTokens: w.usage.completion_tokens } : null,
    latencyMs: w.latency_ms, ttftMs: w.ttft_ms ?? null,
    costNanoUsd: w.cost?.nano_usd ?? null, costUsd: w.cost ? w.cost.nano_usd / 1e9 : null,
    ...(w.cached ? { cached: true as const } : {}),
    error: w.error ? { code: isErrorCode(w.error.code) ? w.error.code : 'INTERNAL', message: String(w.error.message ?? 'failed') } : null
  }
}

/** The entries, in model order, with their totals. */
export function compareResult (entries: CompareEntry[]): CompareResult {
  const results = [...entries].sort((a, b) => a.index - b.index)
  let promptTokens = 0
  let completionTokens = 0
  let costNanoUsd = 0
  for (const e of results) {
    promptTokens += e.usage?.promptTokens ?? 0
    completionTokens += e.usage?.completionTokens ?? 0
    costNanoUsd += e.costNanoUsd ?? 0
  }
  return { results, usage: { promptTokens, completionTokens }, costNanoUsd, costUsd: costNanoUsd / 1e9 }
}
