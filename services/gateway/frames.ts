import { MAX_TOOL_CALLS, type TokenLogprob, type ToolCallDelta } from '../../shared/protocol/chat.ts'

// What a worker's frame may carry beyond its text, checked and copied field by field: a worker is a
// stranger to the caller, so nothing it sends passes unless it has the shape and size a real backend
// gives. A field that fails is dropped, or (for a tool call, which the caller acts on) refused.

const CALL_ID = /^[\x21-\x7e]{1,128}$/
const NAME = /^[A-Za-z0-9_.:-]{1,128}$/
/** log probabilities per frame, alternatives per token, characters per token */
const MAX_LOGPROB_TOKENS = 16
const MAX_ALTERNATIVES = 20
const MAX_TOKEN_CHARS = 256

/** A tool-call piece as the gateway passes it on, or a reason it is refused. */
export function checkToolCall (v: unknown): ToolCallDelta | string {
  if (!v || typeof v !== 'object') return 'a tool call that is not an object'
  const c = v as Record<string, unknown>
  if (typeof c.index !== 'number' || !Number.isInteger(c.index) || c.index < 0 || c.index >= MAX_TOOL_CALLS) return `a tool call index outside 0..${MAX_TOOL_CALLS - 1}`
  const out: ToolCallDelta = { index: c.index }
  if (c.id !== undefined) { if (typeof c.id !== 'string' || !CALL_ID.test(c.id)) return 'a malformed tool call id'; out.id = c.id }
  if (c.name !== undefined) { if (typeof c.name !== 'string' || !NAME.test(c.name)) return 'a malformed function name'; out.name = c.name }
  if (c.arguments !== undefined) { if (typeof c.arguments !== 'string') return 'tool call arguments that are not a string'; out.arguments = c.arguments }
  return out
}

/** A frame's log probabilities, bounded; anything malformed is dropped. */
export function checkLogprobs (v: unknown): TokenLogprob[] | undefined {
  if (!Array.isArray(v) || v.length === 0) return undefined
  const one = (x: unknown): { token: string, logprob: number } | null => {
    const e = x as Record<string, unknown> | null
    if (!e || typeof e.token !== 'string' || e.token.length > MAX_TOKEN_CHARS) return null
    if (typeof e.logprob !== 'number' || !Number.isFinite(e.logprob) || e.logprob > 0) return null
    return { token: e.token, logprob: e.logprob }
  }
  const out: TokenLogprob[] = []
  for (const x of v.slice(0, MAX_LOGPROB_TOKENS)) {
    const head = one(x)
    if (!head) return undefined
    const top = (x as { topLogprobs?: unknown }).topLogprobs
    const alternatives = Array.isArray(top) ? top.slice(0, MAX_ALTERNATIVES).map(one).filter((a) => a !== null) : []
    out.push({ ...head, topLogprobs: alternatives })
  }
  return out
}

/** Bytes a log-probability list occupies, near enough: its tokens plus a number's worth each. */
export function logprobBytes (l: TokenLogprob[]): number {
  return l.reduce((n, e) => n + e.token.length + 16 + (e.topLogprobs ?? []).reduce((m, a) => m + a.token.length + 16, 0), 0)
}
