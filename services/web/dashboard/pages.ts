import type { ApiKeyInfo, Credits, LedgerEntry } from '../../../shared/protocol/auth.ts'
import type { GatewayHealth, ModelListing, QuotaLimit, RegistryWorker } from '../../../shared/protocol/gateway.ts'
import { usageChart, type DailyRow, type Metric } from './chart.ts'
import { DASH, empty, esc, fmtCompact, fmtDate, fmtDuration, fmtInt, fmtBalance, fmtMs, fmtPrice, fmtReset, fmtUsd, fmtUsdSigned, heading, page } from './html.ts'
import type { SessionUser } from './session.ts'
import { localBackendIds } from '../../inference/backends/table.ts'

// The dashboard's pages, rendered on the server from what auth and the gateway return. Forms and
// buttons post to /api/dashboard/* from app.js; nothing here ever holds a secret.

export interface ModelUsage { model: string, requests?: number, tokensIn?: number, tokensOut?: number, errors?: number, costUsd?: number | null }

/** The gateway's usage answer; the newer fields are optional so an older gateway still renders. */
export interface UsageView {
  userId: string
  daily: DailyRow[]
  totals: Omit<DailyRow, 'date'>
  byModel?: ModelUsage[]
  credits?: { balanceUsd: number, reservedUsd: number, availableUsd?: number } | null
}

export interface WebHealth { auth: string, gateway: string, uptimeSeconds: number, publicKey: string }

/** Something a page shows, or why it cannot: the gateway's coded error. */
export type Maybe<T> = { ok: true, value: T } | { ok: false, error: string }

export interface AccountQuotaView { tier: string, limits: QuotaLimit[], credits: Credits }
export interface CreditsView extends Credits { ledger: LedgerEntry[] }

// ---- logged out -------------------------------------------------------------------------------

export function loginPage (notice: string | null, tone: 'ok' | 'warn' = 'ok'): string {
  return page({
    title: 'Log in',
    narrow: true,
    body: `<section class="card auth-card">
  <h1>Log in</h1>
  <p class="sub">Manage your API keys and see what they cost.</p>
  ${notice ? `<p class="notice${tone === 'warn' ? ' notice-warn' : ''}" role="status">${esc(notice)}</p>` : ''}
  <form data-form="login" novalidate>
    <label>Email<input name="email" type="email" autocomplete="email" required maxlength="254" autofocus></label>
    <label>Password<input name="password" type="password" autocomplete="current-password" required maxlength="256"></label>
    <p class="form-error" data-error role="alert" hidden></p>
    <button class="btn btn-block" type="submit">Log in</button>
  </form>
  <p class="alt">New here? <a href="/register">Create an account</a></p>
</section>`
  })
}

export function registerPage (): string {
  return page({
    title: 'Create an account',
    narrow: true,
    body: `<section class="card auth-card">
  <h1>Create an account</h1>
  <p class="sub">One API key, every model on the mesh.</p>
  <form data-form="register" novalidate>
    <label>Username<input name="username" autocomplete="username" required minlength="3" maxlength="50"><span class="hint">3–50 letters, digits, dot, dash or underscore</span></label>
    <label>Email<input name="email" type="email" autocomplete="email" required maxlength="254"></label>
    <label>Password<input name="password" type="password" autocomplete="new-password" required minlength="8" maxlength="256"><span class="hint">At least 8 characters</span></label>
    <p class="form-error" data-error role="alert" hidden></p>
    <button class="btn btn-block" type="submit">Create account</button>
  </form>
  <p class="alt">Already have an account? <a href="/login">Log in</a></p>
</section>`
  })
}

// ---- usage ------------------------------------------------------------------------------------

const RANGES = [7, 30, 90]
const METRICS: Array<{ id: Metric, label: string }> = [{ id: 'requests', label: 'Requests' }, { id: 'tokens', label: 'Tokens' }, { id: 'cost', label: 'Cost' }]

