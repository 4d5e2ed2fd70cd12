import type { ApiKeyInfo } from '../../../shared/protocol/auth.ts'
import type { GatewayHealth, ModelListing } from '../../../shared/protocol/gateway.ts'
import { usageChart, type DailyRow, type Metric } from './chart.ts'
import { DASH, empty, esc, fmtCompact, fmtDate, fmtDuration, fmtInt, fmtUsd, heading, page } from './html.ts'
import type { SessionUser } from './session.ts'

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

// ---- logged out -------------------------------------------------------------------------------

export function loginPage (notice: string | null): string {
  return page({
    title: 'Log in',
    narrow: true,
    body: `<section class="card auth-card">
  <h1>Log in</h1>
  <p class="sub">Manage your API keys and see what they cost.</p>
  ${notice ? `<p class="notice" role="status">${esc(notice)}</p>` : ''}
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

export function overviewPage (user: SessionUser, usage: UsageView, days: number, metric: Metric): string {
  const t = usage.totals
  const tokens = (t.tokensIn ?? 0) + (t.tokensOut ?? 0)
  const credits = usage.credits
  const creditValue = credits ? fmtUsd(credits.availableUsd ?? credits.balanceUsd - credits.reservedUsd) : DASH
  const creditFoot = credits === undefined
    ? 'Not reported by this gateway'
    : credits === null ? 'No prepaid credit on this account' : `${fmtUsd(credits.balanceUsd)} balance, ${fmtUsd(credits.reservedUsd)} reserved`
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

type ModelRow = ModelListing & Record<string, unknown>

function priceOf (m: ModelRow): string {
  const p = m.pricing ?? m.price
  if (typeof p === 'number') return fmtUsd(p)
  if (p && typeof p === 'object') {
    const parts = Object.entries(p as Record<string, unknown>).filter(([, v]) => typeof v === 'number')
      .map(([k, v]) => `${esc(k)} ${fmtUsd(v)}`)
    if (parts.length) return parts.join('<br>')
  }
  if (m.backend === 'synthetic' || m.backend === 'ollama') return '<span class="muted">free (local)</span>'
  return DASH
}

function latencyOf (m: ModelRow): string {
  for (const k of ['latencyMs', 'ttftMs', 'p50LatencyMs', 'avgLatencyMs']) {
    const v = m[k]
    if (typeof v === 'number' && Number.isFinite(v)) return `${fmtInt(v)} ms`
  }
  const lat = m.latency
  if (lat && typeof lat === 'object') {
    const v = (lat as Record<string, unknown>).p50Ms ?? (lat as Record<string, unknown>).ttftMs
    if (typeof v === 'number') return `${fmtInt(v)} ms`
  }
  return DASH
}

export function modelsPage (user: SessionUser, models: ModelListing[]): string {
  const body = models.length === 0
    ? empty('No models online', 'No worker is connected right now. An operator starts one with <code>npm run worker</code>.')
    : `<div class="table-wrap"><table class="table" data-table="models">
  <thead><tr><th>Model</th><th>Backend</th><th class="num">Workers</th><th class="num">Context</th><th class="num">Price</th><th class="num">Latency</th></tr></thead>
  <tbody>${(models as ModelRow[]).map((m) => `<tr data-model="${esc(m.id)}">
    <td data-label="Model"><code>${esc(m.id)}</code></td>
    <td data-label="Backend">${esc(m.backend)}</td>
    <td class="num" data-label="Workers">${fmtInt(m.workers)}</td>
    <td class="num" data-label="Context">${m.contextLength ? fmtInt(m.contextLength) : DASH}</td>
    <td class="num" data-label="Price">${priceOf(m)}</td>
    <td class="num" data-label="Latency">${latencyOf(m)}</td></tr>`).join('')}</tbody></table></div>`
  return page({
    title: 'Models',
    user,
    active: 'models',
    body: `${heading('Models', `${plural(models.length, 'model')} served on the mesh now. Name one as <code>model</code> in a request.`)}
<section class="card">${body}</section>`
  })
}

// ---- admin ------------------------------------------------------------------------------------

function plural (n: number, word: string): string {
  return `${fmtInt(n)} ${word}${n === 1 ? '' : 's'}`
}

function pill (ok: boolean, text: string): string {
  return `<span class="status ${ok ? 'status-active' : 'status-revoked'}">${esc(text === 'ok' ? 'OK' : text)}</span>`
}

export function adminPage (user: SessionUser, gw: GatewayHealth | null, gwError: string | null, web: WebHealth): string {
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
  const workers = gw?.workers ?? []
  const maxInflight = Math.max(1, ...workers.map((w) => w.inflight))
  const table = !gw
    ? empty('Gateway unreachable', 'Worker status comes from the gateway; it did not answer.')
    : workers.length === 0
      ? empty('No workers connected', 'Start one with <code>npm run worker</code>; it registers with the gateway by itself.')
      : `<div class="table-wrap"><table class="table" data-table="workers">
  <thead><tr><th>Worker</th><th>Models</th><th>Load (in flight)</th><th class="num">Served</th><th class="num">Failures</th><th>Connected</th></tr></thead>
  <tbody>${workers.map((w) => `<tr data-worker="${esc(w.publicKey)}">
    <td data-label="Worker"><code title="${esc(w.publicKey)}">${esc(w.publicKey.slice(0, 12))}…</code></td>
    <td data-label="Models">${w.models.map((m) => `<span class="chip">${esc(m)}</span>`).join(' ')}</td>
    <td data-label="Load"><span class="load"><span class="meter" aria-hidden="true"><svg viewBox="0 0 100 6" preserveAspectRatio="none"><rect class="meter-bg" width="100" height="6"/><rect class="meter-fg" width="${((w.inflight / maxInflight) * 100).toFixed(1)}" height="6"/></svg></span>${fmtInt(w.inflight)}</span></td>
    <td class="num" data-label="Served">${fmtInt(w.served)}</td>
    <td class="num" data-label="Failures">${fmtInt(w.failures)}</td>
    <td data-label="Connected">${fmtDate(w.connectedAt)}</td></tr>`).join('')}</tbody></table></div>`
  return page({
    title: 'Admin',
    user,
    active: 'admin',
    body: `${heading('Service health', 'Live from the gateway and this web service. Reload to refresh.')}
${health}
<section class="card">
  <div class="card-head"><h2>Workers</h2><span class="muted">${plural(workers.length, 'worker')} · ${plural(gw?.models.length ?? 0, 'model')}</span></div>
  ${table}
</section>`
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
