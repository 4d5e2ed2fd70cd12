import { countTokens } from 'gpt-tokenizer'
import { z } from 'zod'
import { modelInput, modelName } from '../../shared/registry/schema.ts'
import type { CounterSpec } from './accounting.ts'

// What a request may cost before it runs: tier limits (per key and per user, requests and tokens, by
// the hour and the day), per-key budgets, model prices, and a token estimate for the prompt.

export const tierLimits = z.object({
  /** requests per hour, per key */
  requestsPerHour: z.number().int().positive(),
  /** requests per hour, per user (all their keys together) */
  userRequestsPerHour: z.number().int().positive(),
  /** tokens (prompt + completion) per hour and per day, per user */
  tokensPerHour: z.number().int().positive(),
  tokensPerDay: z.number().int().positive()
}).strict()
export type TierLimits = z.infer<typeof tierLimits>

export const DEFAULT_TIERS: Record<string, TierLimits> = {
  default: { requestsPerHour: 100, userRequestsPerHour: 500, tokensPerHour: 200_000, tokensPerDay: 2_000_000 },
  premium: { requestsPerHour: 1000, userRequestsPerHour: 5000, tokensPerHour: 2_000_000, tokensPerDay: 20_000_000 }
}

/** TIER_LIMITS='{"default":{"tokensPerDay":50000}}' overrides single fields of the defaults. */
export function parseTiers (json: string | undefined, requestLimits?: { default: number, premium: number }): Record<string, TierLimits> {
  const tiers: Record<string, TierLimits> = structuredClone(DEFAULT_TIERS)
  if (requestLimits) {
    tiers.default!.requestsPerHour = requestLimits.default
    tiers.premium!.requestsPerHour = requestLimits.premium
  }
  if (json) {
    const parsed = z.partialRecord(z.enum(['default', 'premium']), tierLimits.partial()).parse(JSON.parse(json))
    for (const [name, over] of Object.entries(parsed)) tiers[name] = { ...tiers[name]!, ...over }
  }
  return tiers
}

/** USD per 1M tokens. */
export interface Price { input: number, output: number }
export const modelPrices = z.record(modelName, z.object({ input: modelInput.shape.pricePer1MInput, output: modelInput.shape.pricePer1MOutput }).strict())

/** nano-USD for `tokens` at `usdPerMillion`: 1 USD = 1e9 nUSD, so nUSD per token = price × 1000. */
export function nusd (tokens: number, usdPerMillion: number): number {
  return tokens * Math.round(usdPerMillion * 1000)
}
export const toUsd = (n: number): number => n / 1e9
/** A price as nano-USD a token, as a worker is told it: the same rounding as nusd(). */
export function tokenPrice (p: Price): { input: number, output: number } {
  return { input: Math.round(p.input * 1000), output: Math.round(p.output * 1000) }
}

/** nano-USD per token: what an operator sets for its workers */
export interface TokenPrice { input: number, output: number }

/**
 * Prices come from the registry (shared by every gateway); the configured table is the fallback. An
 * operator's own price for a model (operator-store.ts) overrides both for the workers it owns: a
 * request is charged at its serving worker's price, and holds the most any worker serving the
 * model would charge, since it may be retried on another.
 */
export class Pricing {
  private readonly table = new Map<string, Price>()
  private primary: (model: string) => Price | null = () => null
  private perWorker: (worker: string, model: string) => TokenPrice | null = () => null
  private servers: (model: string) => string[] = () => []
  constructor (prices: Record<string, Price> = {}) { this.set(prices) }
  set (prices: Record<string, Price>): void { for (const [m, p] of Object.entries(prices)) this.table.set(m, p) }
  source (fn: (model: string) => Price | null): void { this.primary = fn }
  /** operators' prices per worker, and the workers that serve a model now */
  operators (priceOf: (worker: string, model: string) => TokenPrice | null, servers: (model: string) => string[]): void {
    this.perWorker = priceOf
    this.servers = servers
  }

