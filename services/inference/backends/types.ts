import type { ChatMessage, EmbedResult, ModelInfo, Usage } from '../../../shared/protocol/inference.ts'

// The one adapter interface every backend implements. The worker core never names a provider:
// adding a backend is adding a file here and a row in ./table.ts.

export interface ChatRequest {
  /** the backend's own model name */
  model: string
  messages: ChatMessage[]
  maxTokens?: number
  temperature?: number
}

export type ChatChunk =
  | { type: 'token', text: string }
  /** the backend's own token counts, when it reports them (always last) */
  | { type: 'usage', usage: Usage, finishReason?: 'stop' | 'length' }

export interface BackendHealth { ok: boolean, detail?: string }

export interface EmbedRequest { model: string, input: string[] }
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
