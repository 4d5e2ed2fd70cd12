import { Ollama } from 'ollama'
import { MeshError } from '../../../shared/errors.ts'
import type { ModelInfo } from '../../../shared/protocol/inference.ts'
import type { Backend, BackendHealth, ChatChunk, ChatRequest } from './types.ts'

// Ollama through the official `ollama` client. Each call gets a client whose fetch is bound to the
// caller's AbortSignal, so a cancel aborts the HTTP request at any point, even before the first byte.

export class OllamaBackend implements Backend {
  readonly name = 'ollama'
  private readonly url: string

  constructor (opts: { url: string }) {
    this.url = opts.url
  }

  private client (signal?: AbortSignal): Ollama {
    return new Ollama({
      host: this.url,
      fetch: (input, init) => fetch(input, { ...init, signal: signal && init?.signal ? AbortSignal.any([signal, init.signal]) : (signal ?? init?.signal) })
    })
  }

  async listModels (signal?: AbortSignal): Promise<ModelInfo[]> {
    try {
      const res = await this.client(signal).list()
      return res.models.map((m) => ({ id: m.name, backend: this.name }))
    } catch (err) {
      throw toMeshError(err, signal)
    }
  }

  async health (signal?: AbortSignal): Promise<BackendHealth> {
    try {
      await this.client(signal ?? AbortSignal.timeout(2000)).version()
      return { ok: true }
    } catch (err) {
      return { ok: false, detail: toMeshError(err).reason }
    }
  }

  async * chat (req: ChatRequest, signal: AbortSignal): AsyncIterable<ChatChunk> {
    let stream
    try {
      stream = await this.client(signal).chat({
        model: req.model,
        messages: req.messages,
        stream: true,
        options: { ...(req.maxTokens !== undefined ? { num_predict: req.maxTokens } : {}), ...(req.temperature !== undefined ? { temperature: req.temperature } : {}) }
      })
    } catch (err) {
      throw toMeshError(err, signal)
    }
    try {
      for await (const part of stream) {
        if (part.message?.content) yield { type: 'token', text: part.message.content }
        if (part.done) {
          yield {
            type: 'usage',
            usage: { promptTokens: part.prompt_eval_count ?? 0, completionTokens: part.eval_count ?? 0 },
            finishReason: part.done_reason === 'length' ? 'length' : 'stop'
          }
        }
      }
    } catch (err) {
      throw toMeshError(err, signal)
    } finally {
      stream.abort()
    }
  }
}

function toMeshError (err: unknown, signal?: AbortSignal): MeshError {
  if (err instanceof MeshError) return err
  if (signal?.aborted || (err as Error)?.name === 'AbortError') return MeshError.CANCELLED()
  const status = (err as { status_code?: number }).status_code
  if (typeof status === 'number') return MeshError.BACKEND_ERROR(`ollama: ${status} ${String((err as Error).message).slice(0, 200)}`, { status })
  return MeshError.BACKEND_ERROR('ollama: not reachable')
}
