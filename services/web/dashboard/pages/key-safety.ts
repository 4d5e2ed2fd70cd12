import type { ApiKeyInfo } from '../../../../shared/protocol/auth.ts'
import type { SafetyEvent } from '../../../../shared/protocol/safety.ts'
import { esc } from '../escape.ts'
import { fmtDate } from '../format.ts'
import { empty } from '../layout.ts'
import type { Maybe } from '../maybe.ts'

// A key's safety card: its policy (and a form to change it), a suspension or anomaly alert, and
// the latest safety decisions on its requests (detector, category, action; never the text).

export const POLICY_HELP: Record<string, string> = {
  '': 'the account\'s policy, else the operator\'s default',
  off: 'nothing is inspected',
  flag: 'prompts and answers are inspected and findings recorded; nothing changes',
  redact: 'personal data and secrets are replaced by placeholders before the prompt leaves the gateway; unsafe answers are cut',
  block: 'a prompt with any finding is refused and billed nothing; unsafe answers are cut'
}

export function safetyCard (k: ApiKeyInfo, events: Maybe<SafetyEvent[]>): string {
  const current = k.safety ?? ''
  const options = Object.entries(POLICY_HELP).map(([v, help]) => `<option value="${esc(v)}"${v === current ? ' selected' : ''}>${esc(v || 'default')} — ${esc(help)}</option>`).join('')
  const alert = k.suspendedAt
    ? `<p class="form-error" data-suspended>Suspended ${fmtDate(k.suspendedAt)} after unusual traffic (score ${esc(k.anomalyScore ?? '')}); an administrator can resume it (<code>hyperinfer keys resume ${esc(k.id)}</code>).</p>`
    : k.anomalyAt ? `<p class="muted" data-anomaly-note>Unusual traffic ${fmtDate(k.anomalyAt)} (score ${esc(k.anomalyScore ?? '')}).</p>` : ''
  const list = !events.ok
    ? `<p class="muted">Safety decisions are not available right now: ${esc(events.error)}</p>`
    : events.value.length === 0
      ? empty('No safety decisions yet', 'What the detectors find in this key\'s prompts and answers shows up here.')
      : `<div class="table-wrap"><table class="table" data-table="safety-events">
  <thead><tr><th>When</th><th>Request</th><th>Stage</th><th>Detector</th><th>Category</th><th>Action</th></tr></thead>
  <tbody>${events.value.map((e) => `<tr data-event-action="${esc(e.action)}">
    <td data-label="When">${fmtDate(e.createdAt)}</td><td data-label="Request"><code title="${esc(e.requestId)}">${esc(e.requestId.slice(0, 8))}…</code></td>
    <td data-label="Stage">${esc(e.stage)}</td><td data-label="Detector">${esc(e.detector)}</td><td data-label="Category">${esc(e.category)}</td><td data-label="Action"><span class="chip">${esc(e.action)}</span></td></tr>`).join('')}</tbody></table></div>`
  return `<section class="card" data-card="safety">
  <div class="card-head"><h2>Safety</h2><span class="muted">Policy <span class="chip" data-safety>${esc(current || 'default')}</span></span></div>
  ${alert}
  ${k.status === 'active' ? `<form class="create" data-form="key-safety" data-key-id="${esc(k.id)}" novalidate>
    <label class="grow">Policy<select name="safety">${options}</select></label>
    <button class="btn" type="submit">Save</button>
    <p class="form-error" data-error role="alert" hidden></p>
  </form>` : ''}
  <h3 class="sub-head">Recent decisions</h3>
  ${list}
</section>`
}

/** The account's own policy: what every key that sets none follows (empty: the operator's default). */
export function accountSafetyCard (safety: Maybe<{ safety: string | null }>): string {
  if (!safety.ok) return `<section class="card" data-card="account-safety"><div class="card-head"><h2>Account safety policy</h2></div><p class="muted">The account's safety policy is not available right now: ${esc(safety.error)}</p></section>`
  const current = safety.value.safety ?? ''
  const help: Record<string, string> = { ...POLICY_HELP, '': 'the operator\'s default' }
  const options = Object.entries(help).map(([v, h]) => `<option value="${esc(v)}"${v === current ? ' selected' : ''}>${esc(v || 'default')} — ${esc(h)}</option>`).join('')
  return `<section class="card" data-card="account-safety">
  <div class="card-head"><h2>Account safety policy</h2><span class="muted">Policy <span class="chip" data-account-safety>${esc(current || 'default')}</span></span></div>
  <p class="muted">Every key that sets no policy of its own follows this one; a key's own policy (on its page) comes first.</p>
  <form class="create" data-form="account-safety" novalidate>
    <label class="grow">Policy<select name="safety">${options}</select></label>
    <button class="btn" type="submit">Save</button>
    <p class="form-error" data-error role="alert" hidden></p>
  </form>
</section>`
}
