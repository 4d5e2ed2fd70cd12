import type { GenerationRequest, TokenLogprob } from '../../../shared/protocol/chat.ts'
import type { EmbedInput, EmbedResult, ModelInfo, Usage } from '../../../shared/protocol/inference.ts'

// The one adapter interface every backend implements. The worker core never names a provider:
// adding a backend is adding a file here and a row in ./table.ts.

/**
 * The whole chat request (shared/protocol/chat.ts): an adapter passes on every field its backend
 * supports; what it cannot is declared in ./table.ts (`honours`), not silently dropped.
 */
export type ChatRequest = GenerationRequest & {
  /** the backend's own model name */
  model: string
}

export type ChatChunk =
  | { type: 'token', text: string, logprobs?: TokenLogprob[] }
  /** a piece of a tool call: the first of an index carries its id (when the backend gives one) and name */
  | { type: 'tool_call', index: number, id?: string, name?: string, arguments?: string }
  /** the backend's own token counts, when it reports them (always last) */
  | { type: 'usage', usage: Usage, finishReason?: 'stop' | 'length' | 'tool_calls' }

export interface BackendHealth { ok: boolean, detail?: string }

export interface EmbedRequest { model: string, input: EmbedInput[], dimensions?: number }
/** a backend's vectors; the worker makes them an EmbedResult (promptTokens 0: the backend did not say) */
export type Embeddings = Pick<EmbedResult, 'embeddings'> & EmbedResult['usage']

export interface Backend {
  /** short stable name: 'ollama', 'openai', 'synthetic' */
  readonly name: string
  listModels (signal?: AbortSignal): Promise<ModelInfo[]>
  /**
   * Stream a chat completion. Aborting `signal` must abort the upstream HTTP request promptly.
   * Failures throw MeshError BACKEND_ERROR (with `details.status` when the backend answered HTTP).
   */
  chat (req: ChatRequest, signal: AbortSignal): AsyncIterable<ChatChunk>
  health (signal?: AbortSignal): Promise<BackendHealth>
  /** one vector per input, in order; absent on backends that cannot embed */
  embed? (req: EmbedRequest, signal: AbortSignal): Promise<Embeddings>
  close? (): Promise<void>
}
