import { esc } from './escape.ts'
import { fmtCompact, fmtInt, fmtUsd } from './format.ts'

// The usage-by-day chart: inline SVG bars (stretched to the width of the page) with the axis labels
// in HTML around it, so the text stays readable from phone to laptop. No script, no library.

export type Metric = 'requests' | 'tokens' | 'cost'

export interface DailyRow { date: string, requests?: number, tokensIn?: number, tokensOut?: number, errors?: number, costUsd?: number | null }

const DAY = 86_400_000

function dayKey (t: number): string { return new Date(t).toISOString().slice(0, 10) }

export function valueOf (row: DailyRow | undefined, metric: Metric): number | null {
  if (!row) return 0
  if (metric === 'requests') return row.requests ?? 0
  if (metric === 'tokens') return (row.tokensIn ?? 0) + (row.tokensOut ?? 0)
  return typeof row.costUsd === 'number' ? row.costUsd : null
}

/** Every day of the window, oldest first, with the rows that exist (missing days are zero). */
export function series (daily: DailyRow[], days: number, now = Date.now()): Array<{ date: string, row: DailyRow | undefined }> {
  const byDate = new Map(daily.map((d) => [d.date, d]))
  const last = daily.reduce((m, d) => (d.date > m ? d.date : m), dayKey(now))
  const end = Date.parse(last + 'T00:00:00Z')
  const out: Array<{ date: string, row: DailyRow | undefined }> = []
  for (let i = days - 1; i >= 0; i--) {
    const date = dayKey(end - i * DAY)
    out.push({ date, row: byDate.get(date) })
  }
  return out
}

function niceMax (max: number): number {
  if (max <= 0) return 1
  const pow = 10 ** Math.floor(Math.log10(max))
  // 2.5 only from 25 up, so whole counts keep whole halves (1.25 requests is no label)
  for (const m of pow >= 10 ? [1, 2, 2.5, 5, 10] : [1, 2, 5, 10]) if (m * pow >= max) return m * pow
  return 10 * pow
}

function label (metric: Metric, v: number): string {
  if (metric === 'cost') return fmtUsd(v)
  if (!Number.isInteger(v)) return v.toFixed(1)
  if (metric === 'tokens') return fmtCompact(v)
  return fmtInt(v)
}

function shortDate (date: string): string {
  return new Date(date + 'T00:00:00Z').toLocaleDateString('en-US', { month: 'short', day: 'numeric', timeZone: 'UTC' })
}

const UNIT: Record<Metric, string> = { requests: 'requests', tokens: 'tokens', cost: 'USD' }

export function usageChart (daily: DailyRow[], days: number, metric: Metric): string {
  const points = series(daily, days).map((p) => ({ ...p, value: valueOf(p.row, metric) }))
  const known = points.filter((p) => p.value !== null)
  if (metric === 'cost' && daily.length > 0 && daily.every((d) => typeof d.costUsd !== 'number')) {
    return '<div class="chart-note">Cost is not reported for this account yet.</div>'
  }
  const max = niceMax(Math.max(0, ...known.map((p) => p.value as number)))
  const w = 10
  const bars = points.map((p, i) => {
    const v = p.value ?? 0
    const h = v <= 0 ? 0 : Math.max(1.5, (v / max) * 100)
    const title = `${shortDate(p.date)}: ${p.value === null ? '—' : label(metric, v)} ${metric === 'cost' ? '' : UNIT[metric]}`.trim()
    return `<rect class="bar" x="${i * w + 1.5}" y="${(100 - h).toFixed(2)}" width="${w - 3}" height="${h.toFixed(2)}" data-date="${p.date}" data-value="${v}"><title>${esc(title)}</title></rect>`
  }).join('')
  const grid = [0, 50].map((y) => `<line class="grid" x1="0" x2="${points.length * w}" y1="${y}" y2="${y}" vector-effect="non-scaling-stroke"/>`).join('')
  const total = known.reduce((a, p) => a + (p.value as number), 0)
  const mid = points[Math.floor(points.length / 2)]!
  return `<figure class="chart" data-metric="${metric}">
  <div class="chart-grid">
    <div class="y-axis" aria-hidden="true"><span>${label(metric, max)}</span><span>${label(metric, max / 2)}</span><span>0</span></div>
    <div class="plot">
      <svg viewBox="0 0 ${points.length * w} 100" preserveAspectRatio="none" role="img" aria-label="${esc(`${UNIT[metric]} per day, last ${days} days`)}">
        ${grid}<line class="axis" x1="0" x2="${points.length * w}" y1="100" y2="100" vector-effect="non-scaling-stroke"/>${bars}
      </svg>
      ${total === 0 ? `<div class="chart-empty">No ${metric === 'cost' ? 'spend' : UNIT[metric]} in the last ${days} days yet.</div>` : ''}
    </div>
    <span></span>
    <div class="x-axis" aria-hidden="true"><span>${shortDate(points[0]!.date)}</span><span>${shortDate(mid.date)}</span><span>${shortDate(points[points.length - 1]!.date)}</span></div>
  </div>
</figure>`
}
