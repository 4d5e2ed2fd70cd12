import type { ChatMessage } from '../../../shared/protocol/inference.ts'
import { scan, type Category, type Detector, type Finding } from './detectors.ts'
import { inputAction, type SafetyAction, type SafetyPolicy } from './policy.ts'

// The input pre-check: one pass of the built-in detectors over a request's messages, and what the
// key's policy makes of each finding. Under `redact` each item is replaced by a placeholder
// ([EMAIL_1], [CARD_2], …; one item keeps one placeholder throughout the request), so the worker
// never sees the original; the placeholders map back to the originals for restoring the answer.
// Injection patterns are looked for in what a caller writes (user and assistant turns), not in the
// system prompt an application sets; personal data and secrets in every message.

export interface Decision { detector: Detector, category: Category, action: Exclude<SafetyAction, 'filter' | 'suspend' | 'slow'> }

export interface PrecheckResult {
  /** the messages to send on: the originals, or with placeholders under redact */
  messages: ChatMessage[]
  decisions: Decision[]
  /** a finding the policy blocks on, if any */
  blocked: Decision | null
  /** placeholder → original, for restoring the answer (empty unless something was redacted) */
  placeholders: Map<string, string>
}

const NO_INJECTION_SCAN = new Set<Detector>(['pii', 'secret', 'content'])

export function precheck (messages: ChatMessage[], policy: SafetyPolicy): PrecheckResult {
  const decisions: Decision[] = []
  const placeholders = new Map<string, string>()
  if (policy === 'off') return { messages, decisions, blocked: null, placeholders }
  const byOriginal = new Map<string, string>()
  const counts = new Map<Category, number>()
  let blocked: Decision | null = null
  const out = messages.map((m) => {
    const findings = scan(m.content, m.role === 'system' ? { detectors: NO_INJECTION_SCAN } : {})
    if (findings.length === 0) return m
    let redacted = false
    for (const f of findings) {
      const action = inputAction(policy, f.category)!
      const d = { detector: f.detector, category: f.category, action }
      decisions.push(d)
      if (action === 'block' && !blocked) blocked = d
      if (action === 'redact') redacted = true
    }
    if (!redacted || blocked) return m
    return { ...m, content: replace(m.content, findings.filter((f) => inputAction(policy, f.category) === 'redact'), (f, original) => {
      let ph = byOriginal.get(original)
      if (!ph) {
        const n = (counts.get(f.category) ?? 0) + 1
        counts.set(f.category, n)
        ph = `[${f.category.toUpperCase()}_${n}]`
        byOriginal.set(original, ph)
        placeholders.set(ph, original)
      }
      return ph
    }) }
  })
  return { messages: blocked ? messages : out, decisions, blocked, placeholders }
}

/** `text` with each finding (in order, not overlapping) replaced by what `by` gives for it. */
function replace (text: string, findings: Finding[], by: (f: Finding, original: string) => string): string {
  let out = ''
  let at = 0
  for (const f of findings) {
    out += text.slice(at, f.start) + by(f, text.slice(f.start, f.end))
    at = f.end
  }
  return out + text.slice(at)
}

/** The text of every message, for detectors and classifiers that read the whole conversation. */
export function conversationText (messages: ChatMessage[]): string {
  return messages.map((m) => m.content).join('\n')
}
