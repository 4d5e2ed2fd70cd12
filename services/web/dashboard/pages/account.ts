import type { Credits, LedgerEntry } from '../../../../shared/protocol/auth.ts'
import type { QuotaLimit } from '../../../../shared/protocol/gateway.ts'
import { esc } from '../escape.ts'
import { DASH, fmtBalance, fmtCompact, fmtDate, fmtInt, fmtReset, fmtUsd, fmtUsdSigned } from '../format.ts'
import { empty } from '../layout.ts'
import type { Maybe } from '../maybe.ts'

// The account's cards on the usage page: its limits (tier, used/cap meters, resets) and its
// prepaid credits with their recent ledger.

export interface AccountQuotaView { tier: string, limits: QuotaLimit[], credits: Credits }
export interface CreditsView extends Credits { ledger: LedgerEntry[] }

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

export function limitsCard (quota: Maybe<AccountQuotaView>): string {
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

export function creditsCard (credits: Maybe<CreditsView>): string {
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
