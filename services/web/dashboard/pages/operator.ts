import type { RegistryWorker } from '../../../../shared/protocol/gateway.ts'
import type { EarningsRow, OperatorPrice, PriceBounds } from '../../../../shared/protocol/operators.ts'
import { esc } from '../escape.ts'
import { fmtInt, fmtUsd, plural } from '../format.ts'
import { empty, heading, page } from '../layout.ts'
import type { Maybe } from '../maybe.ts'
import type { SessionUser } from '../session.ts'

// The operator page: the workers the account owns, the prices they charge and what they earned,
// by day, worker and model (the network's fee shown apart). An admin sees every worker here.
// Drain / Resume and the price forms post from operator.js; the gateway checks ownership again.

export interface OperatorView {
  workers: Maybe<RegistryWorker[]>
  prices: Maybe<{ mine: OperatorPrice[], bounds: PriceBounds[], feePct: number }>
  earnings: Maybe<{ rows: EarningsRow[], total: { charged: number, fees: number, earned: number }, feePct: number }>
}

const usd = (nusd: number) => fmtUsd(nusd / 1e9)
const perMillion = (n: number) => usd(n * 1e6)
const failed = (m: { ok: false, error: string }) => `<p class="muted" data-error>${esc(m.error)}</p>`

function workerAction (w: RegistryWorker): string {
  return w.drained
    ? `<button type="button" class="btn btn-small" data-drain-worker="${esc(w.key)}" data-drain="false">Resume</button>`
    : `<button type="button" class="btn btn-quiet btn-small" data-drain-worker="${esc(w.key)}" data-drain="true">Drain</button>`
}

function workersCard (m: OperatorView['workers']): string {
  if (!m.ok) return failed(m)
  if (m.value.length === 0) return empty('No workers yet', 'Ask an admin for a join token issued to your account: <code>hyperinfer workers token create --label L --owner you</code>, then start a worker with it.')
  // the list holds only the workers this account may act on: its own (an admin's: every one)
  return `<div class="table-wrap"><table class="table" data-table="operator-workers">
  <thead><tr><th>Worker</th><th>Owner</th><th>State</th><th>Models</th><th class="num">Served</th><th></th></tr></thead>
  <tbody>${m.value.map((w) => `<tr data-worker="${esc(w.key)}"><td><code>${esc(w.key.slice(0, 16))}…</code>${w.label ? ` <span class="muted">${esc(w.label)}</span>` : ''}</td>
    <td data-owner>${esc(w.owner ?? '—')}</td><td data-state>${w.drained ? 'drained' : esc(w.approval.state)}${w.connected ? '' : ' <span class="muted">(offline)</span>'}</td>
    <td>${w.models.map((x) => `<span class="chip">${esc(x)}</span>`).join(' ')}</td><td class="num">${fmtInt(w.served)}</td><td class="actions">${workerAction(w)}</td></tr>`).join('')}</tbody></table></div>
  <p class="muted">A drained worker finishes what it is running and gets no new requests until it is resumed.</p>`
}

/** One model's price form: what it charges now (the set price held within the bounds, else the registry's). */
function priceForm (model: string, mine: OperatorPrice | undefined, b: PriceBounds | undefined): string {
  const field = (side: 'input' | 'output', label: string, min?: number, max?: number) =>
    `<label>${label}<input name="${side}" type="number" inputmode="numeric" min="${min ?? 0}" max="${max ?? 10_000_000}" step="1" required value="${mine ? esc(mine[side]) : ''}"></label>`
  const now = mine
    ? `<span data-price-in="${esc(mine.effective.input)}" data-price-out="${esc(mine.effective.output)}">${perMillion(mine.effective.input)} in · ${perMillion(mine.effective.output)} out per 1M tokens</span>`
    : '<span class="muted" data-price-unset>charges the registry\'s price</span>'
  const allowed = b ? ` <span class="muted" data-bounds>(allowed: ${b.minInput}–${b.maxInput} in, ${b.minOutput}–${b.maxOutput} out)</span>` : ''
  return `<form class="price-form" data-form="set-price" data-model="${esc(model)}" novalidate>
    <p class="grow"><code>${esc(model)}</code> ${now}${allowed}</p>
    ${field('input', 'Input nUSD/token', b?.minInput, b?.maxInput)}
    ${field('output', 'Output nUSD/token', b?.minOutput, b?.maxOutput)}
    <button class="btn btn-small" type="submit">Set price</button>
    <p class="form-error" data-error role="alert" hidden></p>
  </form>`
}

function pricesCard (m: OperatorView['prices'], models: string[]): string {
  if (!m.ok) return failed(m)
  if (models.length === 0) return '<p class="muted">None of your workers serves a model yet: once one does, you set its price here.</p>'
  const mine = new Map(m.value.mine.map((p) => [p.model, p]))
  const bounds = new Map(m.value.bounds.map((b) => [b.model, b]))
  return `<p class="muted">Prices are nano-USD per token: 1,000 is $1 per 1M tokens. A request pays the price of the worker that serves it; the network keeps ${esc(m.value.feePct)}%.</p>
<div data-prices>${models.map((model) => priceForm(model, mine.get(model), bounds.get(model))).join('\n')}</div>`
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
  // an operator prices the models its own workers serve (an admin's list holds everyone's)
  const own = v.workers.ok ? v.workers.value.filter((w) => w.owner === user.username) : []
  const ownModels = [...new Set(own.flatMap((w) => w.models))].sort()
  return page({
    title: 'Operator',
    user,
    active: 'operator',
    body: `${heading('Operator', `${plural(n, 'worker')} ${user.role === 'admin' ? 'on the mesh' : 'of yours'}. Your workers earn what their requests are charged, less the network's fee.`)}
<section class="card"><h2>Workers</h2>${workersCard(v.workers)}</section>
<section class="card"><h2>Your prices</h2>${pricesCard(v.prices, ownModels)}</section>
<section class="card"><h2>Earnings</h2>${earningsCard(v.earnings)}</section>
<script src="/dashboard/assets/operator.js" defer></script>`
  })
}
