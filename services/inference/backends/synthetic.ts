import crypto from 'node:crypto'
import { MeshError } from '../../../shared/errors.ts'
import type { ChatMessage } from '../../../shared/protocol/chat.ts'
import type { EmbedInput, ModelInfo } from '../../../shared/protocol/inference.ts'
import type { Backend, BackendHealth, ChatChunk, ChatRequest, EmbedRequest, Embeddings } from './types.ts'
import { pieces, syntheticPlan, syntheticTokens } from './synthetic-plan.ts'

// A built-in backend with no model weights: the answer is derived from the request (same request,
// same answer: ./synthetic-plan.ts), at a configurable token rate. It makes tool calls and structured
// output too, valid against the schemas given, so tools and JSON clients work offline. For offline
// use, demos, tests and benchmarks. A model whose name contains "guard" answers as a moderation
// classifier does (Llama Guard's "safe", or "unsafe" and a hazard code), by a fixed word list, so the
// safety layer's model path runs offline.

export interface SyntheticOptions { models?: string[], tokensPerSecond?: number, defaultMaxTokens?: number }

/** The exact text the synthetic backend produces for these messages and token budget (no tools, no format). */
export function syntheticText (messages: ChatMessage[], maxTokens: number): string {
  return syntheticTokens(messages, maxTokens).join('')
}

function countWords (messages: ChatMessage[]): number {
  return Math.max(1, messages.reduce((n, m) => n + m.content.split(/\s+/).filter(Boolean).length, 0))
}

/** The synthetic classifier's deterministic verdict on the last turn (the user's prompt, or the answer to judge). */
const HAZARD_WORDS: Array<[RegExp, string]> = [
  [/\b(?:bomb|explosives?|shoot|murder|stab)\b/i, 'S1'],
  [/\b(?:meth|heroin|fentanyl|launder|counterfeit)\b/i, 'S2'],
  [/\b(?:suicide|self-harm|overdose)\b/i, 'S11'],
  [/\b(?:exterminate|subhuman)\b/i, 'S10']
]
export function syntheticVerdict (messages: ChatMessage[]): string {
  const last = messages[messages.length - 1]
  const content = typeof last?.content === 'string' ? last.content : ''
  const codes = HAZARD_WORDS.filter(([re]) => re.test(content)).map(([, code]) => code)
  return codes.length ? `unsafe\n${codes.join(',')}` : 'safe'
}

export const SYNTHETIC_DIMENSIONS = 64

/** A deterministic unit vector per input (64 dimensions unless asked otherwise), so equal inputs embed equally. */
export function syntheticEmbedding (input: EmbedInput, dimensions = SYNTHETIC_DIMENSIONS): number[] {
  const text = typeof input === 'string' ? input : 'tokens:' + input.join(',')
  const blocks: Buffer[] = []
  for (let k = 0; blocks.length * 32 < dimensions; k++) blocks.push(crypto.createHash('sha256').update('\0'.repeat(k) + text).digest())
  const bytes = Buffer.concat(blocks)
  const v = Array.from({ length: dimensions }, (_, i) => (bytes[i]! - 127.5) / 127.5)
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

  /** A deterministic unit vector per input (hashed; lexical, 256 dimensions, for models named *embed*), so equal texts embed equally. */
  async embed (req: EmbedRequest, signal: AbortSignal): Promise<Embeddings> {
    if (!this.models.includes(req.model)) throw MeshError.BACKEND_ERROR(`synthetic: no model '${req.model}'`, { status: 404 })
    if (signal.aborted) throw MeshError.CANCELLED()
    const tokens = (i: EmbedInput) => typeof i === 'string' ? Math.max(1, i.split(/\s+/).filter(Boolean).length) : i.length
    const lexical = /embed/i.test(req.model)
    const embed = (i: EmbedInput) => lexical && typeof i === 'string' ? syntheticLexicalEmbedding(i) : syntheticEmbedding(i, req.dimensions)
    return { embeddings: req.input.map(embed), promptTokens: req.input.reduce((n, i) => n + tokens(i), 0) }
  }

  async * chat (req: ChatRequest, signal: AbortSignal): AsyncIterable<ChatChunk> {
    if (!this.models.includes(req.model)) throw MeshError.BACKEND_ERROR(`synthetic: no model '${req.model}'`, { status: 404 })
    const plan = syntheticPlan(req, req.maxTokens ?? this.defaultMaxTokens)
    // JSON and tool calls run to their end unless the caller caps them (the gateway holds its own ceiling)
    const budget = req.maxTokens ?? (plan.kind === 'text' ? this.defaultMaxTokens : 100_000)
    const chunks: ChatChunk[] = []
    if (plan.kind === 'tools') {
      plan.calls.forEach((call, index) => {
        chunks.push({ type: 'tool_call', index, id: call.id, name: call.name, arguments: '' })
        for (const piece of pieces(call.arguments, 16)) chunks.push({ type: 'tool_call', index, arguments: piece })
      })
    } else if (/guard/i.test(req.model)) {
      for (const text of syntheticVerdict(req.messages).split(/(?=\n)/)) chunks.push({ type: 'token', text })
    } else {
      // each token is certain: log probability 0, and no alternative has any chance
      const logprobs = (text: string) => req.logprobs ? { logprobs: [{ token: text, logprob: 0, topLogprobs: req.topLogprobs ? [{ token: text, logprob: 0 }] : [] }] } : {}
      for (const text of plan.tokens) chunks.push({ type: 'token', text, ...logprobs(text) })
    }
    const sent = chunks.slice(0, budget)
    for (let i = 0; i < sent.length; i++) {
      if (signal.aborted) throw MeshError.CANCELLED()
      if (this.delayMs > 0) await sleep(this.delayMs, signal)
      else if (i > 0 && i % 64 === 0) await new Promise((r) => setImmediate(r)) // stay fair under load
      yield sent[i]!
    }
    const finishReason = sent.length < chunks.length ? 'length'
      : plan.kind === 'tools' ? 'tool_calls'
        : plan.kind === 'text' && req.maxTokens !== undefined ? 'length' : 'stop'
    yield { type: 'usage', usage: { promptTokens: countWords(req.messages), completionTokens: sent.length }, finishReason }
  }
}

function sleep (ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { signal.removeEventListener('abort', onAbort); resolve() }, ms)
    const onAbort = () => { clearTimeout(timer); reject(MeshError.CANCELLED()) }
    signal.addEventListener('abort', onAbort, { once: true })
  })
}