function stat (label: string, value: string, foot: string, id: string): string {
  return `<div class="stat" data-stat="${id}"><p class="stat-label">${esc(label)}</p><p class="stat-value">${value}</p><p class="stat-foot">${foot}</p></div>`
}

/** A used/cap meter: an SVG bar (no inline style, for the CSP), amber from 80 %, red when spent. */
function meter (used: number, cap: number, label: string): string {
  const share = cap > 0 ? Math.min(1, Math.max(0, used / cap)) : used > 0 ? 1 : 0
  const tone = share >= 1 ? ' meter-full' : share >= 0.8 ? ' meter-high' : ''
  return `<span class="meter meter-wide${tone}" role="img" aria-label="${esc(label)}"><svg viewBox="0 0 100 6" preserveAspectRatio="none"><rect class="meter-bg" width="100" height="6"/><rect class="meter-fg" width="${(share * 100).toFixed(1)}" height="6"/></svg></span>`
}

function amount (unit: QuotaLimit['unit'], n: number): string {
  return unit === 'usd' ? fmtUsd(n) : unit === 'tokens' ? fmtCompact(n) : fmtInt(n)
}

function limitName (l: QuotaLimit): string {
  const d = (l.description || l.name).replace(/ for (your|this) account$/i, '')
  return d.charAt(0).toUpperCase() + d.slice(1)
}

function limitsCard (quota: Maybe<AccountQuotaView>): string {
  if (!quota.ok) return `<section class="card" data-card="limits"><div class="card-head"><h2>Limits</h2></div><p class="muted">Limits are not available right now: ${esc(quota.error)}</p></section>`
  const q = quota.value
  const rows = q.limits.map((l) => {
    const unit = l.unit === 'usd' ? '' : ` ${l.unit}`
    return `<li class="limit" data-limit="${esc(l.name)}">
    <div class="limit-top"><span class="limit-name">${esc(limitName(l))}</span><span class="limit-nums"><b>${amount(l.unit, l.used)}</b> / ${amount(l.unit, l.cap)}${unit}</span></div>
    ${meter(l.used, l.cap, `${limitName(l)}: ${amount(l.unit, l.used)} of ${amount(l.unit, l.cap)}${unit} used`)}
    <p class="limit-foot">${l.remaining <= 0 ? '<span class="limit-spent">Limit reached</span>' : `${amount(l.unit, l.remaining)}${unit} left`}${l.resetsAt ? ` · resets ${esc(fmtReset(l.resetsAt))}` : ''}</p>
  </li>`
  }).join('')
  return `<section class="card" data-card="limits">
  <div class="card-head"><h2>Limits</h2><span class="muted">All your keys together · tier <span class="chip" data-tier>${esc(q.tier)}</span></span></div>
  ${q.limits.length ? `<ul class="limits">${rows}</ul>` : empty('No limits', 'Your tier sets no hourly or daily limits.')}
  <p class="muted card-note">Running requests count at their worst case until they finish. A request over a limit is refused with <code>RATE_LIMITED</code> or <code>QUOTA_EXCEEDED</code> (HTTP 429).</p>
</section>`
}

const KIND_LABEL: Record<string, string> = { grant: 'Grant', debit: 'Charge', refund: 'Refund' }

