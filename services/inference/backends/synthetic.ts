import crypto from 'node:crypto'
import { MeshError } from '../../../shared/errors.ts'
import type { ChatMessage, ModelInfo } from '../../../shared/protocol/inference.ts'
import type { Backend, BackendHealth, ChatChunk, ChatRequest, EmbedRequest, Embeddings } from './types.ts'

// A built-in backend with no model weights: the text is derived from the prompt (same prompt, same
// text), at a configurable token rate. For offline use, demos, tests and benchmarks.

const WORDS = ('the mesh routes every request to a worker that streams tokens back over encrypted ' +
  'peer connections while gateways count usage and keys stay hashed so nodes join from anywhere ' +
  'behind any network and models answer quickly with latency measured per token in order').split(' ')

export interface SyntheticOptions { models?: string[], tokensPerSecond?: number, defaultMaxTokens?: number }

/** The exact text the synthetic backend produces for these messages and token budget. */
export function syntheticText (messages: ChatMessage[], maxTokens: number): string {
  return syntheticTokens(messages, maxTokens).join('')
}

function syntheticTokens (messages: ChatMessage[], count: number): string[] {
  const last = [...messages].reverse().find((m) => m.role === 'user') ?? messages[messages.length - 1]
  let seed = crypto.createHash('sha256').update(last?.content ?? '').digest()
  const out: string[] = []
  let i = 0
  while (out.length < count) {
    if (i + 2 > seed.length) { seed = crypto.createHash('sha256').update(seed).digest(); i = 0 }
    const word = WORDS[seed.readUInt16BE(i) % WORDS.length]!
    i += 2
    out.push(out.length === 0 ? word : ' ' + word)
  }
  return out
}

function countWords (messages: ChatMessage[]): number {
  return Math.max(1, messages.reduce((n, m) => n + m.content.split(/\s+/).filter(Boolean).length, 0))
}

export function syntheticEmbedding (text: string): number[] {
  const bytes = Buffer.concat([crypto.createHash('sha256').update(text).digest(), crypto.createHash('sha256').update('\0' + text).digest()])
  const v = Array.from({ length: 64 }, (_, i) => (bytes[i % bytes.length]! - 127.5) / 127.5)
  const norm = Math.hypot(...v) || 1
  return v.map((x) => x / norm)
}

const STOPWORDS = new Set('a an the is are was were be to of in on for and or what how do does can i you me my it this that with about please'.split(' '))
const LEXICAL_DIMS = 256

/**
 * A lexical embedding (256 dimensions): word stems and character trigrams hashed into buckets, so
 * texts that share words point the same way. It knows no synonyms. Served by synthetic models whose
 * name contains "embed", for trying the semantic cache without model weights.
 */
export function syntheticLexicalEmbedding (text: string): number[] {
  const v = new Array<number>(LEXICAL_DIMS).fill(0)
  const add = (feature: string, w: number) => { v[crypto.createHash('sha256').update(feature).digest().readUInt16BE(0) % LEXICAL_DIMS]! += w }
  const words = text.toLowerCase().normalize('NFKD').replace(/[^a-z0-9\s]/g, ' ').split(/\s+/).filter((w) => w && !STOPWORDS.has(w))
  for (const w of words) {
    const stem = w.replace(/(ing|ed|es|s|ly)$/, '')
    add('w:' + stem, 2)
    const padded = ` ${stem} `
    for (let i = 0; i + 3 <= padded.length; i++) add('t:' + padded.slice(i, i + 3), 1)
  }
  const norm = Math.hypot(...v) || 1
  return v.map((x) => x / norm)
}

export class SyntheticBackend implements Backend {
  readonly name = 'synthetic'
  private readonly models: string[]
  private readonly delayMs: number
  private readonly defaultMaxTokens: number

  constructor (opts: SyntheticOptions = {}) {
    this.models = opts.models ?? ['synthetic']
    this.delayMs = opts.tokensPerSecond && opts.tokensPerSecond > 0 ? 1000 / opts.tokensPerSecond : 0
    this.defaultMaxTokens = opts.defaultMaxTokens ?? 32
  }

  async listModels (): Promise<ModelInfo[]> {
    return this.models.map((id) => ({ id, backend: this.name, contextLength: 8192 }))
  }

  async health (): Promise<BackendHealth> { return { ok: true } }

  /** A deterministic unit vector per input (64 dimensions; lexical, 256, for models named *embed*), so equal texts embed equally. */
  async embed (req: EmbedRequest, signal: AbortSignal): Promise<Embeddings> {
    if (!this.models.includes(req.model)) throw MeshError.BACKEND_ERROR(`synthetic: no model '${req.model}'`, { status: 404 })
    if (signal.aborted) throw MeshError.CANCELLED()
    const embed = /embed/i.test(req.model) ? syntheticLexicalEmbedding : syntheticEmbedding
    return { embeddings: req.input.map(embed), promptTokens: req.input.reduce((n, t) => n + Math.max(1, t.split(/\s+/).filter(Boolean).length), 0) }
  }

  async * chat (req: ChatRequest, signal: AbortSignal): AsyncIterable<ChatChunk> {
    if (!this.models.includes(req.model)) throw MeshError.BACKEND_ERROR(`synthetic: no model '${req.model}'`, { status: 404 })
    const count = req.maxTokens ?? this.defaultMaxTokens
    const tokens = syntheticTokens(req.messages, count)
    for (let i = 0; i < tokens.length; i++) {
      if (signal.aborted) throw MeshError.CANCELLED()
      if (this.delayMs > 0) await sleep(this.delayMs, signal)
      else if (i > 0 && i % 64 === 0) await new Promise((r) => setImmediate(r)) // stay fair under load
      yield { type: 'token', text: tokens[i]! }
    }
    yield { type: 'usage', usage: { promptTokens: countWords(req.messages), completionTokens: tokens.length }, finishReason: req.maxTokens !== undefined ? 'length' : 'stop' }
  }
}

function sleep (ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { signal.removeEventListener('abort', onAbort); resolve() }, ms)
    const onAbort = () => { clearTimeout(timer); reject(MeshError.CANCELLED()) }
    signal.addEventListener('abort', onAbort, { once: true })
  })
}
