import type { ApiKeyInfo } from '../../../../shared/protocol/auth.ts'
import { esc } from '../escape.ts'
import { fmtDate } from '../format.ts'
import { empty, heading, page } from '../layout.ts'
import type { SessionUser } from '../session.ts'
import type { Maybe } from '../maybe.ts'
import { accountSafetyCard } from './key-safety.ts'

// The API keys page: the form that creates a key (shown once, by app.js) and the list of keys.

export function statusBadge (k: ApiKeyInfo): string {
  const status = k.suspendedAt && k.status === 'active' ? 'suspended' : k.status
  // an anomaly alert on the key: a badge until the owner or an admin looks at it (the key page says why)
  const anomaly = k.anomalyAt ? ` <span class="status status-revoked" data-anomaly title="unusual traffic ${esc(k.anomalyAt)} (score ${esc(k.anomalyScore ?? '')})">anomaly</span>` : ''
  return `<span class="status status-${esc(status === 'suspended' ? 'revoked' : status)}" data-status>${esc(status)}</span>${anomaly}`
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

export function keysPage (user: SessionUser, keys: ApiKeyInfo[], accountSafety: Maybe<{ safety: string | null }>): string {
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
</section>
${accountSafetyCard(accountSafety)}`
  })
}
