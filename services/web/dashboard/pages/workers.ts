import type { GatewayHealth, RegistryWorker } from '../../../../shared/protocol/gateway.ts'
import { esc } from '../escape.ts'
import { DASH, fmtDate, fmtInt, plural } from '../format.ts'

// The admin page's worker tables: workers waiting for approval, and every other worker with its
// approval, load and connection. Approve and revoke buttons are wired up by app.js.

/** The worker list from the health check, when the registry's list is not available. */
export function workersFromHealth (gw: GatewayHealth): RegistryWorker[] {
  return (gw.workers ?? []).map((w) => ({
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

export function pendingCard (pending: RegistryWorker[]): string {
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

export function workersTable (workers: RegistryWorker[]): string {
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
