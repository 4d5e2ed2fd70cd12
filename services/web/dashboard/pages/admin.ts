import type { GatewayHealth, RegistryWorker } from '../../../../shared/protocol/gateway.ts'
import { esc } from '../escape.ts'
import { DASH, fmtDuration, fmtInt, plural } from '../format.ts'
import { empty, heading, page } from '../layout.ts'
import type { Maybe } from '../maybe.ts'
import type { SessionUser } from '../session.ts'
import { pendingCard, workersFromHealth, workersTable } from './workers.ts'

// The admin page: service health, workers (waiting and admitted) and the network key.

export interface WebHealth { auth: string, gateway: string, uptimeSeconds: number, publicKey: string }

function pill (ok: boolean, text: string): string {
  return `<span class="status ${ok ? 'status-active' : 'status-revoked'}">${esc(text === 'ok' ? 'OK' : text)}</span>`
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
