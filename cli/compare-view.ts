import type { CompareEntry, CompareResult } from '../shared/sdk/compare.ts'
import { table } from './output.ts'
import { clip, pad, printable, width, wrap } from './text-width.ts'

// How `hyperinfer compare` shows several answers arriving at once. On a terminal wide enough, side
// by side: one column per model, redrawn in place as tokens come (the last screenful of each while
// streaming, everything once all are done). Anywhere else (a pipe, a file, a narrow terminal), as
// lines labelled with the model, each written as soon as it is complete. Both end with a summary:
// tokens, time to first token, latency and cost per model.

export interface CompareView {
  delta (index: number, text: string): void
  result (entry: CompareEntry): void
  finish (result: CompareResult): void
}

export interface Screen {
  write (text: string): void
  /** a terminal, redrawn in place; otherwise the columns are written once, at the end */
  live: boolean
  columns: number
  rows: number
}

const GAP = ' │ '
/** the narrowest column worth showing; below that, labelled lines */
export const MIN_COLUMN = 24

export function fitsColumns (models: number, columns: number): boolean {
  return models * MIN_COLUMN + (models - 1) * GAP.length <= columns
}

export function fmtUsd (nano: number | null): string {
  if (nano === null) return '-'
  if (nano === 0) return '$0'
  // exact to the nano-dollar, without trailing zeros
  return '$' + (nano / 1e9).toFixed(9).replace(/0+$/, '').replace(/\.$/, '')
}

const fmtMs = (ms: number | null | undefined) => ms === null || ms === undefined ? '-' : `${ms} ms`

function status (e: CompareEntry): string {
  if (e.error) return `error [${e.error.code}]`
  return `${e.usage!.promptTokens}→${e.usage!.completionTokens} tok · ${fmtMs(e.latencyMs)} · ${fmtUsd(e.costNanoUsd)}`
}

/** The per-model summary and the total, as a table. */
export function summary (r: CompareResult): string {
  const rows = [['model', 'tokens in→out', 'ttft', 'latency', 'cost', 'finish']]
  for (const e of r.results) {
    if (e.error) rows.push([e.model, '-', '-', fmtMs(e.latencyMs), '-', `error: ${printable(e.error.message)} [${e.error.code}]`])
    else rows.push([e.model, `${e.usage!.promptTokens}→${e.usage!.completionTokens}`, fmtMs(e.ttftMs), fmtMs(e.latencyMs), fmtUsd(e.costNanoUsd), (e.finishReason ?? '-') + (e.cached ? ' (cached)' : '')])
  }
  const slowest = Math.max(...r.results.map((e) => e.latencyMs))
  rows.push(['total', `${r.usage.promptTokens}→${r.usage.completionTokens}`, '', fmtMs(slowest), fmtUsd(r.costNanoUsd), ''])
  return table(rows)
}

/** Where to break `text` to fit `w` cells: at its last fitting space, else as many characters as fit. */
function breakAt (text: string, w: number): number {
  let used = 0
  let at = 0
  let space = -1
  for (const ch of text) {
    const c = width(ch)
    if (used + c > w) break
    if (ch === ' ') space = at
    used += c
    at += ch.length
  }
  return space > 0 ? space : Math.max(at, 1)
}

/** Labelled lines: `model | text`, a line at a time, wrapped to the screen. */
export class LinesView implements CompareView {
  private readonly models: string[]
  private readonly screen: Screen
  private readonly pending: string[]
  private readonly labelWidth: number
  private readonly textWidth: number

  constructor (models: string[], screen: Screen) {
    this.models = models
    this.screen = screen
    this.pending = models.map(() => '')
    this.labelWidth = Math.max(...models.map((m) => width(printable(m))))
    this.textWidth = Math.max(20, screen.columns - this.labelWidth - 3)
  }

  private emit (index: number, line: string): void {
    this.screen.write(`${pad(printable(this.models[index]!), this.labelWidth)} | ${line}\n`)
  }