function creditsCard (credits: Maybe<CreditsView>): string {
  if (!credits.ok) return `<section class="card" data-card="credits"><div class="card-head"><h2>Credits</h2></div><p class="muted">Credits are not available right now: ${esc(credits.error)}</p></section>`
  const c = credits.value
  const ledger = c.ledger.length === 0
    ? empty('No credit activity yet', 'Grants, charges for priced models and refunds show up here.')
    : `<div class="table-wrap"><table class="table" data-table="ledger">
  <thead><tr><th>When</th><th>Kind</th><th class="num">Amount</th><th>Details</th></tr></thead>
  <tbody>${c.ledger.map((e) => `<tr data-entry="${esc(e.id)}" data-kind="${esc(e.kind)}">
    <td data-label="When">${fmtDate(e.createdAt)}</td>
    <td data-label="Kind"><span class="kind kind-${esc(e.kind)}">${esc(KIND_LABEL[e.kind] ?? e.kind)}</span></td>
    <td class="num amount ${e.amountUsd < 0 ? 'amount-neg' : 'amount-pos'}" data-label="Amount" data-amount="${esc(e.amountUsd)}">${fmtUsdSigned(e.amountUsd)}</td>
    <td data-label="Details" class="details"><span>${[e.note ? esc(e.note) : '', e.requestId ? `request <code title="${esc(e.requestId)}">${esc(e.requestId.slice(0, 8))}…</code>` : ''].filter(Boolean).join(' · ') || DASH}</span></td></tr>`).join('')}</tbody></table></div>`
  return `<section class="card" data-card="credits">
  <div class="card-head"><h2>Credits</h2><span class="muted">Prepaid USD for priced models</span></div>
  <dl class="money">
    <div data-money="available"${c.availableUsd > 0 ? ' class="money-ok"' : ''}><dt>Available</dt><dd>${fmtBalance(c.availableUsd)}</dd></div>
    <div data-money="balance"><dt>Balance</dt><dd>${fmtBalance(c.balanceUsd)}</dd></div>
    <div data-money="reserved"><dt>Held by running requests</dt><dd>${fmtBalance(c.reservedUsd)}</dd></div>
  </dl>
  <h3 class="sub-head">Recent activity</h3>
  ${ledger}
</section>`
}

