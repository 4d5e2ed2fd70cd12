import test from 'brittle'
import { startTestMesh, until } from './support/harness.ts'
import { chromiumUnavailable, launchBrowser, newUser, screenshots } from './support/browser.ts'

// Safety on the dashboard, in real headless Chromium against the whole mesh: the account's own
// policy set on the keys page (and felt by every key that sets none), a key's own policy on its
// page, the key's safety decisions listed, and the anomaly badge once the key is used from many
// new addresses (through a trusted proxy, as the web service sees HTTP clients).

const EMAIL_PROMPT = 'please write to dora.q@example.com about the invoice'

function chat (base: string, key: string, content: string, from = '10.9.8.7') {
  return fetch(base + '/v1/chat/completions', {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'x-forwarded-for': from },
    body: JSON.stringify({ model: 'synthetic', messages: [{ role: 'user', content }], max_tokens: 4 })
  })
}

const unavailable = chromiumUnavailable()
if (unavailable) {
  console.log(`# dashboard safety browser test skipped: ${unavailable}`)
  test.skip(`dashboard safety in Chromium (skipped: ${unavailable})`, () => {})
} else {
  test('dashboard: the account\'s and a key\'s safety policy, the decisions list and the anomaly badge in Chromium', { timeout: 240_000 }, async (t) => {
    const { mesh } = await startTestMesh(t, {
      serviceEnv: {
        web: { WEB_TRUSTED_PROXIES: '127.0.0.1,::1,::ffff:127.0.0.1' },
        gateway: { SAFETY_DEFAULT_POLICY: 'flag' },
        inference: { SYNTHETIC_MODELS: 'synthetic' }
      }
    })
    const base = mesh.webUrl!
    const browser = await launchBrowser(t)
    const { page } = await newUser(browser, base)

    await page.goto('/register')
    await page.getByLabel('Username').fill('dora')
    await page.getByLabel('Email').fill('dora@example.com')
    await page.getByLabel('Password').fill('dora password 123')
    await page.getByRole('button', { name: 'Create account' }).click()
    await page.waitForURL('**/dashboard/keys')
    await page.getByLabel('Name').fill('app')
    await page.getByRole('button', { name: 'Create key' }).click()
    const secret = page.locator('[data-secret]')
    await secret.waitFor({ state: 'visible' })
    const key = await secret.inputValue()
    t.is((await chat(base, key, EMAIL_PROMPT)).status, 200, 'under the operator\'s default (flag) a prompt with an address goes through')

    // the account's own policy, from the keys page
    await page.reload()
    const account = page.locator('[data-card="account-safety"]')
    t.is(await account.locator('[data-account-safety]').innerText(), 'default', 'the account follows the operator\'s default')
    await account.getByLabel('Policy').selectOption('block')
    await account.getByRole('button', { name: 'Save' }).click()
    await page.locator('[data-account-safety]', { hasText: 'block' }).waitFor()
    t.is(await page.locator('[data-account-safety]').innerText(), 'block', 'saved: the card shows block after the reload')
    t.is(await page.locator('[data-card="account-safety"] select').inputValue(), 'block')
    await screenshots(page, 'account-safety')
    const blocked = await until(() => chat(base, key, EMAIL_PROMPT), (r) => r.status === 400, 15_000, 250)
    t.is(blocked.status, 400, 'the key, which sets no policy, is now held to the account\'s block')
    const err = await blocked.json() as { error: { code: string } }
    t.is(err.error.code, 'SAFETY_BLOCKED', 'with the safety refusal')

    // the key's page: its decisions, and its own policy over the account's
    const keyId = await page.locator('[data-table="keys"] tbody tr').first().getAttribute('data-key-id')
    await page.goto(`/dashboard/keys/${keyId}`)
    const card = page.locator('[data-card="safety"]')
    const row = card.locator('[data-table="safety-events"] tbody tr[data-event-action="block"]').first()
    await row.waitFor()
    const text = await row.innerText()
    t.ok(/input/.test(text) && /pii/.test(text) && /email/.test(text), 'the block is listed: stage, detector, category — ' + text.replace(/\s+/g, ' '))
    t.absent((await card.innerText()).includes('dora.q@'), 'never the text of the prompt')
    t.ok(await card.locator('tr[data-event-action="flag"]').count() >= 1, 'the earlier finding under flag is listed too')
    await card.getByLabel('Policy').selectOption('flag')
    await card.getByRole('button', { name: 'Save' }).click()
    await page.locator('[data-card="safety"] [data-safety]', { hasText: 'flag' }).waitFor()
    t.is(await page.locator('[data-card="safety"] [data-safety]').innerText(), 'flag', 'the key\'s own policy is saved')
    const passes = await until(() => chat(base, key, EMAIL_PROMPT), (r) => r.status === 200, 15_000, 250)
    t.is(passes.status, 200, 'and comes before the account\'s: the prompt goes through again')

    // the key leaks: many new addresses at once raise an anomaly, shown as a badge and on its page
    t.is(await page.locator('[data-anomaly-note], [data-suspended]').count(), 0, 'no anomaly yet')
    for (let i = 0; i < 10; i++) await chat(base, key, `hello ${i}`, `203.0.113.${i + 40}`)
    await page.goto('/dashboard/keys')
    const badge = await until(async () => { await page.reload(); return page.locator('[data-table="keys"] [data-anomaly]').count() }, (n) => n > 0, 30_000, 500)
    t.is(badge, 1, 'the keys list carries an anomaly badge')
    t.ok(/unusual traffic/.test(await page.locator('[data-anomaly]').getAttribute('title') ?? ''), 'which says why')
    await page.goto(`/dashboard/keys/${keyId}`)
    t.ok(/Unusual traffic .*score \d/.test(await page.locator('[data-anomaly-note]').innerText()), 'the key\'s page says when and with what score')
    await screenshots(page, 'key-safety-anomaly')
  })
}