  delta (index: number, text: string): void {
    let buf = this.pending[index] + printable(text)
    for (;;) {
      const nl = buf.indexOf('\n')
      if (nl >= 0) { this.emit(index, buf.slice(0, nl)); buf = buf.slice(nl + 1); continue }
      if (width(buf) <= this.textWidth) break
      // a full line: break it at its last space that fits (or mid-word), and keep the rest for later
      const k = breakAt(buf, this.textWidth)
      this.emit(index, buf.slice(0, k))
      buf = buf.slice(k).replace(/^ +/, '')
    }
    this.pending[index] = buf
  }

  result (e: CompareEntry): void {
    if (this.pending[e.index]) this.emit(e.index, this.pending[e.index]!)
    this.pending[e.index] = ''
    if (e.error) this.emit(e.index, `error: ${printable(e.error.message)} [${e.error.code}]`)
  }

  finish (r: CompareResult): void {
    this.screen.write('\n' + summary(r) + '\n')
  }
}

/** Side by side: a column per model, redrawn in place while the answers stream. */
export class ColumnsView implements CompareView {
  private readonly models: string[]
  private readonly screen: Screen
  private readonly texts: string[]
  private readonly entries: Array<CompareEntry | null>
  private readonly colWidth: number
  private drawn = 0
  private timer: NodeJS.Timeout | null = null

  constructor (models: string[], screen: Screen) {
    this.models = models
    this.screen = screen
    this.texts = models.map(() => '')
    this.entries = models.map(() => null)
    this.colWidth = Math.floor((screen.columns - GAP.length * (models.length - 1)) / models.length)
  }

  /** The columns as lines: header, rule, bodies (their last `tail` lines when given), status. */
  frame (tail?: number): string[] {
    const w = this.colWidth
    const bodies = this.models.map((_, i) => {
      const e = this.entries[i]
      const lines = this.texts[i] ? wrap(this.texts[i]!, w) : []
      if (e?.error) lines.push(...wrap(`error: ${e.error.message}`, w))
      return tail === undefined ? lines : lines.slice(-tail)
    })
    const height = Math.max(...bodies.map((b) => b.length))
    const row = (cells: string[]) => cells.map((c) => pad(c, w)).join(GAP).trimEnd()
    const out = [row(this.models.map((m) => clip(printable(m), w))), this.models.map(() => '─'.repeat(w)).join('─┼─')]
    for (let l = 0; l < height; l++) out.push(row(bodies.map((b) => b[l] ?? '')))
    out.push(row(this.entries.map((e) => clip(e ? status(e) : '…', w))))
    return out
  }

  private draw (): void {
    this.timer = null
    // while streaming, the frame fits the screen so it can be redrawn in place
    const lines = this.frame(Math.max(3, this.screen.rows - 5))
    this.screen.write(this.erase() + lines.join('\n') + '\n')
    this.drawn = lines.length
  }

  private erase (): string {
    return this.drawn ? `\x1b[${this.drawn}F\x1b[J` : ''
  }

  private schedule (): void {
    if (this.screen.live && !this.timer) this.timer = setTimeout(() => this.draw(), 40)
  }

  delta (index: number, text: string): void {
    this.texts[index] += text
    this.schedule()
  }

  result (e: CompareEntry): void {
    this.entries[e.index] = e
    // the answer as the model finished it, whatever streamed before
    if (!e.error) this.texts[e.index] = e.text
    this.schedule()
  }

  finish (r: CompareResult): void {
    if (this.timer) clearTimeout(this.timer)
    this.timer = null
    for (const e of r.results) this.result(e)
    if (this.timer) clearTimeout(this.timer)
    this.screen.write((this.screen.live ? this.erase() : '') + this.frame().join('\n') + '\n\n' + summary(r) + '\n')
    this.drawn = 0
  }
}