export function overviewPage (user: SessionUser, usage: UsageView, days: number, metric: Metric,
  quota: Maybe<AccountQuotaView> = { ok: false, error: 'not asked' }, ledger: Maybe<CreditsView> = { ok: false, error: 'not asked' }): string {
  const t = usage.totals
  const tokens = (t.tokensIn ?? 0) + (t.tokensOut ?? 0)
  const credits = usage.credits
  const creditValue = credits ? fmtBalance(credits.availableUsd ?? credits.balanceUsd - credits.reservedUsd) : DASH
  const creditFoot = credits === undefined
    ? 'Not reported by this gateway'
    : credits === null ? 'No prepaid credit on this account' : `${fmtBalance(credits.balanceUsd)} balance, ${fmtBalance(credits.reservedUsd)} reserved`
  const range = `<div class="seg" role="group" aria-label="Time range">${RANGES.map((d) =>
    `<a href="/dashboard?days=${d}&amp;metric=${metric}"${d === days ? ' aria-current="true"' : ''}>${d} days</a>`).join('')}</div>`
  const tabs = `<div class="seg seg-small" role="group" aria-label="Chart metric">${METRICS.map((m) =>
    `<a href="/dashboard?days=${days}&amp;metric=${m.id}"${m.id === metric ? ' aria-current="true"' : ''}>${m.label}</a>`).join('')}</div>`

  const byModel = usage.byModel
  const modelTable = byModel === undefined
    ? `<p class="muted">Per-model usage is not reported by this gateway yet.</p>`
    : byModel.length === 0
      ? empty('No requests yet', 'Usage per model shows up here after your first call.')
      : `<div class="table-wrap"><table class="table" data-table="by-model">
  <thead><tr><th>Model</th><th class="num">Requests</th><th class="num">Tokens in</th><th class="num">Tokens out</th><th class="num">Errors</th><th class="num">Cost</th></tr></thead>
  <tbody>${byModel.map((m) => `<tr>
    <td data-label="Model"><code>${esc(m.model)}</code></td>
    <td class="num" data-label="Requests">${fmtInt(m.requests)}</td>
    <td class="num" data-label="Tokens in">${fmtInt(m.tokensIn)}</td>
    <td class="num" data-label="Tokens out">${fmtInt(m.tokensOut)}</td>
    <td class="num" data-label="Errors">${fmtInt(m.errors)}</td>
    <td class="num" data-label="Cost">${fmtUsd(m.costUsd)}</td></tr>`).join('')}</tbody></table></div>`

  const days_ = [...usage.daily].filter((d) => (d.requests ?? 0) > 0 || (d.errors ?? 0) > 0).reverse()
  const dailyTable = days_.length === 0
    ? ''
    : `<details class="card-foot"><summary>Daily numbers</summary><div class="table-wrap"><table class="table" data-table="daily">
  <thead><tr><th>Day</th><th class="num">Requests</th><th class="num">Tokens in</th><th class="num">Tokens out</th><th class="num">Errors</th><th class="num">Cost</th></tr></thead>
  <tbody>${days_.map((d) => `<tr><td data-label="Day">${esc(d.date)}</td><td class="num" data-label="Requests">${fmtInt(d.requests)}</td><td class="num" data-label="Tokens in">${fmtInt(d.tokensIn)}</td><td class="num" data-label="Tokens out">${fmtInt(d.tokensOut)}</td><td class="num" data-label="Errors">${fmtInt(d.errors)}</td><td class="num" data-label="Cost">${fmtUsd(d.costUsd)}</td></tr>`).join('')}</tbody></table></div></details>`

  return page({
    title: 'Usage',
    user,
    active: 'overview',
    body: `${heading('Usage', `All your API keys, last ${days} days. Days are UTC.`, range)}
<section class="stats">
  ${stat('Requests', fmtInt(t.requests), `${fmtInt(t.errors)} failed`, 'requests')}
  ${stat('Tokens', fmtCompact(tokens), `${fmtInt(t.tokensIn)} in · ${fmtInt(t.tokensOut)} out`, 'tokens')}
  ${stat('Cost', fmtUsd(t.costUsd), t.costUsd === undefined ? 'Not reported by this gateway' : `last ${days} days`, 'cost')}
  ${stat('Credits left', creditValue, creditFoot, 'credits')}
</section>
<section class="card">
  <div class="card-head"><h2>By day</h2>${tabs}</div>
  ${usageChart(usage.daily, days, metric)}
  ${dailyTable}
</section>
<div class="split">
${limitsCard(quota)}
${creditsCard(ledger)}
</div>
<section class="card">
  <div class="card-head"><h2>By model</h2></div>
  ${modelTable}
</section>`
  })
}

// ---- keys -------------------------------------------------------------------------------------

function statusBadge (k: ApiKeyInfo): string {
  return `<span class="status status-${esc(k.status)}" data-status>${esc(k.status)}</span>`
}

function keyRow (k: ApiKeyInfo): string {
  return `<tr data-key-id="${esc(k.id)}">
    <td data-label="Name"><a href="/dashboard/keys/${esc(k.id)}">${esc(k.name)}</a></td>
    <td data-label="Key"><code>${esc(k.prefix)}…</code></td>
    <td data-label="Scopes">${k.scopes.map((s) => `<span class="chip">${esc(s)}</span>`).join(' ')}</td>
    <td data-label="Created">${fmtDate(k.createdAt)}</td>
    <td data-label="Expires">${k.expiresAt ? fmtDate(k.expiresAt) : 'never'}</td>
    <td data-label="Last used">${k.lastUsedAt ? fmtDate(k.lastUsedAt) : 'never'}</td>
    <td data-label="Status">${statusBadge(k)}</td>
    <td class="actions">${k.status === 'active' ? `<button type="button" class="btn btn-danger-quiet btn-small" data-revoke="${esc(k.id)}" data-name="${esc(k.name)}">Revoke</button>` : ''}</td>
  </tr>`
}

