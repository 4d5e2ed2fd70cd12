import { usageChart, type DailyRow, type Metric } from '../chart.ts'
import { esc } from '../escape.ts'
import { DASH, fmtBalance, fmtCompact, fmtInt, fmtUsd } from '../format.ts'
import { empty, heading, page } from '../layout.ts'
import type { Maybe } from '../maybe.ts'
import type { SessionUser } from '../session.ts'
import { creditsCard, limitsCard, type AccountQuotaView, type CreditsView } from './account.ts'
import { cacheCard } from './cache-card.ts'
import type { CacheStats } from '../../../../shared/protocol/learning.ts'

// The usage page (/dashboard): totals, the chart by day, limits and credits, usage by model.

export interface ModelUsage { model: string, requests?: number, tokensIn?: number, tokensOut?: number, errors?: number, costUsd?: number | null }

/** The gateway's usage answer; the newer fields are optional so an older gateway still renders. */
export interface UsageView {
  userId: string
  daily: DailyRow[]
  totals: Omit<DailyRow, 'date'>
  byModel?: ModelUsage[]
  credits?: { balanceUsd: number, reservedUsd: number, availableUsd?: number } | null
}

const RANGES = [7, 30, 90]
const METRICS: Array<{ id: Metric, label: string }> = [{ id: 'requests', label: 'Requests' }, { id: 'tokens', label: 'Tokens' }, { id: 'cost', label: 'Cost' }]

function stat (label: string, value: string, foot: string, id: string): string {
  return `<div class="stat" data-stat="${id}"><p class="stat-label">${esc(label)}</p><p class="stat-value">${value}</p><p class="stat-foot">${foot}</p></div>`
}

export function overviewPage (user: SessionUser, usage: UsageView, days: number, metric: Metric,
  quota: Maybe<AccountQuotaView> = { ok: false, error: 'not asked' }, ledger: Maybe<CreditsView> = { ok: false, error: 'not asked' },
  cache: Maybe<CacheStats> = { ok: false, error: 'not asked' }): string {
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
</section>
${cacheCard(cache)}`
  })
}