  /** unpriced models are free (local backends) */
  of (model: string): Price { return this.primary(model) ?? this.table.get(model) ?? { input: 0, output: 0 } }
  /** nano-USD per token on `worker` (its operator's price), else the model's own price */
  tokenPrice (model: string, worker: string | null = null): TokenPrice {
    const own = worker ? this.perWorker(worker, model) : null
    if (own) return own
    const p = this.of(model)
    return { input: Math.round(p.input * 1000), output: Math.round(p.output * 1000) }
  }

  cost (model: string, tokensIn: number, tokensOut: number, worker: string | null = null): number {
    const p = this.tokenPrice(model, worker)
    return tokensIn * p.input + tokensOut * p.output
  }

  /** The most this request could be charged on any worker that serves the model now: what it holds. */
  holdCost (model: string, tokensIn: number, tokensOut: number): number {
    const workers = this.servers(model)
    if (workers.length === 0) return this.cost(model, tokensIn, tokensOut)
    let max = 0
    for (const w of workers) max = Math.max(max, this.cost(model, tokensIn, tokensOut, w))
    return max
  }

  /** The lowest and highest price (nano-USD per token) among the workers serving the model now. */
  range (model: string): { input: { min: number, max: number }, output: { min: number, max: number } } {
    const prices = this.servers(model).map((w) => this.tokenPrice(model, w))
    if (prices.length === 0) prices.push(this.tokenPrice(model))
    const ins = prices.map((p) => p.input)
    const outs = prices.map((p) => p.output)
    return { input: { min: Math.min(...ins), max: Math.max(...ins) }, output: { min: Math.min(...outs), max: Math.max(...outs) } }
  }

  all (): Record<string, Price> { return Object.fromEntries(this.table) }
  /** the configured price only (MODEL_PRICES), not the registry's */
  configured (model: string): Price | null { return this.table.get(model) ?? null }
}

/**
 * chars tokenized in one call: BPE over one unbroken run (100k of 'a' or of one CJK character) costs
 * time quadratic in the run's length, so no call sees a longer run than this
 */
const SLICE_CHARS = 512
/** tokenizing yields to the event loop after this long, so other requests are not held up */
const SLICE_MS = 2

/**
 * Tokens the prompt will be billed for by a typical tokenizer (cl100k/o200k family), counted in
 * slices of at most SLICE_CHARS: time linear in the prompt's length, and the event loop is given back
 * every SLICE_MS. A slice ends before whitespace where there is some near its end, so ordinary text
 * counts as it would whole; a run without any is cut (its count may then differ by a token a slice,
 * and it is this count that is held and, failing the worker's own, charged).
 */
export async function countPromptTokens (texts: string[]): Promise<number> {
  let n = 2
  let since = performance.now()
  for (const text of texts) {
    n += 4 // role and separators, as chat templates add
    for (let at = 0; at < text.length;) {
      const end = sliceEnd(text, at)
      n += countTokens(text.slice(at, end))
      at = end
      if (performance.now() - since > SLICE_MS) {
        await new Promise((resolve) => setImmediate(resolve))
        since = performance.now()
      }
    }
  }
  return n
}

const WHITESPACE = /\s/
function sliceEnd (text: string, from: number): number {
  if (text.length - from <= SLICE_CHARS) return text.length
  const end = from + SLICE_CHARS
  for (let i = end; i > end - 64; i--) if (WHITESPACE.test(text[i]!)) return i
  const code = text.charCodeAt(end - 1)
  return code >= 0xd800 && code <= 0xdbff ? end - 1 : end // never split a surrogate pair
}

/** A hold that covers the backend's own count: its tokenizer may differ from ours. */
export function promptTokenHold (estimate: number): number {
  return Math.ceil(estimate * 1.25) + 16
}

/** prompts up to this many characters are counted before admission, in a few ms at most */
const COUNT_BEFORE_CHARS = 16_384

/** What admission holds for a prompt, and what is charged for it when the worker reports no count. */
export interface PromptMeasure {
  /** tokens held, and the most a worker's count is charged */
  hold: number
  /** our own count: made before admission for a short prompt, on demand (only at settlement) for a long one */
  count (): Promise<number>
}

/**
 * A short prompt is counted at once and held with a margin for the backend's tokenizer. A long one is
 * not counted on the way in (even sliced, 100k characters cost the gateway tens of ms of CPU per
 * request): it is held at its UTF-8 bytes, a bound for any byte-level tokenizer since each token
 * stands for at least one byte, plus what a chat template adds, and counted only if the worker
 * reports no count of its own.
 */
