import crypto from 'node:crypto'
import type { ChatMessage } from '../../../shared/protocol/inference.ts'
import type { WorkerDispatch } from '../dispatch.ts'
import type { ModelCandidate } from '../router.ts'
import type { Category } from './detectors.ts'
import { Cancellation, type CancelSignal } from '../../../shared/mesh/cancel.ts'

// Classification by a moderation model of the mesh: a model the registry tags `moderation` (Llama
// Guard behind an Ollama worker, say; the synthetic backend's *guard* models answer the same way,
// deterministically, for offline tests). The conversation goes to it as chat messages; it answers
// "safe", or "unsafe" and a line of hazard codes (S1…S14 of the MLCommons taxonomy Llama Guard 3
// uses), which map onto our categories. The classification runs on the operator's account: it is
// not billed to the caller, and it is bounded in time and in concurrency.

const HAZARDS: Record<string, Category> = {
  S1: 'violence', S2: 'illicit', S3: 'sexual', S4: 'sexual', S5: 'harassment', S6: 'illicit', S7: 'illicit',
  S8: 'illicit', S9: 'violence', S10: 'hate', S11: 'self_harm', S12: 'sexual', S13: 'illicit', S14: 'illicit'
}
const TIMEOUT_MS = 15_000
const LOOKUP_MS = 1000
/** characters of the prompt sent along when an answer is judged (the model reads the answer in its context) */
const PROMPT_CONTEXT = 2000

export interface Classification { model: string, safe: boolean, categories: Category[] }

/** What a Llama-Guard-style answer says; anything that does not start with safe/unsafe is no verdict. */
export function parseVerdict (text: string): { safe: boolean, categories: Category[] } | null {
  const lines = text.trim().split(/\s*\n\s*/)
  const head = lines[0]?.toLowerCase()
  if (head === 'safe') return { safe: true, categories: [] }
  if (head !== 'unsafe') return null
  const codes = (lines[1] ?? '').toUpperCase().match(/S\d{1,2}/g) ?? []
  const categories = [...new Set(codes.map((c) => HAZARDS[c]).filter((c): c is Category => !!c))]
  return { safe: false, categories: categories.length ? categories : ['illicit'] }
}

export class ModerationModel {
  private readonly candidates: () => ModelCandidate[]
  private readonly dispatch: WorkerDispatch
  private readonly maxInflight: number
  private inflight = 0
  private found: { at: number, model: string | null } = { at: 0, model: null }

  /** `maxInflight`: classifications at once across all requests; past it a request gets no verdict */
  constructor (candidates: () => ModelCandidate[], dispatch: WorkerDispatch, maxInflight = 32) {
    this.candidates = candidates
    this.dispatch = dispatch
    this.maxInflight = maxInflight
  }

  /** The moderation model served now (`preferred` if it is one), or null; looked up once a second. */
  model (preferred?: string): string | null {
    const now = Date.now()
    if (preferred) return this.candidates().some((c) => c.id === preferred && c.tasks.includes('moderation')) ? preferred : null
    if (now - this.found.at > LOOKUP_MS) this.found = { at: now, model: this.candidates().find((c) => c.tasks.includes('moderation'))?.id ?? null }
    return this.found.model
  }

  /** The model's verdict on `messages`, or null when it gave none (busy, failed, or said something else). */
  async classify (model: string, messages: ChatMessage[], signal?: CancelSignal, timeoutMs = TIMEOUT_MS): Promise<Classification | null> {
    if (this.inflight >= this.maxInflight || signal?.aborted) return null
    this.inflight++
    const stop = new Cancellation()
    const timer = setTimeout(() => stop.abort(), timeoutMs)
    const onAbort = () => stop.abort()
    signal?.addEventListener('abort', onAbort, { once: true })
    let text = ''
    try {
      const out = await this.dispatch.prompt({ requestId: 'moderation-' + crypto.randomUUID(), model, messages, maxTokens: 24, temperature: 0 }, {
        signal: stop,
        onAttempt: () => { text = '' },
        onChunk: (c) => { if (typeof c?.text === 'string' && text.length < 512) text += c.text; return null },
        mayRetry: () => true
      })
      if (!out.ok || stop.aborted) return null
      const verdict = parseVerdict(text)
      return verdict ? { model, ...verdict } : null
    } finally {
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
      this.inflight--
    }
  }

  /** The model's verdict on a piece of an answer, read as the assistant's turn after the user's last prompt. */
  classifyAnswer (model: string, prompt: ChatMessage[], answer: string, signal: CancelSignal | undefined, timeoutMs: number): Promise<Classification | null> {
    const last = [...prompt].reverse().find((m) => m.role === 'user')
    const messages: ChatMessage[] = last ? [{ role: 'user', content: last.content.slice(-PROMPT_CONTEXT) }] : []
    messages.push({ role: 'assistant', content: answer })
    return this.classify(model, messages, signal, timeoutMs)
  }
}
