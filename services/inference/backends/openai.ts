import OpenAI from 'openai'
import { MeshError } from '../../../shared/errors.ts'
import type { ModelInfo } from '../../../shared/protocol/inference.ts'
import type { Backend, BackendHealth, ChatChunk, ChatRequest } from './types.ts'

// OpenAI, or any server speaking its API (vLLM, llama.cpp, LM Studio, …), through the official
// `openai` client. Usage comes from the stream itself (stream_options.include_usage). The provider
// key never appears in an error: messages are rebuilt from the status and the provider's own text.

export interface OpenAIOptions { baseURL: string, apiKey: string, models?: string[] }

export class OpenAIBackend implements Backend {
  readonly name = 'openai'
  private readonly client: OpenAI
  private readonly apiKey: string
  private readonly staticModels?: string[]

  constructor (opts: OpenAIOptions) {
    this.apiKey = opts.apiKey
    this.staticModels = opts.models
    this.client = new OpenAI({ baseURL: opts.baseURL, apiKey: opts.apiKey, maxRetries: 0, timeout: 120_000 })
  }

  async listModels (signal?: AbortSignal): Promise<ModelInfo[]> {
    try {
      const ids: string[] = []
      for await (const m of this.client.models.list({ signal })) ids.push(m.id)
      return ids.map((id) => ({ id, backend: this.name }))
    } catch (err) {
      if (this.staticModels) return this.staticModels.map((id) => ({ id, backend: this.name }))
      throw this.toMeshError(err, signal)
    }
  }

  async health (signal?: AbortSignal): Promise<BackendHealth> {
    try {
      await this.client.models.list({ signal: signal ?? AbortSignal.timeout(2000) })
      return { ok: true }
    } catch (err) {
      return { ok: false, detail: this.toMeshError(err).reason }
    }
  }

  async * chat (req: ChatRequest, signal: AbortSignal): AsyncIterable<ChatChunk> {
    try {
      const stream = await this.client.chat.completions.create({
        model: req.model,
        messages: req.messages,
        stream: true,
        stream_options: { include_usage: true },
        ...(req.maxTokens !== undefined ? { max_tokens: req.maxTokens } : {}),
        ...(req.temperature !== undefined ? { temperature: req.temperature } : {})
      }, { signal })
      let finish: 'stop' | 'length' = 'stop'
      for await (const chunk of stream) {
        const choice = chunk.choices[0]
        if (choice?.delta?.content) yield { type: 'token', text: choice.delta.content }
        if (choice?.finish_reason === 'length') finish = 'length'
        if (chunk.usage) {
          yield { type: 'usage', usage: { promptTokens: chunk.usage.prompt_tokens, completionTokens: chunk.usage.completion_tokens }, finishReason: finish }
        }
      }
      // the SDK ends an aborted stream quietly; the caller must not mistake it for a complete answer
      if (signal.aborted) throw MeshError.CANCELLED()
    } catch (err) {
      throw this.toMeshError(err, signal)
    }
  }

  private toMeshError (err: unknown, signal?: AbortSignal): MeshError {
    if (err instanceof MeshError) return err
    if (signal?.aborted || err instanceof OpenAI.APIUserAbortError) return MeshError.CANCELLED()
    if (err instanceof OpenAI.APIError && typeof err.status === 'number') {
      const text = String((err.error as { message?: string } | undefined)?.message ?? '').split(this.apiKey).join('[redacted]').slice(0, 200)
      return MeshError.BACKEND_ERROR(`openai: ${err.status}${text ? ' ' + text : ''}`, { status: err.status })
    }
    return MeshError.BACKEND_ERROR('openai: not reachable')
  }
}
