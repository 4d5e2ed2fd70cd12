import OpenAI from 'openai'
import { MeshError } from '../../../shared/errors.ts'
import type { ModelInfo, Usage } from '../../../shared/protocol/inference.ts'
import type { Backend, BackendHealth, ChatChunk, ChatRequest, EmbedRequest, Embeddings } from './types.ts'
import { fromOpenAILogprobs, toOpenAIParams } from './openai-wire.ts'

// OpenAI, or any server speaking its API (vLLM, llama.cpp, LM Studio, …), through the official
// client. The provider key must never reach an error: provider messages are redacted before use.

export interface OpenAIOptions {
  baseURL: string
  apiKey: string
  /** advertised when the server has no usable /models */
  models?: string[]
  /** backend name, when a worker runs several OpenAI-compatible providers */
  name?: string
  healthTimeoutMs?: number
}

export class OpenAIBackend implements Backend {
  readonly name: string
  private readonly client: OpenAI
  private readonly apiKey: string
  private readonly origin: string
  private readonly staticModels?: string[]
  private readonly healthTimeoutMs: number

  constructor (opts: OpenAIOptions) {
    this.name = opts.name ?? 'openai'
    this.apiKey = opts.apiKey
    this.origin = new URL(opts.baseURL).origin
    this.staticModels = opts.models
    this.healthTimeoutMs = opts.healthTimeoutMs ?? 2000
    this.client = new OpenAI({ baseURL: opts.baseURL, apiKey: opts.apiKey, maxRetries: 0 })
  }

  async listModels (signal?: AbortSignal): Promise<ModelInfo[]> {
    try {
      const page = await this.client.models.list({ signal })
      return page.data.map((m) => ({ id: m.id, backend: this.name }))
    } catch (err) {
      if (signal?.aborted) throw MeshError.CANCELLED()
      if (this.staticModels) return this.staticModels.map((id) => ({ id, backend: this.name }))
      throw this.toMeshError(err)
    }
  }

  async health (signal?: AbortSignal): Promise<BackendHealth> {
    const timeout = AbortSignal.timeout(this.healthTimeoutMs)
    try {
      await this.client.models.list({ signal: signal ? AbortSignal.any([signal, timeout]) : timeout })
      return { ok: true }
    } catch (err) {
      const e = this.toMeshError(err)
      // a server without /models still answers; with a static model list that is enough
      if (this.staticModels && e.details?.status === 404) return { ok: true }
      return { ok: false, detail: timeout.aborted ? `${this.name}: no answer from ${this.origin} within ${this.healthTimeoutMs} ms` : e.reason }
    }
  }

  async embed (req: EmbedRequest, signal: AbortSignal): Promise<Embeddings> {
    try {
      // texts or token-id arrays, as OpenAI takes them (the edge refuses a mix)
      const res = await this.client.embeddings.create({ model: req.model, input: req.input as string[] | number[][], ...(req.dimensions !== undefined ? { dimensions: req.dimensions } : {}) }, { signal })
      const ordered = [...res.data].sort((a, b) => a.index - b.index)
      return { embeddings: ordered.map((d) => d.embedding), promptTokens: res.usage?.prompt_tokens ?? 0 }
    } catch (err) {
      throw signal.aborted ? MeshError.CANCELLED() : this.toMeshError(err)
    }
  }

  async * chat (req: ChatRequest, signal: AbortSignal): AsyncIterable<ChatChunk> {
    if (signal.aborted) throw MeshError.CANCELLED()
    try {
      const stream = await this.client.chat.completions.create(toOpenAIParams(req), { signal })
      let usage: Usage | undefined
      let finishReason: 'stop' | 'length' | 'tool_calls' = 'stop'
      for await (const chunk of stream) {
        const choice = chunk.choices[0]
        const logprobs = fromOpenAILogprobs(choice?.logprobs?.content)
        if (choice?.delta?.content) yield { type: 'token', text: choice.delta.content, ...(logprobs ? { logprobs } : {}) }
        for (const call of choice?.delta?.tool_calls ?? []) {
          yield { type: 'tool_call', index: call.index, ...(call.id ? { id: call.id } : {}), ...(call.function?.name ? { name: call.function.name } : {}), ...(call.function?.arguments ? { arguments: call.function.arguments } : {}) }
        }
        if (choice?.finish_reason) finishReason = choice.finish_reason === 'length' ? 'length' : choice.finish_reason === 'tool_calls' || choice.finish_reason === 'function_call' ? 'tool_calls' : 'stop'
        if (chunk.usage) usage = { promptTokens: chunk.usage.prompt_tokens, completionTokens: chunk.usage.completion_tokens }
      }
      // the SDK ends an aborted stream quietly; that must not pass for a complete answer
      if (signal.aborted) throw MeshError.CANCELLED()
      if (usage) yield { type: 'usage', usage, finishReason }
    } catch (err) {
      throw signal.aborted ? MeshError.CANCELLED() : this.toMeshError(err)
    }
  }

  private toMeshError (err: unknown): MeshError {
    if (err instanceof MeshError) return err
    if (err instanceof OpenAI.APIUserAbortError) return MeshError.CANCELLED()
    if (err instanceof OpenAI.APIConnectionTimeoutError) return MeshError.BACKEND_ERROR(`${this.name}: ${this.origin} timed out`)
    if (err instanceof OpenAI.APIConnectionError) return MeshError.BACKEND_ERROR(`${this.name}: cannot reach ${this.origin}`)
    if (err instanceof OpenAI.APIError) {
      const text = this.redact((err.error as { message?: unknown } | undefined)?.message ?? err.message)
      // a status-less APIError is an error event inside an already-open stream
      return typeof err.status === 'number'
        ? MeshError.BACKEND_ERROR(`${this.name}: ${err.status} ${text}`, { status: err.status })
        : MeshError.BACKEND_ERROR(`${this.name}: ${text}`)
    }
    return MeshError.BACKEND_ERROR(`${this.name}: ${this.redact((err as Error)?.message)}`)
  }

  private redact (msg: unknown): string {
    let s = String(msg ?? 'unknown error').replace(/\s+/g, ' ').trim()
    if (this.apiKey) s = s.split(this.apiKey).join('[redacted]')
    return s.length > 200 ? s.slice(0, 200) + '…' : s
  }
}
