import { z } from 'zod'
import { method, streamMethod } from '../mesh/method.ts'
import { modelName } from './common.ts'
import { MAX_MESSAGES, chatMessage, generationParams, type FinishReason, type TokenLogprob, type ToolCallDelta } from './chat.ts'
import { tokenPrice, type WorkerReceipt } from '../receipt.ts'

// The inference worker. Gateways call these over the channel the worker opened to them (or over the
// worker's own server, for mesh members).

export { chatMessage, generationParams, type ChatMessage } from './chat.ts'

export const processPromptRequest = z.object({
  requestId: z.string().min(1).max(100),
  model: modelName,
  messages: z.array(chatMessage).min(1).max(MAX_MESSAGES),
  /** the price the gateway applies to this request, nano-USD per token: the worker's receipt states it and the charge it makes */
  price: tokenPrice.optional(),
  ...generationParams
}).strict()

/**
 * One frame of an answer: a token of text, a piece of a tool call, or both; with the token's log
 * probabilities when asked. `ignored` comes only from the gateway, first, before any token: the
 * request's parameters the serving backend does not honour. `cached` marks the first frame of an
 * answer the gateway replays from its response cache.
 */
export interface TokenChunk { text: string, toolCall?: ToolCallDelta, logprobs?: TokenLogprob[], ignored?: string[], cached?: true }
export interface Usage { promptTokens: number, completionTokens: number }
/** `receipt`: the worker's signed receipt for the answer (../receipt.ts), checked and countersigned by the gateway */
export interface PromptResult { model: string, backend: string, usage: Usage, finishReason: FinishReason, ttftMs: number | null, receipt?: WorkerReceipt }

export interface ModelInfo { id: string, backend: string, contextLength?: number }
export interface ModelStatus { model: string, available: boolean, backend: string | null, inflight: number, served: number, errors: number }

/** the most inputs one embedding request may carry (as OpenAI) */
export const MAX_EMBED_INPUTS = 2048
/** one input: a text, or the token ids of one */
export const embedInput = z.union([
  z.string().min(1, 'an input must not be empty').max(100_000),
  z.array(z.number().int().min(0).max(2 ** 31 - 1)).min(1, 'a token-id input must not be empty').max(100_000)
])
export type EmbedInput = z.infer<typeof embedInput>

export const embedRequest = z.object({
  requestId: z.string().min(1).max(100),
  model: modelName,
  input: z.array(embedInput).min(1).max(MAX_EMBED_INPUTS),
  /** the vectors' length, for models that can shorten them */
  dimensions: z.number().int().min(1).max(65_536).optional()
}).strict()
export interface EmbedResult { model: string, embeddings: number[][], usage: { promptTokens: number } }

export const InferenceProtocol = {
  embed: method<z.infer<typeof embedRequest>, EmbedResult>('embed', { from: ['gateway', 'operator'] }, embedRequest),
  processPrompt: streamMethod<z.infer<typeof processPromptRequest>, PromptResult, TokenChunk>('processPrompt', { from: ['gateway', 'operator'] }, processPromptRequest),
  listAvailableModels: method<Record<string, never>, { models: ModelInfo[] }>('listAvailableModels', { from: ['gateway', 'operator'] }, z.object({}).strict()),
  getModelStatus: method<{ model: string }, ModelStatus>('getModelStatus', { from: ['gateway', 'operator'] }, z.object({ model: modelName }).strict())
}
