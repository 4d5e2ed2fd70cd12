import type { ApiKeyInfo } from '../../../../shared/protocol/auth.ts'
import { esc } from '../escape.ts'
import { fmtDate, fmtUsd } from '../format.ts'
import { heading, page } from '../layout.ts'
import type { SessionUser } from '../session.ts'
import { statusBadge } from './keys.ts'
import { safetyCard } from './key-safety.ts'
import type { SafetyEvent } from '../../../../shared/protocol/safety.ts'
import type { Maybe } from '../maybe.ts'

// One API key's page: everything known about it, and revoking it.

export function keyPage (user: SessionUser, k: ApiKeyInfo, events: Maybe<SafetyEvent[]> = { ok: true, value: [] }): string {
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
</section>
${safetyCard(k, events)}`
  })
}
