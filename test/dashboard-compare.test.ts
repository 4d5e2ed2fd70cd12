import test from 'brittle'
import { startTestMesh, gatewayClient, registerAdmin, until } from './support/harness.ts'
import { startFakeOpenAI } from './fakes/fake-openai.ts'
import { FAIL_MODEL, fakeTokens } from './fakes/fake-llm.ts'
import { syntheticText } from '../services/inference/backends/synthetic.ts'
import { GatewayProtocol } from '../shared/protocol/gateway.ts'
import { chromiumUnavailable, launchBrowser, newUser, overflowsHorizontally, PHONE, DESKTOP, screenshots } from './support/browser.ts'

// The dashboard's compare page in real headless Chromium against the whole mesh: a user picks two
// models from the catalog, types a prompt, and watches both columns fill in as the answers stream,
// then sees each column's tokens and cost; a model that fails shows its error in its own column.

const PRICES = { 'gpt-a': { input: 1, output: 2 } }

const unavailable = chromiumUnavailable()
if (unavailable) {
  // say why, in the TAP output, instead of passing silently
  console.log(`# dashboard compare browser test skipped: ${unavailable}`)
  test.skip(`dashboard compare in Chromium (skipped: ${unavailable})`, () => {})
} else {
  test('dashboard compare: two models stream side by side into their columns, with usage and cost per column', { timeout: 240_000 }, async (t) => {
    const openai = await startFakeOpenAI({ apiKey: 'sk-compare-page', models: ['gpt-a', FAIL_MODEL] })
    t.teardown(() => openai.close(), { order: 2 })
    const { mesh, db } = await startTestMesh(t, {
      serviceEnv: {
        auth: { ADMIN_USERS: 'boss' },
        gateway: { MODEL_PRICES: JSON.stringify(PRICES) },
        // slow enough that the page is seen filling in, not only finished
        inference: { OPENAI_BASE_URL: openai.baseURL, OPENAI_API_KEY: 'sk-compare-page', SYNTHETIC_TOKENS_PER_SEC: '15' }
      }
    })
    const { client } = await gatewayClient(t, mesh)
    const boss = await registerAdmin(client)
    const base = mesh.webUrl!
    const browser = await launchBrowser(t)
    const { page } = await newUser(browser, base)

    await page.goto('/register')
    await page.getByLabel('Username').fill('dana')
    await page.getByLabel('Email').fill('dana@example.com')
    await page.getByLabel('Password').fill('dana has a long password')
    await page.getByRole('button', { name: 'Create account' }).click()
    await page.waitForURL('**/dashboard/keys')
    await client.call(GatewayProtocol.grantCredits, { token: boss, username: 'dana', amountUsd: 1 })
    await page.getByLabel('Name').fill('side-by-side')
    await page.getByRole('button', { name: 'Create key' }).click()
    await page.locator('[data-secret]').waitFor({ state: 'visible' })
    const key = await page.locator('[data-secret]').inputValue()

    await page.getByRole('navigation').getByRole('link', { name: 'Compare' }).click()
    await page.waitForURL('**/dashboard/compare')
    t.ok(await page.getByRole('heading', { name: 'Compare models' }).isVisible(), 'the nav leads to the compare page')
    const choices = await page.locator('input[name="model"]').evaluateAll((els) => els.map((e) => (e as HTMLInputElement).value))
    t.alike(choices.sort(), ['fail-500', 'gpt-a', 'synthetic'], 'the catalog\'s models are offered')
    t.ok((await page.locator('label.compare-model', { hasText: 'gpt-a' }).innerText()).includes('$1'), 'with their prices')

    for (const m of choices) await page.locator(`input[name="model"][value="${m}"]`).setChecked(m === 'synthetic' || m === 'gpt-a')
    const prompt = 'Tell me about side by side answers'
    await page.getByLabel('Prompt').fill(prompt)
    await page.getByLabel('API key').fill(key)
    await page.getByLabel('Max tokens').fill('24')
    await page.getByRole('button', { name: 'Compare' }).click()

    const synText = page.locator('[data-column="synthetic"] [data-column-text]')
    const gptText = page.locator('[data-column="gpt-a"] [data-column-text]')
    const expectedSyn = syntheticText([{ role: 'user', content: prompt }], 24)
    const expectedGpt = fakeTokens('gpt-a', 24).join('')
    // the synthetic model sends 15 tokens a second: its column is seen part-way filled
    const partial = await until(() => synText.innerText(), (s) => s.length > 0 && s.length < expectedSyn.length, 20_000, 10)
    t.ok(partial.length > 0 && partial.length < expectedSyn.length && expectedSyn.startsWith(partial), `the column fills in as tokens arrive (seen ${partial.length} of ${expectedSyn.length} characters)`)
    const cols = await page.locator('[data-column]').evaluateAll((els) => els.map((e) => { const r = e.getBoundingClientRect(); return { model: (e as HTMLElement).dataset.column, x: r.x, y: r.y } }))
    t.is(cols.length, 2, 'a column per model')
    t.ok(cols[0]!.y === cols[1]!.y && cols[0]!.x < cols[1]!.x, 'side by side: ' + JSON.stringify(cols))
    await screenshots(page, 'compare-streaming', { mask: ['input[name="apiKey"]'] })

    await until(() => synText.innerText(), (s) => s === expectedSyn, 30_000)
    t.is(await synText.innerText(), expectedSyn, 'the synthetic column holds its whole streamed answer')
    t.is(await gptText.innerText(), expectedGpt, 'the gpt-a column holds its own')
    const usage = (m: string) => page.locator(`[data-column="${m}"] [data-column-usage]`)
    await until(() => usage('synthetic').innerText(), (s) => s.includes('tokens'), 15_000)
    t.ok(/^\d+ → 24 tokens · \d+ ms · \$0$/.test(await usage('synthetic').innerText()), 'synthetic: tokens, latency, free: ' + await usage('synthetic').innerText())
    const gptUsage = await usage('gpt-a').innerText()
    const m = /^(\d+) → 24 tokens · \d+ ms · \$([0-9.]+)$/.exec(gptUsage)
    t.ok(m, 'gpt-a: tokens, latency and cost: ' + gptUsage)
    if (m) t.is(Math.round(Number(m[2]) * 1e9), Number(m[1]) * 1000 + 24 * 2000, 'the cost shown is its price times its tokens')
    const total = page.locator('[data-compare-total]')
    await total.waitFor({ state: 'visible' })
    t.ok((await total.innerText()).includes(m ? `$${m[2]}` : '$'), 'the total for all models: ' + await total.innerText())
    await screenshots(page, 'compare-done', { mask: ['input[name="apiKey"]'] })
    await page.setViewportSize(PHONE)
    t.absent(await overflowsHorizontally(page), 'the page fits a phone without scrolling sideways')
    await page.setViewportSize(DESKTOP)

    const { rows } = await until(() => db.pool.query("SELECT model_used, status, cost_nusd FROM request_logs r JOIN users u ON u.id = r.user_id WHERE u.username = 'dana' AND status <> 'processing' ORDER BY model_used"), (r) => r.rows.length >= 2)
    t.alike(rows.map((r: any) => [r.model_used, r.status]), [['gpt-a', 'success'], ['synthetic', 'success']], 'two columns → two requests billed')
    if (m) t.is(Number(rows[0].cost_nusd), Math.round(Number(m[2]) * 1e9), 'gpt-a charged what its column shows')

    // ---- a failing model fails in its own column ------------------------------------------------
    await page.locator(`input[name="model"][value="${FAIL_MODEL}"]`).setChecked(true)
    await page.locator('input[name="model"][value="gpt-a"]').setChecked(false)
    await page.getByLabel('Max tokens').fill('3')
    await page.getByRole('button', { name: 'Compare' }).click()
    const failed = page.locator(`[data-column="${FAIL_MODEL}"] [data-column-error]`)
    await failed.waitFor({ state: 'visible' })
    t.ok((await failed.innerText()).includes('[BACKEND_ERROR]'), 'the failed model says why in its column: ' + await failed.innerText())
    await until(() => synText.innerText(), (s) => s === syntheticText([{ role: 'user', content: prompt }], 3), 15_000)
    t.is(await synText.innerText(), syntheticText([{ role: 'user', content: prompt }], 3), 'while the other column still gets its answer')

    // ---- a wrong key: one clear error, no columns ----------------------------------------------
    await page.getByLabel('API key').fill('hi_' + 'x'.repeat(43))
    await page.getByRole('button', { name: 'Compare' }).click()
    const error = page.locator('form [data-error]')
    await error.waitFor({ state: 'visible' })
    t.ok((await error.innerText()).includes('invalid_api_key'), 'a wrong key is one coded error: ' + await error.innerText())
    t.is(await page.locator('[data-column]').count(), 0, 'and no columns')
  })
}