export async function measurePrompt (texts: string[]): Promise<PromptMeasure> {
  const chars = texts.reduce((n, t) => n + t.length, 0)
  if (chars <= COUNT_BEFORE_CHARS) {
    const n = await countPromptTokens(texts)
    return { hold: promptTokenHold(n), count: async () => n }
  }
  const bytes = texts.reduce((n, t) => n + Buffer.byteLength(t), 0)
  let counted: Promise<number> | null = null
  return { hold: bytes + 4 * texts.length + 18, count: () => (counted ??= countPromptTokens(texts)) }
}

const pad = (n: number) => String(n).padStart(2, '0')
function hourWindow (now: Date): { id: string, ends: Date } {
  const ends = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate(), now.getUTCHours() + 1))
  return { id: `h${now.getUTCFullYear()}${pad(now.getUTCMonth() + 1)}${pad(now.getUTCDate())}${pad(now.getUTCHours())}`, ends }
}
function dayWindow (now: Date): { id: string, ends: Date } {
  const ends = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + 1))
  return { id: `d${now.getUTCFullYear()}${pad(now.getUTCMonth() + 1)}${pad(now.getUTCDate())}`, ends }
}

export interface Subject { keyId: string, userId: string, keyTier: string, userTier: string, budgetNusd: number | null }

/** The counters one request is held against, with the amounts it holds. */
export function countersFor (s: Subject, tiers: Record<string, TierLimits>, hold: { tokens: number, nusd: number }, now = new Date()): CounterSpec[] {
  const keyTier = tiers[s.keyTier] ?? tiers.default!
  const userTier = tiers[s.userTier] ?? tiers.default!
  const h = hourWindow(now)
  const d = dayWindow(now)
  const out: CounterSpec[] = [
    { name: `req:k:${s.keyId}:${h.id}`, cap: keyTier.requestsPerHour, amount: 1, code: 'RATE_LIMITED', unit: 'requests', expires: h.ends.toISOString() },
    { name: `req:u:${s.userId}:${h.id}`, cap: userTier.userRequestsPerHour, amount: 1, code: 'RATE_LIMITED', unit: 'requests', expires: h.ends.toISOString() },
    { name: `tok:u:${s.userId}:${h.id}`, cap: userTier.tokensPerHour, amount: hold.tokens, code: 'QUOTA_EXCEEDED', unit: 'tokens', expires: h.ends.toISOString() },
    { name: `tok:u:${s.userId}:${d.id}`, cap: userTier.tokensPerDay, amount: hold.tokens, code: 'QUOTA_EXCEEDED', unit: 'tokens', expires: d.ends.toISOString() }
  ]
  if (s.budgetNusd !== null) out.push({ name: `usd:k:${s.keyId}`, cap: s.budgetNusd, amount: hold.nusd, code: 'BUDGET_EXCEEDED', unit: 'nusd', expires: null })
  return out
}

export function describeCounter (name: string): string {
  const [kind, scope, , window] = name.split(':')
  if (kind === 'req') return scope === 'k' ? 'requests per hour for this key' : 'requests per hour for your account'
  if (kind === 'tok') return window?.startsWith('h') ? 'tokens per hour for your account' : 'tokens per day for your account'
  if (kind === 'usd') return "this key's budget"
  return name
}

/** a token count from a peer: a positive integer, anything else counts as unknown (0); the caller bounds it */
export function count (v: unknown): number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v > 0 ? v : 0
}

/** A prompt's measure with `extra` tokens our tokenizer does not see (images, token ids), held and counted as they are. */
export function plus (m: PromptMeasure, extra: number): PromptMeasure {
  return extra === 0 ? m : { hold: m.hold + extra, count: async () => (await m.count()) + extra }
}

/** The prompt tokens charged: the worker's count, or failing one our own, and never more than was held. */
export async function chargedPrompt (reported: number | null, prompt: PromptMeasure): Promise<number> {
  return Math.min(reported || await prompt.count(), prompt.hold)
}