export function keysPage (user: SessionUser, keys: ApiKeyInfo[]): string {
  const active = keys.filter((k) => k.status === 'active').length
  const table = `<div class="table-wrap"${keys.length === 0 ? ' hidden' : ''}><table class="table" data-table="keys">
  <thead><tr><th>Name</th><th>Key</th><th>Scopes</th><th>Created</th><th>Expires</th><th>Last used</th><th>Status</th><th><span class="sr">Actions</span></th></tr></thead>
  <tbody>${keys.map(keyRow).join('')}</tbody></table></div>
  ${keys.length === 0 ? `<div data-empty>${empty('No API keys yet', 'Create one above, then call the API with it: <code>Authorization: Bearer &lt;key&gt;</code>.')}</div>` : ''}`
  return page({
    title: 'API keys',
    user,
    active: 'keys',
    body: `${heading('API keys', `<span data-active-count>${active}</span> active. A key is shown once, when you create it; we keep only its hash.`)}
<section class="card">
  <div class="card-head"><h2>Create a key</h2></div>
  <form class="create" data-form="create-key" novalidate>
    <label class="grow">Name<input name="name" required maxlength="100" placeholder="e.g. laptop, ci, my-app" autocomplete="off"></label>
    <label>Expires<select name="expiresInDays">
      <option value="">Never</option><option value="7">In 7 days</option><option value="30">In 30 days</option><option value="90">In 90 days</option><option value="365">In 1 year</option>
    </select></label>
    <label>Budget (USD)<input name="budgetUsd" type="number" min="0" max="1000000" step="0.01" inputmode="decimal" placeholder="No limit"></label>
    <fieldset><legend>Scopes</legend>
      <label class="check"><input type="checkbox" name="scopes" value="inference" checked> inference</label>
      <label class="check"><input type="checkbox" name="scopes" value="models" checked> models</label>
    </fieldset>
    <button class="btn" type="submit">Create key</button>
    <p class="form-error" data-error role="alert" hidden></p>
  </form>
  <div class="reveal" data-reveal hidden>
    <p class="reveal-title">Copy your new key now. You will not be able to see it again.</p>
    <div class="reveal-row"><input class="secret" data-secret readonly aria-label="New API key" spellcheck="false"><button type="button" class="btn" data-copy>Copy</button></div>
    <p class="muted">Use it as <code>Authorization: Bearer &lt;key&gt;</code> on <code>/v1/*</code>, or <code>export HYPERINFER_API_KEY=…</code> for the CLI.</p>
    <button type="button" class="btn btn-quiet btn-small" data-dismiss>I have saved it</button>
  </div>
</section>
<section class="card">
  <div class="card-head"><h2>Your keys</h2></div>
  ${table}
</section>`
  })
}

export function keyPage (user: SessionUser, k: ApiKeyInfo): string {
  const row = (label: string, value: string) => `<div><dt>${esc(label)}</dt><dd>${value}</dd></div>`
  return page({
    title: `Key ${k.name}`,
    user,
    active: 'keys',
    body: `<p class="crumbs"><a href="/dashboard/keys">API keys</a> /</p>
${heading(k.name, `Key <code>${esc(k.prefix)}…</code>`, statusBadge(k))}
<section class="card" data-key-id="${esc(k.id)}">
  <dl class="facts">
    ${row('Status', statusBadge(k))}
    ${row('Scopes', k.scopes.map((s) => `<span class="chip">${esc(s)}</span>`).join(' '))}
    ${row('Tier', esc(k.tier))}
    ${row('Budget', typeof k.budgetUsd === 'number' ? fmtUsd(k.budgetUsd) : 'no limit')}
    ${row('Models', Array.isArray(k.models) && k.models.length ? k.models.map((m) => `<code>${esc(m)}</code>`).join(' ') : 'all')}
    ${row('Created', fmtDate(k.createdAt))}
    ${row('Expires', k.expiresAt ? fmtDate(k.expiresAt) : 'never')}
    ${row('Last used', k.lastUsedAt ? fmtDate(k.lastUsedAt) : 'never')}
    ${k.revokedAt ? row('Revoked', fmtDate(k.revokedAt)) : ''}
  </dl>
  ${k.status === 'active' ? `<div class="card-foot"><button type="button" class="btn btn-danger-quiet" data-revoke="${esc(k.id)}" data-name="${esc(k.name)}">Revoke this key</button><p class="muted">Revoking takes effect on the gateway within a second and cannot be undone.</p></div>` : ''}
</section>`
  })
}

