import { localBackendIds } from '../../../inference/backends/table.ts'
import type { ModelListing } from '../../../../shared/protocol/gateway.ts'
import { esc } from '../escape.ts'
import { DASH, fmtCompact, fmtInt, fmtMs, fmtPrice, plural } from '../format.ts'
import { empty, heading, page } from '../layout.ts'
import type { SessionUser } from '../session.ts'

// The models page: what the mesh serves now and what else the registry knows, with prices,
// scores and the latency the gateway measured.

const LOCAL_BACKENDS = localBackendIds

/** What the workers serving it charge now, when operators price it differently: cheapest–dearest. */
function rangeOf (m: ModelListing): string | null {
  const r = m.priceRange
  if (!r || (r.input.min === r.input.max && r.output.min === r.output.max)) return null
  const span = (x: { min: number, max: number }) => x.min === x.max ? fmtPrice(x.min) : `${fmtPrice(x.min)}–${fmtPrice(x.max)}`
  return `<span data-price-range="${esc(r.input.min)}-${esc(r.input.max)}/${esc(r.output.min)}-${esc(r.output.max)}">${span(r.input)} <span class="muted">in</span> · ${span(r.output)} <span class="muted">out</span></span>`
}

export function priceOf (m: ModelListing): string {
  const range = rangeOf(m)
  if (range) return range
  const p = m.priceRange && m.workers > 0 ? { input: m.priceRange.input.min, output: m.priceRange.output.min } : m.price
  if (p && typeof p.input === 'number' && typeof p.output === 'number') {
    if (p.input === 0 && p.output === 0) return '<span class="free" data-price="free">free</span>'
    return `<span data-price="${esc(p.input)}/${esc(p.output)}">${fmtPrice(p.input)} <span class="muted">in</span> · ${fmtPrice(p.output)} <span class="muted">out</span></span>`
  }
  // not in the registry yet: local backends cost nothing, anything else is unknown
  if (LOCAL_BACKENDS.has(m.backend)) return '<span class="free" data-price="free">free</span>'
  return `<span class="muted">${DASH}</span>`
}

function latencyOf (m: ModelListing): string {
  const l = m.latency
  if (!l || !(l.samples > 0)) return '<span class="muted" data-latency="none">not measured yet</span>'
  return `<span class="cell-stack"><span data-latency="${esc(l.ttftMs)}/${esc(l.p50Ms)}">TTFT ${fmtMs(l.ttftMs)} · p50 ${fmtMs(l.p50Ms)}</span><span class="cell-foot">${plural(l.samples, 'sample')}${l.errorRate > 0 ? ` · ${(l.errorRate * 100).toFixed(l.errorRate < 0.1 ? 1 : 0)}% errors` : ''}</span></span>`
}

/** Context windows the way models are named: 8k, 128k, 1M tokens. */
function fmtContext (n: unknown): string {
  if (typeof n !== 'number' || !Number.isFinite(n) || n <= 0) return DASH
  if (n >= 1_048_576 && n % 1_048_576 === 0) return `${n / 1_048_576}M`
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024}k`
  return fmtCompact(n)
}

function score (v: unknown): string {
  return typeof v === 'number' && Number.isFinite(v) ? v.toFixed(2) : DASH
}

function modelRow (m: ModelListing): string {
  const online = m.workers > 0
  return `<tr data-model="${esc(m.id)}"${online ? '' : ' class="offline"'}>
    <td data-label="Model"><code>${esc(m.id)}</code></td>
    <td data-label="Backend">${esc(m.backend)}</td>
    <td data-label="Tasks">${(m.tasks ?? []).map((t) => `<span class="chip">${esc(t)}</span>`).join(' ') || DASH}</td>
    <td class="num" data-label="Workers">${online ? fmtInt(m.workers) : '<span class="status status-idle">offline</span>'}</td>
    <td class="num" data-label="Context">${fmtContext(m.contextLength)}</td>
    <td class="num" data-label="Price / 1M tokens">${priceOf(m)}</td>
    <td class="num" data-label="Quality · safety"><span data-scores>${score(m.quality)} · ${score(m.safety)}</span></td>
    <td class="num" data-label="Latency">${latencyOf(m)}</td></tr>`
}

/**
 * `live`: what the mesh serves now; `registry`: every model the registry knows (with 0 workers for
 * those no worker serves), or null when the registry did not answer.
 */
export function modelsPage (user: SessionUser, live: ModelListing[], registry: ModelListing[] | null = null): string {
  const byId = new Map<string, ModelListing>()
  for (const m of registry ?? []) byId.set(m.id, m)
  // the live listing has the current worker counts; the registry adds the ones no worker serves
  for (const m of live) byId.set(m.id, { ...byId.get(m.id), ...m })
  const models = [...byId.values()].sort((a, b) => Number(b.workers > 0) - Number(a.workers > 0) || a.id.localeCompare(b.id))
  const online = models.filter((m) => m.workers > 0).length
  const body = models.length === 0
    ? empty('No models online', 'No worker is connected right now. An operator starts one with <code>npm run worker</code>.')
    : `<div class="table-wrap"><table class="table" data-table="models">
  <thead><tr><th>Model</th><th>Backend</th><th>Tasks</th><th class="num">Workers</th><th class="num">Context</th><th class="num">Price / 1M tokens</th><th class="num" title="registry scores, 0 to 1">Quality · safety</th><th class="num">Latency</th></tr></thead>
  <tbody>${models.map(modelRow).join('')}</tbody></table></div>`
  const offline = models.length - online
  return page({
    title: 'Models',
    user,
    active: 'models',
    body: `${heading('Models', `${plural(online, 'model')} served on the mesh now${offline ? `, ${fmtInt(offline)} more in the registry with no worker online` : ''}. Name one as <code>model</code> in a request, or let the router pick.`)}
<section class="card">${body}
  <p class="muted card-note">Prices are USD per million input and output tokens; operators price their own workers, so a model served at several prices shows its cheapest and dearest. Latency is measured by the gateway: time to first token and median duration.</p>
</section>`
  })
}
