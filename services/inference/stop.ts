// Stop sequences, the same for every backend: text is released only once it cannot be the start of a
// stop sequence, so the caller never sees a stop sequence or a piece of one.

export class StopFilter {
  private readonly stops: string[]
  private readonly holdBack: number
  private pending = ''
  stopped = false

  constructor (stops: string[] = []) {
    this.stops = stops.filter((s) => s.length > 0)
    this.holdBack = Math.max(0, ...this.stops.map((s) => s.length - 1))
  }

  get active (): boolean { return this.stops.length > 0 }

  /** Feed generated text; returns what may be released now. Sets `stopped` when a stop sequence appears. */
  push (text: string): string {
    if (this.stopped) return ''
    if (!this.active) return text
    this.pending += text
    let cut = -1
    for (const s of this.stops) {
      const i = this.pending.indexOf(s)
      if (i >= 0 && (cut < 0 || i < cut)) cut = i
    }
    if (cut >= 0) {
      const out = this.pending.slice(0, cut)
      this.pending = ''
      this.stopped = true
      return out
    }
    const keep = this.possibleStart()
    const out = this.pending.slice(0, this.pending.length - keep)
    this.pending = this.pending.slice(this.pending.length - keep)
    return out
  }

  /** Length of the longest tail of the pending text that could still grow into a stop sequence. */
  private possibleStart (): number {
    for (let n = Math.min(this.holdBack, this.pending.length); n > 0; n--) {
      const tail = this.pending.slice(this.pending.length - n)
      if (this.stops.some((s) => s.startsWith(tail))) return n
    }
    return 0
  }

  /** The end of generation: whatever was held back is plain text after all. */
  flush (): string {
    const out = this.stopped ? '' : this.pending
    this.pending = ''
    return out
  }
}
