import crypto from 'node:crypto'
import type { ChatMessage } from '../../../shared/protocol/inference.ts'

// What makes two requests "the same" to the response cache. The key covers the model that will answer
// and everything in the request that can change the answer: the messages (normalized) and every other
// generation field the request carries — sampling parameters, stop sequences, seed, tools, response
// format, whatever the protocol grows — so a new parameter is part of the key without a change here.
// Only fields that say how to deliver or account the answer are left out.

/** request fields that never change the answer's text */
const DELIVERY_FIELDS = new Set(['apiKey', 'model', 'route', 'prompt', 'messages', 'stream', 'traceId', 'cache', 'clientIp'])

/** How a caller asks the cache to behave: 'auto' caches deterministic requests only. */
export type CacheDirective = 'auto' | 'use' | 'no-store'

/** The directive a request's `cache` field carries: true → 'use', 'no-store' or false → 'no-store'. */
export function directiveOf (cache: unknown): CacheDirective {
  if (cache === true) return 'use'
  if (cache === false || cache === 'no-store') return 'no-store'
  return 'auto'
}

/**
 * Messages as the cache compares them: the text in Unicode NFC with LF line ends and no surrounding
 * whitespace; every other field of a message (name, images, tool calls, tool call id) as given.
 */
export function normalizeMessages (messages: readonly ChatMessage[]): ChatMessage[] {
  return messages.map((m) => ({ ...m, content: m.content.normalize('NFC').replace(/\r\n?/g, '\n').trim() }))
}

/** The generation fields of a request (everything but delivery), sorted by name. */
export function generationFields (req: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const k of Object.keys(req).sort()) if (!DELIVERY_FIELDS.has(k) && req[k] !== undefined) out[k] = req[k]
  return out
}

/** A request whose answer is a function of its input: temperature 0, or a fixed seed. */
export function isDeterministic (req: Record<string, unknown>): boolean {
  return req.temperature === 0 || (typeof req.seed === 'number' && Number.isFinite(req.seed))
}

/** JSON with object keys sorted at every depth, so equal values always print equally. */
export function canonicalJson (v: unknown): string {
  if (Array.isArray(v)) return '[' + v.map(canonicalJson).join(',') + ']'
  if (v && typeof v === 'object') {
    return '{' + Object.keys(v).sort().filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .map((k) => JSON.stringify(k) + ':' + canonicalJson((v as Record<string, unknown>)[k])).join(',') + '}'
  }
  return JSON.stringify(v) ?? 'null'
}

/** The cache key: sha256 over the model, the normalized messages and the generation fields. */
export function cacheKey (model: string, messages: readonly ChatMessage[], req: Record<string, unknown>): string {
  return crypto.hash('sha256', canonicalJson({ model, messages: normalizeMessages(messages), params: generationFields(req) }), 'hex')
}

/** The fingerprint semantic lookups must share: the same model and parameters, any wording. */
export function paramsKey (model: string, req: Record<string, unknown>, system: string): string {
  return crypto.hash('sha256', canonicalJson({ model, system, params: generationFields(req) }), 'hex')
}
