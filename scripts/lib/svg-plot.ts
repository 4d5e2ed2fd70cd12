// A small SVG line-chart writer for the benches' plots (no charting dependency): panels stacked
// vertically, each with its own y axis, a shared x axis in minutes, a legend, and a dashed line for
// a panel's optional marker (e.g. where warm-up ends).

export interface Series { name: string, points: Array<[x: number, y: number]> }
export interface Panel { title: string, yLabel: string, series: Series[], /** an x value to mark with a dashed line */ markX?: number }

const W = 900
const PANEL_H = 300
const M = { left: 70, right: 190, top: 34, bottom: 40 }
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf']

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

/** ~5 round tick values covering [lo, hi] */
export function ticks (lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo]
  const raw = (hi - lo) / count
  const mag = 10 ** Math.floor(Math.log10(raw))
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw)!
  const out: number[] = []
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)))
  return out
}

function fmt (v: number): string {
  if (v === 0) return '0'
  const a = Math.abs(v)
  return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1).replace(/\.0$/, '') : Number(v.toPrecision(3)).toString()
}

function panel (p: Panel, top: number, xMin: number, xMax: number, xLabel: string): string {
  const ys = p.series.flatMap((s) => s.points.map(([, y]) => y)).filter(Number.isFinite)
  let yMin = Math.min(0, ...ys)
  let yMax = ys.length ? Math.max(...ys) : 1
  if (yMax <= yMin) yMax = yMin + 1
  yMax += (yMax - yMin) * 0.05
  const ph = PANEL_H - M.top - M.bottom
  const pw = W - M.left - M.right
  const X = (x: number) => M.left + (xMax > xMin ? (x - xMin) / (xMax - xMin) : 0) * pw
  const Y = (y: number) => top + M.top + ph - (y - yMin) / (yMax - yMin) * ph
  const out: string[] = []
  out.push(`<text x="${M.left}" y="${top + 20}" font-size="15" font-weight="bold">${esc(p.title)}</text>`)
  out.push(`<rect x="${M.left}" y="${top + M.top}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`)
  for (const t of ticks(yMin, yMax)) {
    out.push(`<line x1="${M.left}" x2="${M.left + pw}" y1="${Y(t).toFixed(1)}" y2="${Y(t).toFixed(1)}" stroke="#eee"/>`)
    out.push(`<text x="${M.left - 6}" y="${(Y(t) + 4).toFixed(1)}" font-size="11" text-anchor="end">${fmt(t)}</text>`)
  }
  for (const t of ticks(xMin, xMax)) {
    out.push(`<line x1="${X(t).toFixed(1)}" x2="${X(t).toFixed(1)}" y1="${top + M.top + ph}" y2="${top + M.top + ph + 4}" stroke="#999"/>`)
    out.push(`<text x="${X(t).toFixed(1)}" y="${top + M.top + ph + 16}" font-size="11" text-anchor="middle">${fmt(t)}</text>`)
  }
  out.push(`<text x="${M.left + pw / 2}" y="${top + PANEL_H - 6}" font-size="12" text-anchor="middle">${esc(xLabel)}</text>`)
  out.push(`<text transform="translate(16 ${top + M.top + ph / 2}) rotate(-90)" font-size="12" text-anchor="middle">${esc(p.yLabel)}</text>`)
  if (p.markX !== undefined && p.markX > xMin && p.markX < xMax) {
    out.push(`<line x1="${X(p.markX).toFixed(1)}" x2="${X(p.markX).toFixed(1)}" y1="${top + M.top}" y2="${top + M.top + ph}" stroke="#666" stroke-dasharray="4 4"/>`)
  }
  p.series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length]
    const pts = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)).map(([x, y]) => `${X(x).toFixed(1)},${Y(y).toFixed(1)}`)
    if (pts.length > 0) out.push(`<polyline fill="none" stroke="${color}" stroke-width="1.6" points="${pts.join(' ')}"/>`)
    const ly = top + M.top + 8 + i * 18
    out.push(`<line x1="${W - M.right + 12}" x2="${W - M.right + 32}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="3"/>`)
    out.push(`<text x="${W - M.right + 38}" y="${ly + 4}" font-size="12">${esc(s.name)}</text>`)
  })
  return out.join('\n')
}

/** The panels as one SVG document, sharing the x range of all their points. */
export function renderSvg (title: string, panels: Panel[], xLabel: string): string {
  const xs = panels.flatMap((p) => p.series.flatMap((s) => s.points.map(([x]) => x))).filter(Number.isFinite)
  const xMin = xs.length ? Math.min(...xs) : 0
  const xMax = xs.length ? Math.max(...xs) : 1
  const h = 30 + panels.length * PANEL_H
  const body = panels.map((p, i) => panel(p, 30 + i * PANEL_H, xMin, xMax, xLabel)).join('\n')
  return `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${h}" viewBox="0 0 ${W} ${h}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="${W / 2}" y="20" font-size="16" text-anchor="middle">${esc(title)}</text>
${body}
</svg>
`
}
