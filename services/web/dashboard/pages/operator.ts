import type { RegistryWorker } from '../../../../shared/protocol/gateway.ts'
import type { EarningsRow, OperatorPrice } from '../../../../shared/protocol/operators.ts'
import { esc } from '../escape.ts'
import { fmtInt, fmtUsd, plural } from '../format.ts'
import { empty, heading, page } from '../layout.ts'
import type { Maybe } from '../maybe.ts'
import type { SessionUser } from '../session.ts'

// The operator page: the workers the account owns, the prices they charge and what they earned,
// by day, worker and model (the network's fee shown apart). An admin sees every worker here.

export interface OperatorView {
  workers: Maybe<RegistryWorker[]>
  prices: Maybe<{ mine: OperatorPrice[], feePct: number }>
  earnings: Maybe<{ rows: EarningsRow[], total: { charged: number, fees: number, earned: number }, feePct: number }>
}

const usd = (nusd: number) => fmtUsd(nusd / 1e9)
const failed = (m: { ok: false, error: string }) => `<p class="muted" data-error>${esc(m.error)}</p>`

function workersCard (m: OperatorView['workers']): string {
  if (!m.ok) return failed(m)
  if (m.value.length === 0) return empty('No workers yet', 'Ask an admin for a join token issued to your account: <code>hyperinfer workers token create --label L --owner you</code>, then start a worker with it.')
  return `<div class="table-wrap"><table class="table" data-table="operator-workers">
  <thead><tr><th>Worker</th><th>Owner</th><th>State</th><th>Models</th><th class="num">Served</th></tr></thead>
  <tbody>${m.value.map((w) => `<tr data-worker="${esc(w.key)}"><td><code>${esc(w.key.slice(0, 16))}…</code>${w.label ? ` <span class="muted">${esc(w.label)}</span>` : ''}</td>
    <td data-owner>${esc(w.owner ?? '—')}</td><td data-state>${w.drained ? 'drained' : esc(w.approval.state)}${w.connected ? '' : ' <span class="muted">(offline)</span>'}</td>
    <td>${w.models.map((x) => `<span class="chip">${esc(x)}</span>`).join(' ')}</td><td class="num">${fmtInt(w.served)}</td></tr>`).join('')}</tbody></table></div>`
}

function pricesCard (m: OperatorView['prices']): string {
  if (!m.ok) return failed(m)
  if (m.value.mine.length === 0) return '<p class="muted">You set no prices: your workers charge the registry\'s model prices. Set one with <code>hyperinfer prices set &lt;model&gt; --input N --output N</code> (nano-USD per token).</p>'
  return `<div class="table-wrap"><table class="table" data-table="operator-prices">
  <thead><tr><th>Model</th><th class="num">Input / 1M tokens</th><th class="num">Output / 1M tokens</th></tr></thead>
  <tbody>${m.value.mine.map((p) => `<tr data-model="${esc(p.model)}"><td><code>${esc(p.model)}</code></td>
    <td class="num" data-price-in="${esc(p.effective.input)}">${usd(p.effective.input * 1e6)}</td><td class="num" data-price-out="${esc(p.effective.output)}">${usd(p.effective.output * 1e6)}</td></tr>`).join('')}</tbody></table></div>`
}

function earningsCard (m: OperatorView['earnings']): string {
  if (!m.ok) return failed(m)
  const { rows, total, feePct } = m.value
  if (rows.length === 0) return empty('No earnings yet', 'Your workers have served no paid request in the last 30 days.')
  return `<p data-earnings-total="${esc(total.earned)}">Earned <strong>${usd(total.earned)}</strong> of ${usd(total.charged)} charged; the network's fee (${esc(feePct)}%) was ${usd(total.fees)}.</p>
<div class="table-wrap"><table class="table" data-table="earnings">
  <thead><tr><th>Day</th><th>Worker</th><th>Model</th><th class="num">Requests</th><th class="num">Tokens in / out</th><th class="num">Charged</th><th class="num">Fee</th><th class="num">Earned</th></tr></thead>
  <tbody>${rows.map((r) => `<tr data-day="${esc(r.day)}" data-worker="${esc(r.worker)}" data-model="${esc(r.model)}"><td>${esc(r.day)}</td><td><code>${esc(r.worker.slice(0, 16))}…</code></td>
    <td><code>${esc(r.model)}</code></td><td class="num">${fmtInt(r.requests)}</td><td class="num">${fmtInt(r.tokensIn)} / ${fmtInt(r.tokensOut)}</td>
    <td class="num">${usd(r.charged)}</td><td class="num">${usd(r.fees)}</td><td class="num" data-earned="${esc(r.earned)}">${usd(r.earned)}</td></tr>`).join('')}</tbody></table></div>`
}

export function operatorPage (user: SessionUser, v: OperatorView): string {
  const n = v.workers.ok ? v.workers.value.length : 0
  return page({
    title: 'Operator',
    user,
    active: 'operator',
    body: `${heading('Operator', `${plural(n, 'worker')} ${user.role === 'admin' ? 'on the mesh' : 'of yours'}. Your workers earn what their requests are charged, less the network's fee.`)}
<section class="card"><h2>Workers</h2>${workersCard(v.workers)}</section>
<section class="card"><h2>Your prices</h2>${pricesCard(v.prices)}</section>
<section class="card"><h2>Earnings</h2>${earningsCard(v.earnings)}</section>`
  })
}