// ---- models -----------------------------------------------------------------------------------

const LOCAL_BACKENDS = localBackendIds

function priceOf (m: ModelListing): string {
  const p = m.price
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
  <p class="muted card-note">Prices are USD per million input and output tokens. Latency is measured by the gateway: time to first token and median duration.</p>
</section>`
  })
}

// ---- admin ------------------------------------------------------------------------------------

function plural (n: number, word: string): string {
  return `${fmtInt(n)} ${word}${n === 1 ? '' : 's'}`
}

function pill (ok: boolean, text: string): string {
  return `<span class="status ${ok ? 'status-active' : 'status-revoked'}">${esc(text === 'ok' ? 'OK' : text)}</span>`
}

/** The worker list from the health check, when the registry's list is not available. */
export function workersFromHealth (gw: GatewayHealth): RegistryWorker[] {
  return gw.workers.map((w) => ({
    key: w.publicKey, models: w.models, approval: { state: w.approved ? 'approved' : 'pending', by: '', at: Date.parse(w.connectedAt) },
    label: w.label ?? '', region: '', capacity: w.capacity, updatedAt: Date.parse(w.connectedAt), connected: true,
    inflight: w.inflight, served: w.served, failures: w.failures, breaker: w.breaker
  }))
}

function fmtEpoch (ms: unknown): string {
  return typeof ms === 'number' && Number.isFinite(ms) && ms > 0 ? fmtDate(new Date(ms).toISOString()) : DASH
}

function who (by: string): string {
  if (!by) return ''
  return esc(by.replace(/^user:/, ''))
}

function workerButton (action: 'approve' | 'revoke', w: RegistryWorker, label: string, quiet = false): string {
  const cls = action === 'revoke' ? 'btn btn-danger-quiet btn-small' : quiet ? 'btn btn-quiet btn-small' : 'btn btn-small'
  return `<button type="button" class="${cls}" data-worker-action="${action}" data-worker-key="${esc(w.key)}">${esc(label)}</button>`
}

function workerName (w: RegistryWorker, full: boolean): string {
  const key = full ? `<code class="key" title="${esc(w.key)}">${esc(w.key)}</code>` : `<code title="${esc(w.key)}">${esc(w.key.slice(0, 12))}…</code>`
  return `${w.label ? `<span class="worker-label">${esc(w.label)}</span>` : ''}${key}`
}

function connection (w: RegistryWorker): string {
  return w.connected ? '<span class="status status-active">online</span>' : '<span class="status status-idle">offline</span>'
}

function approvalBadge (w: RegistryWorker): string {
  const s = w.approval.state
  const cls = s === 'approved' ? 'status-active' : s === 'revoked' ? 'status-revoked' : 'status-expired'
  const by = who(w.approval.by)
  return `<span class="cell-stack"><span class="status ${cls}" data-approval>${esc(s)}</span>${by || w.approval.at ? `<span class="cell-foot">${by ? `by ${by}` : ''}${by && w.approval.at ? ', ' : ''}${w.approval.at ? fmtEpoch(w.approval.at) : ''}</span>` : ''}</span>`
}

function pendingCard (pending: RegistryWorker[]): string {
  if (pending.length === 0) return ''
  return `<section class="card card-attention" data-card="pending">
  <div class="card-head"><h2>${plural(pending.length, 'worker')} waiting for approval</h2></div>
  <p class="muted">These joined without the network's worker token. They get no traffic until you approve them. Check each key against the one the worker printed at start.</p>
  <div class="table-wrap"><table class="table" data-table="pending-workers">
  <thead><tr><th>Worker</th><th>Models</th><th class="num">Capacity</th><th>Asked</th><th>Connection</th><th><span class="sr">Actions</span></th></tr></thead>
  <tbody>${pending.map((w) => `<tr data-worker="${esc(w.key)}">
    <td data-label="Worker" class="worker-cell">${workerName(w, true)}${w.region ? `<span class="cell-foot">${esc(w.region)}</span>` : ''}</td>
    <td data-label="Models">${w.models.map((m) => `<span class="chip">${esc(m)}</span>`).join(' ') || DASH}</td>
    <td class="num" data-label="Capacity">${fmtInt(w.capacity)}</td>
    <td data-label="Asked">${fmtEpoch(w.approval.at)}</td>
    <td data-label="Connection">${connection(w)}</td>
    <td class="actions">${workerButton('approve', w, 'Approve')} ${workerButton('revoke', w, 'Reject')}</td></tr>`).join('')}</tbody></table></div>
</section>`
}

function workersTable (workers: RegistryWorker[]): string {
  const maxInflight = Math.max(1, ...workers.map((w) => w.inflight))
  return `<div class="table-wrap"><table class="table" data-table="workers">
  <thead><tr><th>Worker</th><th>Models</th><th>Approval</th><th>Load (in flight)</th><th class="num">Served</th><th class="num">Failures</th><th>Connection</th><th><span class="sr">Actions</span></th></tr></thead>
  <tbody>${workers.map((w) => `<tr data-worker="${esc(w.key)}" data-state="${esc(w.approval.state)}">
    <td data-label="Worker" class="worker-cell">${workerName(w, false)}</td>
    <td data-label="Models">${w.models.map((m) => `<span class="chip">${esc(m)}</span>`).join(' ') || DASH}</td>
    <td data-label="Approval">${approvalBadge(w)}</td>
    <td data-label="Load">${!w.connected ? DASH : `<span class="load"><span class="meter" aria-hidden="true"><svg viewBox="0 0 100 6" preserveAspectRatio="none"><rect class="meter-bg" width="100" height="6"/><rect class="meter-fg" width="${((w.inflight / maxInflight) * 100).toFixed(1)}" height="6"/></svg></span>${fmtInt(w.inflight)} / ${fmtInt(w.capacity)}</span>`}</td>
    <td class="num" data-label="Served">${fmtInt(w.served)}</td>
    <td class="num" data-label="Failures">${fmtInt(w.failures)}${w.breaker === 'open' ? ' <span class="status status-revoked">breaker open</span>' : w.breaker === 'half-open' ? ' <span class="status status-expired">half-open</span>' : ''}</td>
    <td data-label="Connection">${connection(w)}</td>
    <td class="actions">${w.approval.state === 'approved' ? workerButton('revoke', w, 'Revoke') : w.approval.state === 'revoked' ? workerButton('approve', w, 'Approve again', true) : ''}</td></tr>`).join('')}</tbody></table></div>`
}

export interface AdminView {
  gw: GatewayHealth | null
  gwError: string | null
  web: WebHealth
  /** the registry's workers, or why they could not be read */
  workers: Maybe<RegistryWorker[]>
  registry: Maybe<{ key: string, writable: boolean }>
}

export function adminPage (user: SessionUser, v: AdminView): string {
  const { gw, gwError, web } = v
  const health = `<section class="stats">
  <div class="stat" data-service="gateway"><p class="stat-label">Gateway</p><p class="stat-value">${gw ? pill(gw.status === 'ok', gw.status) : pill(false, 'unreachable')}</p>
    <p class="stat-foot">${gw ? `up ${fmtDuration(gw.uptimeSeconds)} · ${fmtInt(gw.inflight)} in flight` : esc(gwError ?? '')}</p></div>
  <div class="stat" data-service="auth"><p class="stat-label">Auth</p><p class="stat-value">${gw ? pill(gw.auth === 'connected', gw.auth) : pill(web.auth === 'connected', web.auth)}</p>
    <p class="stat-foot">as seen by the ${gw ? 'gateway' : 'web service'}</p></div>
  <div class="stat" data-service="database"><p class="stat-label">Database</p><p class="stat-value">${gw ? pill(gw.database === 'ok', gw.database) : DASH}</p>
    <p class="stat-foot">as seen by the gateway</p></div>
  <div class="stat" data-service="web"><p class="stat-label">Web</p><p class="stat-value">${pill(web.auth === 'connected' && web.gateway === 'connected', web.auth === 'connected' && web.gateway === 'connected' ? 'OK' : 'degraded')}</p>
    <p class="stat-foot">up ${fmtDuration(web.uptimeSeconds)}</p></div>
</section>`

  const network = v.registry.ok
    ? `<section class="card" data-card="network">
  <div class="card-head"><h2>Network key</h2><span class="muted">${v.registry.value.writable ? 'this gateway writes the registry' : 'this gateway holds a replica of the registry'}</span></div>
  <div class="key-row"><code class="key-block" data-network-key>${esc(v.registry.value.key)}</code><button type="button" class="btn btn-quiet btn-small" data-copy-from="[data-network-key]">Copy</button></div>
  <p class="muted">A worker on another machine joins with <code>hyperinfer worker --network &lt;key&gt;</code>. Without the worker token it shows up on this page, waiting for your approval.</p>
</section>`
    : `<section class="card" data-card="network"><div class="card-head"><h2>Network key</h2></div><p class="muted">The registry did not answer: ${esc(v.registry.error)}</p></section>`

  let workers: RegistryWorker[] = []
  let note = ''
  if (v.workers.ok) workers = v.workers.value
  else if (gw) {
    workers = workersFromHealth(gw)
    note = `<p class="muted">The worker registry did not answer (${esc(v.workers.error)}); showing the workers connected to this gateway.</p>`
  }
  const pending = workers.filter((w) => w.approval.state === 'pending')
  const rest = workers.filter((w) => w.approval.state !== 'pending')
    .sort((a, b) => Number(b.connected) - Number(a.connected) || Number(b.approval.state === 'approved') - Number(a.approval.state === 'approved'))
  const online = rest.filter((w) => w.connected && w.approval.state === 'approved').length
  const table = !gw && !v.workers.ok
    ? empty('Gateway unreachable', 'Worker status comes from the gateway; it did not answer.')
    : rest.length === 0
      ? empty('No approved workers', 'Start one with <code>npm run worker</code>; with the worker token it is approved by itself.')
      : workersTable(rest)
  return page({
    title: 'Admin',
    user,
    active: 'admin',
    body: `${heading('Service health', 'Live from the gateway and this web service. Reload to refresh.')}
${health}
${pendingCard(pending)}
<section class="card">
  <div class="card-head"><h2>Workers</h2><span class="muted">${plural(online, 'worker')} serving · ${plural(gw?.models.length ?? 0, 'model')}</span></div>
  ${note}
  ${table}
</section>
${network}`
  })
}

// ---- errors -----------------------------------------------------------------------------------

export function errorPage (status: number, title: string, message: string, user: SessionUser | null): string {
  return page({
    title,
    user,
    narrow: true,
    body: `<section class="card error-card" data-error-status="${status}">
  <p class="error-code">${status}</p>
  <h1>${esc(title)}</h1>
  <p>${esc(message)}</p>
  <p><a class="btn" href="${user ? '/dashboard' : '/'}">${user ? 'Back to the dashboard' : 'Home'}</a></p>
</section>`
  })
}
