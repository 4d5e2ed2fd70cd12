import { scan, type Detector, type Finding } from './detectors.ts'
import { cutsOutput, type SafetyPolicy } from './policy.ts'

// Output moderation, on the way back and token by token. The answer is checked in windows: every
// CHECK_EVERY characters, the new text together with the last WINDOW characters before it (so a
// phrase split across tokens is still seen), by the content and secret detectors. Under a policy
// that cuts (block, redact) the text of a window is held until it passes, so an unsafe phrase never
// reaches the caller: on a finding the stream ends there, with finish reason content_filter, and
// the worker is stopped. Under flag, text passes at once and findings are only recorded.
// Placeholders the pre-check put in the prompt are restored in the answer when asked to; a
// placeholder split across tokens is held until it is whole.

const CHECK_EVERY = 32
const WINDOW = 256
const OUTPUT_DETECTORS = new Set<Detector>(['content', 'secret'])
const PLACEHOLDER = /\[[A-Z_]{3,16}_\d{1,4}\]/g
const LONGEST_PLACEHOLDER = 24

export interface OutputGuardOptions {
  policy: SafetyPolicy
  /** placeholder → original; null: placeholders stay as the model wrote them */
  restore: Map<string, string> | null
  onFinding: (f: Finding) => void
}

export interface Passed { text: string, stop: boolean }

export class OutputGuard {
  private readonly opts: OutputGuardOptions
  private readonly holdBack: boolean
  /** model text already checked, its last WINDOW characters */
  private tail = ''
  /** model text not checked yet (held, under a policy that cuts) */
  private unchecked = ''
  /** the start of what may be a placeholder, held until it closes */
  private carry = ''
  stopped = false

  constructor (opts: OutputGuardOptions) {
    this.opts = opts
    this.holdBack = cutsOutput(opts.policy)
  }

  /** A worker's answer starts over (another worker took the request): forget the last one. */
  reset (): void { this.tail = ''; this.unchecked = ''; this.carry = ''; this.stopped = false }

  /** One token of the model's text in; what may go to the caller now, and whether to end here. */
  pass (text: string): Passed {
    if (this.stopped) return { text: '', stop: true }
    this.unchecked += text
    if (!this.holdBack) {
      if (this.unchecked.length >= CHECK_EVERY) this.check()
      return { text: this.restore(text), stop: false }
    }
    if (this.unchecked.length < CHECK_EVERY) return { text: '', stop: false }
    return this.release()
  }

  /** The answer is complete: check and release what is held. */
  flush (): Passed {
    if (this.stopped) return { text: '', stop: true }
    let out: Passed = { text: '', stop: false }
    if (this.holdBack) out = this.release()
    else if (this.unchecked) this.check()
    if (out.stop) return out
    const rest = this.carry
    this.carry = ''
    return { text: out.text + this.restoreAll(rest), stop: false }
  }

  private release (): Passed {
    const text = this.unchecked
    if (this.check()) { this.stopped = true; return { text: '', stop: true } }
    return { text: this.restore(text), stop: false }
  }

  /** Scan the unchecked text in its window; true if the policy cuts the answer here. */
  private check (): boolean {
    const window = this.tail + this.unchecked
    const fresh = scan(window, { detectors: OUTPUT_DETECTORS }).filter((f) => f.end > this.tail.length)
    for (const f of fresh) this.opts.onFinding(f)
    this.tail = window.slice(-WINDOW)
    this.unchecked = ''
    return this.holdBack && fresh.length > 0
  }

  private restore (text: string): string {
    if (!this.opts.restore) return text
    const s = this.carry + text
    const open = s.lastIndexOf('[')
    const held = open >= 0 && s.indexOf(']', open) < 0 && s.length - open <= LONGEST_PLACEHOLDER
    this.carry = held ? s.slice(open) : ''
    return this.restoreAll(held ? s.slice(0, open) : s)
  }

  private restoreAll (s: string): string {
    const map = this.opts.restore
    return map ? s.replace(PLACEHOLDER, (ph) => map.get(ph) ?? ph) : s
  }
}
