import type { RequestReceipt, RequestSummary } from '../../../../shared/protocol/requests.ts'
import { verifyReceipt, type ReceiptCheck, type UsageReceipt } from '../../../../shared/receipt.ts'
import { esc } from '../escape.ts'
import { fmtDate, fmtInt, fmtUsd } from '../format.ts'
import { empty, heading, page } from '../layout.ts'
import type { Maybe } from '../maybe.ts'
import type { SessionUser } from '../session.ts'

// The requests page (/dashboard/requests): the account's latest requests, each linked to its signed
// usage receipt, and a receipt's own page with every check. The checks are the ones `hyperinfer
// receipts verify` makes offline (shared/receipt.ts), run here on the document the gateway stored,
// so what the page calls verified is what anyone holding the JSON can check for themselves.

export type ReceiptState = 'verified' | 'disputed' | 'invalid' | 'none'

/** A request's receipt as the page labels it: both signatures and both charges check out, or not. */
export function receiptState (r: RequestReceipt | null): { state: ReceiptState, checks: ReceiptCheck[] } {
  if (!r) return { state: 'none', checks: [] }
  if (r.status === 'disputed') return { state: 'disputed', checks: r.doc ? verifyReceipt(r.doc).checks : [] }
  const v = verifyReceipt(r.doc)
  return { state: v.ok ? 'verified' : 'invalid', checks: v.checks }
}

const LABELS: Record<ReceiptState, [string, string]> = {
  verified: ['verified', 'status-active'],
  disputed: ['disputed', 'status-revoked'],
  invalid: ['does not verify', 'status-revoked'],
  none: ['no receipt', 'status-idle']
}

function badge (state: ReceiptState): string {
  const [label, cls] = LABELS[state]
  return `<span class="status ${cls}" data-receipt-state="${state}">${label}</span>`
}

const nusd = (n: number) => fmtUsd(n / 1e9)
const receiptHref = (id: string) => `/dashboard/requests/${encodeURIComponent(id)}`
const jsonHref = (id: string, download: boolean) => `${receiptHref(id)}/receipt.json${download ? '?download=1' : ''}`

function row (r: RequestSummary): string {
  const { state } = receiptState(r.receipt)
  const links = r.receipt?.doc
    ? `<a href="${receiptHref(r.id)}" data-receipt-view>View</a> <a href="${jsonHref(r.id, false)}" data-receipt-json>JSON</a> <a href="${jsonHref(r.id, true)}" download="receipt-${esc(r.id)}.json" data-receipt-download>Download</a>`
    : ''
  return `<tr data-request="${esc(r.id)}">
    <td data-label="Time">${fmtDate(r.createdAt)}</td>
    <td data-label="Request"><code title="${esc(r.id)}">${esc(r.id.slice(0, 8))}…</code></td>
    <td data-label="Model"><code>${esc(r.model)}</code></td>
    <td data-label="Status">${esc(r.status)}${r.errorCode ? ` <span class="muted">${esc(r.errorCode)}</span>` : ''}</td>
    <td class="num" data-label="Tokens in / out">${fmtInt(r.tokensIn)} / ${fmtInt(r.tokensOut)}</td>
    <td class="num" data-label="Cost" data-cost-nusd="${r.costNusd}">${nusd(r.costNusd)}</td>
    <td data-label="Receipt"><span class="receipt-cell">${badge(state)} ${links}</span></td></tr>`
}

export function requestsPage (user: SessionUser, requests: Maybe<RequestSummary[]>): string {
  const body = !requests.ok
    ? `<p class="muted" data-error>${esc(requests.error)}</p>`
    : requests.value.length === 0
      ? empty('No requests yet', 'Your requests show up here, each with the usage receipt its worker signed.')
      : `<div class="table-wrap"><table class="table" data-table="requests">
  <thead><tr><th>Time</th><th>Request</th><th>Model</th><th>Status</th><th class="num">Tokens in / out</th><th class="num">Cost</th><th>Receipt</th></tr></thead>
  <tbody>${requests.value.map(row).join('')}</tbody></table></div>`
  return page({
    title: 'Requests',
    user,
    active: 'requests',
    body: `${heading('Requests', 'Your latest requests, newest first. The worker that served a request signs its receipt and the gateway countersigns what it billed; check a downloaded receipt yourself with <code>hyperinfer receipts verify receipt.json</code>, offline.')}
<section class="card">${body}</section>`
  })
}

export function receiptPage (user: SessionUser, id: string, doc: UsageReceipt): string {
  const { state, checks } = receiptState({ status: doc.disputed ? 'disputed' : 'settled', dispute: doc.disputed ?? null, doc })
  const w = doc.worker
  const fact = (label: string, value: string) => `<div><dt>${esc(label)}</dt><dd>${value}</dd></div>`
  return page({
    title: 'Receipt',
    user,
    active: 'requests',
    body: `<p class="crumbs"><a href="/dashboard/requests">Requests</a> /</p>
${heading('Usage receipt', `Request <code>${esc(id)}</code>`, badge(state))}
<section class="card">
  <dl class="facts">
    ${fact('Model', `<code>${esc(w.model)}</code>`)}
    ${fact('Tokens', `${fmtInt(w.tokensIn)} in · ${fmtInt(w.tokensOut)} out`)}
    ${fact('Price', `${esc(w.priceNusdPerToken.input)} / ${esc(w.priceNusdPerToken.output)} nUSD a token (in / out)`)}
    ${fact('Worker\'s charge', `<span data-worker-charge="${w.chargeNusd}">${nusd(w.chargeNusd)}</span>`)}
    ${fact('Billed', doc.gateway ? `<span data-billed="${doc.gateway.chargeNusd}">${nusd(doc.gateway.chargeNusd)}</span> (${fmtInt(doc.gateway.tokensIn)} in · ${fmtInt(doc.gateway.tokensOut)} out)` : 'nothing: refused at settlement')}
    ${fact('Worker', `<code>${esc(w.workerKey)}</code>`)}
    ${fact('Gateway', `<code>${esc(w.gatewayKey)}</code>`)}
    ${fact('Signed', fmtDate(w.time))}
  </dl>
  <div class="card-foot"><a class="btn btn-small" href="${jsonHref(id, true)}" download="receipt-${esc(id)}.json" data-receipt-download>Download JSON</a> <a href="${jsonHref(id, false)}">View raw JSON</a></div>
</section>
<section class="card"><h2>Checks</h2>
  <div class="table-wrap"><table class="table" data-table="receipt-checks">
  <thead><tr><th>Check</th><th>Result</th><th>Detail</th></tr></thead>
  <tbody>${checks.map((c) => `<tr data-check="${esc(c.name)}"><td>${esc(c.name)}</td><td>${c.ok ? '<span class="status status-active">ok</span>' : '<span class="status status-revoked">fails</span>'}</td><td class="muted">${esc(c.detail)}</td></tr>`).join('')}</tbody></table></div>
</section>
<section class="card"><h2>Document</h2><pre class="receipt-json" data-receipt-doc>${esc(JSON.stringify(doc, null, 2))}</pre></section>`
  })
}
