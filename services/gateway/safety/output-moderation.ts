import { scan, type Detector } from './detectors.ts'
import { cutsOutput, type SafetyPolicy } from './policy.ts'

// Output moderation, on the way back and token by token. The answer is checked in windows: every
// CHECK_EVERY characters, the new text together with the last WINDOW characters before it (so a
// phrase split across tokens is still seen), by the content and secret detectors. Under a policy
// that cuts (block, redact) the text of a window is held until it passes, so an unsafe phrase never
// reaches the caller: on a finding the stream ends there, with finish reason content_filter, and
// the worker is stopped. Under flag, text passes at once and findings are only recorded.
// When the mesh serves a moderation model (`model`), text the detectors passed is held once more
// until the model has judged it: a window of `model.window` characters at a time (with the last
// WINDOW characters it saw before, for context), one classification at a time per answer, the last
// window whatever its size. The model's text arrives on its own time, so released text and the cut
// go to the sink `attach` gave. No verdict (the model busy, slow or failing) lets the window pass,
// or ends the answer when the operator chose fail-closed.
// Placeholders the pre-check put in the prompt are restored in the answer when asked to; a
// placeholder split across tokens is held until it is whole.

const CHECK_EVERY = 32
const WINDOW = 256
const OUTPUT_DETECTORS = new Set<Detector>(['content', 'secret'])
const PLACEHOLDER = /\[[A-Z_]{3,16}_\d{1,4}\]/g
const LONGEST_PLACEHOLDER = 24
/** one classification covers at most this many windows of text that piled up while the last ran */
const MAX_WINDOWS_PER_CHECK = 4

/** The moderation model as the guard uses it. */
export interface WindowModel {
  /** characters of the answer judged at a time */
  window: number
  /** what no verdict means: true ends the answer (content_filter), false lets the text pass */
  failClosed: boolean
  /** the categories the model finds in `text` (empty: safe), or null when it gave no verdict */
  classify (text: string): Promise<string[] | null>
}

export interface OutputGuardOptions {
  policy: SafetyPolicy
  /** placeholder → original; null: placeholders stay as the model wrote them */
  restore: Map<string, string> | null
  onFinding: (f: { detector: string, category: string }) => void
  /** the mesh's moderation model, under a policy that cuts; null: the detectors only */
  model?: WindowModel | null
}

export interface Passed { text: string, stop: boolean }

/** Where text released later (after the model's verdict) goes, and how the answer is ended then. */
export interface GuardSink { release (text: string): void, cut (): void }

const STOP: Passed = { text: '', stop: true }

export class OutputGuard {
  private readonly opts: OutputGuardOptions
  private readonly holdBack: boolean
  private readonly model: WindowModel | null
  /** model text already checked, its last WINDOW characters */
  private tail = ''
  /** model text not checked yet (held, under a policy that cuts) */
  private unchecked = ''
  /** the start of what may be a placeholder, held until it closes */
  private carry = ''
  /** text the detectors passed, waiting for the model */
  private queued = ''
  /** the last WINDOW characters the model judged */
  private modelTail = ''
  private checking: Promise<void> | null = null
  /** bumped when the answer starts over: verdicts on the old one are ignored */
  private generation = 0
  private sink: GuardSink | null = null
  stopped = false

  constructor (opts: OutputGuardOptions) {
    this.opts = opts
    this.holdBack = cutsOutput(opts.policy)
    this.model = this.holdBack ? opts.model ?? null : null
  }

  attach (sink: GuardSink): void { this.sink = sink }

  /** A worker's answer starts over (another worker took the request): forget the last one. */
  reset (): void {
    this.tail = ''; this.unchecked = ''; this.carry = ''; this.queued = ''; this.modelTail = ''
    this.checking = null; this.stopped = false; this.generation++
  }

  /** One token of the model's text in; what may go to the caller now, and whether to end here. */
  pass (text: string): Passed {
    if (this.stopped) return STOP
    this.unchecked += text
    if (!this.holdBack) {
      if (this.unchecked.length >= CHECK_EVERY) this.check()
      return { text: this.restore(text), stop: false }
    }
    if (this.unchecked.length < CHECK_EVERY) return { text: '', stop: false }
    return this.release()
  }

  /** The answer is complete: check and release what is held (waiting for the model's last verdicts). */
  async flush (): Promise<Passed> {
    if (this.stopped) return STOP
    let out: Passed = { text: '', stop: false }
    if (this.holdBack) out = this.release()
    else if (this.unchecked) this.check()
    if (out.stop) return out
    while (this.model && (this.checking || this.queued)) {
      if (!this.checking) this.classify()
      await this.checking
      if (this.stopped) return STOP
    }
    const rest = this.carry
    this.carry = ''
    return { text: out.text + this.restoreAll(rest), stop: false }
  }

  private release (): Passed {
    const text = this.unchecked
    if (this.check()) { this.stopped = true; return STOP }
    // with a model, the text waits for its verdict (check queued it)
    return { text: this.model ? '' : this.restore(text), stop: false }
  }

  /** Scan the unchecked text in its window; true if the policy cuts the answer here. */
  private check (): boolean {
    const checked = this.unchecked
    const window = this.tail + checked
    const fresh = scan(window, { detectors: OUTPUT_DETECTORS }).filter((f) => f.end > this.tail.length)
    for (const f of fresh) this.opts.onFinding(f)
    this.tail = window.slice(-WINDOW)
    this.unchecked = ''
    const cut = this.holdBack && fresh.length > 0
    if (!cut && this.model) {
      this.queued += checked
      if (this.queued.length >= this.model.window) this.classify()
    }
    return cut
  }

  /** Ask the model about the queued text, unless it is judging a window already. */
  private classify (): void {
    const model = this.model
    if (!model || this.checking || !this.queued || this.stopped) return
    const text = this.queued.slice(0, model.window * MAX_WINDOWS_PER_CHECK)
    this.queued = this.queued.slice(text.length)
    const generation = this.generation
    this.checking = model.classify(this.modelTail + text).catch(() => null).then((verdict) => {
      if (generation !== this.generation || this.stopped) return
      this.checking = null
      this.modelTail = (this.modelTail + text).slice(-WINDOW)
      for (const category of verdict ?? []) this.opts.onFinding({ detector: 'model', category })
      const unsafe = verdict !== null && verdict.length > 0
      if (unsafe || (verdict === null && model.failClosed)) {
        if (verdict === null) this.opts.onFinding({ detector: 'model', category: 'unavailable' })
        this.stopped = true
        this.sink?.cut()
        return
      }
      this.sink?.release(this.restore(text))
      if (this.queued.length >= model.window) this.classify()
    })
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
