// Prometheus text exposition (format 0.0.4): parse one member's output and merge many into one.
//
// Every member exports the same families (process metrics, ai_platform_requests_total, …). Simply
// concatenating their outputs would repeat `# HELP` / `# TYPE` and split a family's samples, which
// Prometheus and promtool reject. The merger keeps one entry per family (the first HELP seen, one TYPE),
// appends every member's samples under it with `service` and `instance` labels, and drops a member's
// family whose TYPE disagrees with the one already merged (counted, so the operator sees it).

export interface Sample { name: string, labels: Array<[string, string]>, value: string, timestamp?: string }
export interface ParsedFamily { name: string, help: string | null, type: string, samples: Sample[] }

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/
const VALUE = /^(?:[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?Inf|NaN)$/
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped'])

/** Sample names a family of this type owns. */
function owns (family: string, type: string, sample: string): boolean {
  if (sample === family) return type !== 'histogram'
  if (type === 'histogram') return sample === family + '_bucket' || sample === family + '_sum' || sample === family + '_count'
  if (type === 'summary') return sample === family + '_sum' || sample === family + '_count'
  return false
}

/** Escape a label value for the text format. */
export function escapeLabel (v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')
}

/** Parse `name{a="x",b="y"} value [ts]`; label values stay escaped as they came. Null if malformed. */
export function parseSample (line: string): Sample | null {
  let i = 0
  while (i < line.length && line[i] !== '{' && line[i] !== ' ' && line[i] !== '\t') i++
  const name = line.slice(0, i)
  if (!METRIC_NAME.test(name)) return null
  const labels: Array<[string, string]> = []
  if (line[i] === '{') {
    i++
    for (;;) {
      while (line[i] === ' ' || line[i] === ',') i++
      if (line[i] === '}') { i++; break }
      const eq = line.indexOf('=', i)
      if (eq < 0) return null
      const key = line.slice(i, eq).trim()
      if (!LABEL_NAME.test(key) || line[eq + 1] !== '"') return null
      let j = eq + 2
      let raw = ''
      for (;;) {
        if (j >= line.length) return null
        const ch = line[j]!
        if (ch === '\\') { raw += ch + (line[j + 1] ?? ''); j += 2; continue }
        if (ch === '"') break
        raw += ch
        j++
      }
      labels.push([key, raw])
      i = j + 1
    }
  }
  const rest = line.slice(i).trim().split(/\s+/)
  if (rest.length < 1 || rest.length > 2 || !VALUE.test(rest[0]!)) return null
  if (rest[1] !== undefined && !/^-?\d+$/.test(rest[1])) return null
  return { name, labels, value: rest[0]!, ...(rest[1] !== undefined ? { timestamp: rest[1] } : {}) }
}

export function parseExposition (text: string): { families: ParsedFamily[], malformed: number } {
  const families = new Map<string, ParsedFamily>()
  let current: ParsedFamily | null = null
  let malformed = 0
  const get = (name: string) => {
    let f = families.get(name)
    if (!f) { f = { name, help: null, type: 'untyped', samples: [] }; families.set(name, f) }
    return f
  }
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (!line) continue
    if (line.startsWith('#')) {
      const m = /^#\s+(HELP|TYPE)\s+(\S+)(?:\s(.*))?$/.exec(line)
      if (!m) continue // an ordinary comment
      const [, kind, name, arg] = m
      if (!METRIC_NAME.test(name!)) { malformed++; continue }
      const f = get(name!)
      if (kind === 'HELP') { if (f.help === null) f.help = arg ?? '' } else {
        const type = (arg ?? '').trim()
        if (!TYPES.has(type)) { malformed++; continue }
        f.type = type
      }
      current = f
      continue
    }
    const s = parseSample(line)
    if (!s) { malformed++; continue }
    let f: ParsedFamily | undefined
    if (current && owns(current.name, current.type, s.name)) f = current
    else {
      // a sample outside its family's block: find its family by name (or its histogram/summary base)
      f = families.get(s.name)
      if (!f || !owns(f.name, f.type, s.name)) {
        const base = s.name.replace(/_(bucket|sum|count)$/, '')
        const b = families.get(base)
        f = b && owns(b.name, b.type, s.name) ? b : get(s.name)
      }
    }
    f.samples.push(s)
  }
  return { families: [...families.values()], malformed }
}

interface MergedFamily { help: string | null, type: string, lines: string[] }

export class ExpositionMerger {
  private readonly families = new Map<string, MergedFamily>()
  /** families dropped because their TYPE disagreed with an earlier member's */
  conflicts = 0
  malformed = 0

  /**
   * Add one member's exposition. `service` is kept if the member set it (what the process says it is),
   * `instance` is always ours, so two members never produce the same series.
   */
  addText (text: string, target: { service: string, instance: string }): void {
    const parsed = parseExposition(text)
    this.malformed += parsed.malformed
    for (const f of parsed.families) this.addFamily(f, target)
  }

  /** Without a target, samples keep exactly the labels they carry. */
  addFamily (f: ParsedFamily, target?: { service: string, instance: string }): void {
    if (f.samples.length === 0 && this.families.has(f.name)) return
    let m = this.families.get(f.name)
    if (!m) {
      m = { help: f.help, type: f.type, lines: [] }
      this.families.set(f.name, m)
    } else if (m.type !== f.type) {
      this.conflicts++
      return
    }
    if (m.help === null && f.help !== null) m.help = f.help
    for (const s of f.samples) {
      if (!target) {
        m.lines.push(`${s.name}${s.labels.length ? `{${s.labels.map(([k, v]) => `${k}="${v}"`).join(',')}}` : ''} ${s.value}`)
        continue
      }
      const service = s.labels.find(([k]) => k === 'service')?.[1] ?? escapeLabel(target.service)
      const rest = s.labels.filter(([k]) => k !== 'service' && k !== 'instance')
      const labels = [['service', service], ['instance', escapeLabel(target.instance)], ...rest].map(([k, v]) => `${k}="${v}"`).join(',')
      m.lines.push(`${s.name}{${labels}} ${s.value}${s.timestamp ? ' ' + s.timestamp : ''}`)
    }
  }

  /** A gauge computed by the merger itself (ai_platform_up …), one sample per label set. */
  addGauge (name: string, help: string, samples: Array<{ labels: Record<string, string>, value: number }>): void {
    this.addFamily({
      name, help, type: 'gauge',
      samples: samples.map((s) => ({ name, labels: Object.entries(s.labels).map(([k, v]) => [k, escapeLabel(v)] as [string, string]), value: formatValue(s.value) }))
    })
  }

  render (): string {
    const out: string[] = []
    for (const [name, f] of this.families) {
      out.push(`# HELP ${name} ${f.help || '(the exporting service gave no help text)'}`)
      out.push(`# TYPE ${name} ${f.type}`)
      for (const l of f.lines) out.push(l)
    }
    return out.join('\n') + '\n'
  }
}

function formatValue (v: number): string {
  if (Number.isNaN(v)) return 'NaN'
  if (v === Infinity) return '+Inf'
  if (v === -Infinity) return '-Inf'
  return String(v)
}
