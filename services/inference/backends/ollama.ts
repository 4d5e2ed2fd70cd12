import crypto from 'node:crypto'
import { Ollama, type AbortableAsyncIterator, type ChatResponse } from 'ollama'
import { MeshError } from '../../../shared/errors.ts'
import type { ModelInfo } from '../../../shared/protocol/inference.ts'
import type { Backend, BackendHealth, ChatChunk, ChatRequest, EmbedRequest, Embeddings } from './types.ts'
import { fromOllamaLogprobs, toOllamaChat } from './ollama-wire.ts'

// A local or remote Ollama server, through the official client.

export interface OllamaOptions {
  /** e.g. http://127.0.0.1:11434; credentials in the URL are sent as Basic auth */
  url: string
  fetch?: typeof fetch
  healthTimeoutMs?: number
}

export class OllamaBackend implements Backend {
  readonly name = 'ollama'
  private readonly host: string
  /** the server's address without credentials: the only form that may appear in errors */
  private readonly origin: string
  private readonly headers: Record<string, string> = {}
  private readonly fetch: typeof fetch
  private readonly healthTimeoutMs: number

  constructor (opts: OllamaOptions) {
    const url = new URL(opts.url)
    // fetch refuses URLs that carry credentials, so they travel as a header instead
    if (url.username || url.password) {
      this.headers.Authorization = 'Basic ' + Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64')
      url.username = ''
      url.password = ''
    }
    this.host = url.href.replace(/\/+$/, '')
    this.origin = url.origin
    this.fetch = opts.fetch ?? globalThis.fetch
    this.healthTimeoutMs = opts.healthTimeoutMs ?? 2000
  }

  // The client's non-streaming calls take no signal, so each call gets a client whose fetch carries one.
  private client (signal?: AbortSignal): Ollama {
    const base = this.fetch
    const fetch: typeof globalThis.fetch = signal
      ? (input, init) => base(input, { ...init, signal: init?.signal ? AbortSignal.any([init.signal, signal]) : signal })
      : base
    return new Ollama({ host: this.host, headers: this.headers, fetch })
  }

  async listModels (signal?: AbortSignal): Promise<ModelInfo[]> {
    try {
      const { models } = await this.client(signal).list()
      return models.map((m) => ({ id: m.name, backend: this.name }))
    } catch (err) {
      throw signal?.aborted ? MeshError.CANCELLED() : this.toMeshError(err)
    }
  }

  async health (signal?: AbortSignal): Promise<BackendHealth> {
    const timeout = AbortSignal.timeout(this.healthTimeoutMs)
    try {
      await this.client(signal ? AbortSignal.any([signal, timeout]) : timeout).version()
      return { ok: true }
    } catch (err) {
      return { ok: false, detail: timeout.aborted ? `ollama: no answer from ${this.origin} within ${this.healthTimeoutMs} ms` : this.toMeshError(err).reason }
    }
  }

  async embed (req: EmbedRequest, signal: AbortSignal): Promise<Embeddings> {
    try {
      // Ollama embeds text only: token-id inputs are refused by the gateway (table.ts: tokenInput)
      if (!req.input.every((i): i is string => typeof i === 'string')) throw MeshError.BAD_REQUEST('ollama embeds text only, not token ids')
      const res = await this.client(signal).embed({ model: req.model, input: req.input, ...(req.dimensions !== undefined ? { dimensions: req.dimensions } : {}) })
      return { embeddings: res.embeddings, promptTokens: (res as { prompt_eval_count?: number }).prompt_eval_count ?? 0 }
    } catch (err) {
      throw signal.aborted ? MeshError.CANCELLED() : this.toMeshError(err)
    }
  }

  async * chat (req: ChatRequest, signal: AbortSignal): AsyncIterable<ChatChunk> {
    if (signal.aborted) throw MeshError.CANCELLED()
    let stream: AbortableAsyncIterator<ChatResponse> | undefined
    const onAbort = () => stream?.abort()
    signal.addEventListener('abort', onAbort, { once: true })
    try {
      // `signal` also reaches fetch, so an abort before the response headers cancels the request too
      stream = await this.client(signal).chat(toOllamaChat(req))
      let tokens = 0
      let calls = 0
      for await (const part of stream) {
        if (part.message?.content) {
          tokens++
          const logprobs = fromOllamaLogprobs(part.logprobs)
          yield { type: 'token', text: part.message.content, ...(logprobs ? { logprobs } : {}) }
        }
        // Ollama sends each tool call whole; it names no id, so one is made
        for (const call of part.message?.tool_calls ?? []) {
          const index = calls++
          yield { type: 'tool_call', index, id: (call as { id?: string }).id ?? `call_${crypto.randomUUID().replace(/-/g, '').slice(0, 24)}`, name: call.function.name, arguments: JSON.stringify(call.function.arguments ?? {}) }
        }
        if (part.done) {
          yield {
            type: 'usage',
            usage: { promptTokens: part.prompt_eval_count ?? 0, completionTokens: part.eval_count ?? tokens },
            finishReason: part.done_reason === 'length' ? 'length' : calls > 0 ? 'tool_calls' : 'stop'
          }
          return
        }
      }
    } catch (err) {
      throw signal.aborted ? MeshError.CANCELLED() : this.toMeshError(err)
    } finally {
      signal.removeEventListener('abort', onAbort)
      // closes the HTTP request if the consumer stopped early; a no-op after a complete response
      stream?.abort()
    }
  }

  private toMeshError (err: unknown): MeshError {
    if (err instanceof MeshError) return err
    const e = err as { message?: string, status_code?: unknown, code?: string, cause?: { code?: string } }
    // ResponseError (not exported by the client): the server answered with an HTTP error
    if (typeof e?.status_code === 'number') return MeshError.BACKEND_ERROR(`ollama: ${short(e.message)}`, { status: e.status_code })
    const code = e?.cause?.code ?? e?.code
    if (code) return MeshError.BACKEND_ERROR(`ollama: cannot reach ${this.origin} (${code})`)
    return MeshError.BACKEND_ERROR(`ollama: ${short(e?.message)}`)
  }
}

function short (msg: unknown): string {
  const s = String(msg ?? 'unknown error').replace(/\s+/g, ' ').trim()
  return s.length > 200 ? s.slice(0, 200) + '…' : s
}
