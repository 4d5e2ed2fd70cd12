import type { CacheStats } from '../../../../shared/protocol/learning.ts'
import { esc } from '../escape.ts'
import { fmtInt, fmtUsd } from '../format.ts'
import type { Maybe } from '../maybe.ts'

// The response cache on the usage page: how many of the account's chat requests in the last day were
// answered from the cache, by tier, and what that saved.

export function cacheCard (stats: Maybe<CacheStats>): string {
  if (!stats.ok) return `<section class="card" data-card="cache"><div class="card-head"><h2>Response cache</h2></div><p class="muted">Not available: ${esc(stats.error)}</p></section>`
  const s = stats.value
  const pct = `${(s.hitRate * 100).toFixed(1)}%`
  return `<section class="card" data-card="cache">
  <div class="card-head"><h2>Response cache</h2><p class="muted">last 24 hours</p></div>
  <div class="table-wrap"><table class="table" data-table="cache">
  <thead><tr><th>Figure</th><th class="num">Value</th></tr></thead>
  <tbody>
    <tr><td data-label="Figure">Answered from the cache</td><td class="num" data-label="Value" data-figure="hits">${fmtInt(s.hits.total)} of ${fmtInt(s.requests)} (${pct})</td></tr>
    <tr><td data-label="Figure">Local · shared · semantic hits</td><td class="num" data-label="Value">${fmtInt(s.hits.local)} · ${fmtInt(s.hits.shared)} · ${fmtInt(s.hits.semantic)}</td></tr>
    <tr><td data-label="Figure">Saved</td><td class="num" data-label="Value" data-figure="saved">${fmtUsd(s.savedUsd)}</td></tr>
    <tr><td data-label="Figure">Your cached answers</td><td class="num" data-label="Value">${fmtInt(s.entries)} (kept ${fmtInt(s.ttlSeconds)} s)</td></tr>
  </tbody></table></div>
</section>`
}
