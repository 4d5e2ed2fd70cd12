import type { ModelListing } from '../../../../shared/protocol/gateway.ts'
import { MAX_COMPARE_MODELS } from '../../../../shared/compare.ts'
import { esc } from '../escape.ts'
import { empty, heading, page } from '../layout.ts'
import type { SessionUser } from '../session.ts'
import { priceOf } from './models.ts'

// The compare page: pick models from the catalog, type a prompt, and compare.js streams the answers
// side by side from POST /v1/compare, a column per model, each with its usage, latency and cost.
// It runs on the session: the page posts to /api/dashboard/compare, and the server runs each model
// with the session's own "dashboard" key (its limits and the account's credits apply), which the
// page never sees (dashboard/session-keys.ts).

function modelChoice (m: ModelListing, checked: boolean): string {
  return `<label class="check compare-model"><input type="checkbox" name="model" value="${esc(m.id)}"${checked ? ' checked' : ''}>
    <code>${esc(m.id)}</code> <span class="muted">${priceOf(m)}</span></label>`
}

/** `live`: the models served now, with the registry's prices merged in when it answered. */
export function comparePage (user: SessionUser, live: ModelListing[]): string {
  const models = [...live].sort((a, b) => a.id.localeCompare(b.id))
  const form = models.length === 0
    ? empty('No models online', 'No worker is connected right now, so there is nothing to compare.')
    : `<form class="compare-form" data-form="compare" data-max-models="${MAX_COMPARE_MODELS}" novalidate>
    <fieldset class="compare-models"><legend>Models <span class="hint">(up to ${MAX_COMPARE_MODELS}; prices per 1M tokens in · out)</span></legend>
      ${models.map((m, i) => modelChoice(m, i < 2)).join('\n      ')}
    </fieldset>
    <label>Prompt<textarea name="prompt" rows="3" required maxlength="100000" placeholder="e.g. Explain quantum computing in two sentences"></textarea></label>
    <div class="compare-row">
      <label>Max tokens<input name="maxTokens" type="number" min="1" max="32768" value="256" inputmode="numeric"></label>
      <button class="btn" type="submit" data-compare-run>Compare</button>
      <button class="btn btn-quiet" type="button" data-compare-stop hidden>Stop</button>
    </div>
    <p class="muted">Each model runs as its own request, billed to your account's credits on its own. It runs under your session's <em>dashboard</em> key, which expires within the hour and ends when you log out; its requests are listed under <a href="/dashboard/requests">Requests</a>.</p>
    <p class="form-error" data-error role="alert" hidden></p>
  </form>`
  return page({
    title: 'Compare',
    user,
    active: 'compare',
    body: `${heading('Compare models', 'One prompt to several models at once; the answers stream side by side.')}
<section class="card">${form}</section>
<section class="compare-grid" data-compare-results aria-live="polite"></section>
<p class="muted compare-total" data-compare-total hidden></p>
<script src="/dashboard/assets/compare.js" defer></script>`
  })
}
