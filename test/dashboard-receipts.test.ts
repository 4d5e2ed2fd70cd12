import test from 'brittle'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { startTestMesh, gatewayClient, registerAdmin, runCli, until } from './support/harness.ts'
import { chromiumUnavailable, launchBrowser, newUser, overflowsHorizontally, PHONE, DESKTOP, screenshots } from './support/browser.ts'
import { AIInferenceClient } from '../shared/sdk/index.ts'
import { GatewayProtocol } from '../shared/protocol/gateway.ts'
import type { MeshClient } from '../shared/mesh/client.ts'
import { verifyReceipt, type UsageReceipt } from '../shared/receipt.ts'
import { ReceiptWorker } from './fakes/receipt-worker.ts'

// Usage receipts where users meet them: the SDK fetches one over RPC and over HTTP by the request id
// an answer carries, and the dashboard's requests page lists each request with its receipt, its
// verification status (the offline checks, run on the stored document), a page with every check,
// and the JSON to view or download, which `hyperinfer receipts verify` then checks with no mesh.

const PRICE = { input: 1, output: 2 } // USD per 1M tokens
const PRICES = { synthetic: PRICE, honest: PRICE, overcharge: PRICE }
const code = (p: Promise<unknown>) => p.then(() => 'ok', (e: { code?: string }) => e.code ?? String(e))

async function account (client: MeshClient, name: string) {
  const password = 'pw-' + crypto.randomBytes(8).toString('hex')
  await client.call(GatewayProtocol.register, { username: name, email: `${name}@example.com`, password })
  const { token } = await client.call(GatewayProtocol.login, { email: `${name}@example.com`, password })
  const { key } = await client.call(GatewayProtocol.createKey, { token, name: 'sdk' })
  return { token, key, password, email: `${name}@example.com` }
}

const unavailable = chromiumUnavailable()
if (unavailable) {
  console.log(`# dashboard receipts browser test skipped: ${unavailable}`)
  test.skip(`dashboard receipts in Chromium (skipped: ${unavailable})`, () => {})
} else {
  test('receipts: the SDK fetches them; the dashboard lists each request with its receipt, checked, viewable and downloadable', { timeout: 300_000 }, async (t) => {
    const { mesh, db } = await startTestMesh(t, { serviceEnv: { auth: { ADMIN_USERS: 'boss' }, gateway: { MODEL_PRICES: JSON.stringify(PRICES) } } })
    const { client } = await gatewayClient(t, mesh)
    const boss = await registerAdmin(client)
    const erin = await account(client, 'erin')
    const frank = await account(client, 'frank')
    for (const name of ['erin', 'frank']) await client.call(GatewayProtocol.grantCredits, { token: boss, username: name, amountUsd: 1 })
    const worker = ReceiptWorker.make(mesh.bootstrapString, mesh.gatewayKey)
    await worker.open()
    t.teardown(() => worker.close(), { order: 0 })
    worker.join(mesh.gatewayKey, mesh.workerToken)
    await until(async () => (await client.call(GatewayProtocol.models, {})).models.map((m) => m.id), (ids) => ids.includes('overcharge') && worker.gatewayPeer !== null)

    // ---- the SDK: receipt(id) over RPC and HTTP ------------------------------------------------------
    const rpc = new AIInferenceClient({ apiKey: erin.key, gateway: mesh.gatewayKey, bootstrap: mesh.bootstrapString })
    const http = new AIInferenceClient({ apiKey: erin.key, baseUrl: mesh.webUrl! })
    t.teardown(() => Promise.all([rpc.close(), http.close()]), { order: 0 })
    const overHttp = await http.inference({ model: 'synthetic', prompt: 'a receipt over http', maxTokens: 6 })
    t.ok(overHttp.id.startsWith('chatcmpl-') && /^[0-9a-f-]{36}$/.test(overHttp.requestId ?? ''), 'over HTTP the result names the gateway\'s request id apart from its chatcmpl- id')
    const httpReceipt = await http.receipt(overHttp.requestId!)
    t.is(httpReceipt.worker.requestId, overHttp.requestId, 'client.receipt(requestId) over HTTP')
    t.alike([httpReceipt.worker.tokensIn, httpReceipt.worker.tokensOut], [overHttp.usage.promptTokens, overHttp.usage.completionTokens], 'for the answer\'s tokens')
    t.ok(verifyReceipt(httpReceipt, { gateway: mesh.gatewayKey, worker: mesh.keys.inference }).ok, 'and it verifies')
    const overRpc = await rpc.inference({ model: 'synthetic', prompt: 'a receipt over rpc', maxTokens: 5 })
    t.is(overRpc.requestId, overRpc.id, 'over RPC the request id is the result\'s id')
    const rpcReceipt = await rpc.receipt(overRpc.requestId!)
    t.alike(rpcReceipt, await client.call(GatewayProtocol.receipt, { apiKey: erin.key, id: overRpc.id }), 'client.receipt(requestId) over RPC is the gateway\'s document')
    t.alike(await rpc.receipt(overHttp.requestId!), httpReceipt, 'and both transports give the same receipt')
    const frankHttp = new AIInferenceClient({ apiKey: frank.key, baseUrl: mesh.webUrl! })
    t.is(await code(frankHttp.receipt(overHttp.requestId!)), 'NOT_FOUND', 'another account\'s receipt: NOT_FOUND over HTTP')
    t.is(await code(new AIInferenceClient({ apiKey: frank.key, baseUrl: mesh.webUrl! }).receipt('has space')), 'BAD_REQUEST', 'a malformed id: BAD_REQUEST before sending')
    const honest = await rpc.inference({ model: 'honest', prompt: 'hi', maxTokens: 5 })
    t.is(await code(rpc.inference({ model: 'overcharge', prompt: 'hi', maxTokens: 5 })), 'RECEIPT_DISPUTED', 'an overcharging worker\'s answer is refused at settlement')
    await frankHttp.inference({ model: 'synthetic', prompt: 'frank\'s own', maxTokens: 3 })

    // one stored receipt altered behind the gateway's back: the page must not call it verified
    const tampered = await rpc.inference({ model: 'synthetic', prompt: 'to be tampered with', maxTokens: 4 })
    await client.call(GatewayProtocol.usage, { token: erin.token }) // every answered request is recorded
    await db.pool.query(`UPDATE request_receipts SET receipt = jsonb_set(receipt::jsonb, '{worker,tokensOut}', to_jsonb((receipt->'worker'->>'tokensOut')::int + 1))::json WHERE request_id = $1`, [tampered.id])
    const { rows: logs } = await db.pool.query<{ id: string, cost_nusd: string, model_used: string }>("SELECT l.id, l.cost_nusd, l.model_used FROM request_logs l JOIN users u ON u.id = l.user_id WHERE u.username = 'erin'")

    // ---- the dashboard: requests, receipts, checks ---------------------------------------------------
    const browser = await launchBrowser(t)
    const { page } = await newUser(browser, mesh.webUrl!)
    await page.goto('/login')
    await page.getByLabel('Email').fill(erin.email)
    await page.getByLabel('Password').fill(erin.password)
    await page.getByRole('button', { name: 'Log in' }).click()
    await page.waitForURL('**/dashboard**')
    await page.getByRole('navigation').getByRole('link', { name: 'Requests' }).click()
    await page.waitForURL('**/dashboard/requests')
    const rows = page.locator('[data-table="requests"] tbody tr')
    t.alike((await rows.evaluateAll((els) => els.map((e) => (e as HTMLElement).dataset.request))).sort(), logs.map((l) => l.id).sort(), 'every request of hers is listed, and no one else\'s')
    const stateOf = (id: string) => page.locator(`tr[data-request="${id}"] [data-receipt-state]`).getAttribute('data-receipt-state')
    t.is(await stateOf(overHttp.requestId!), 'verified', 'a countersigned receipt: verified')
    t.is(await stateOf(honest.id), 'verified', 'another worker\'s too')
    const disputedId = logs.find((l) => l.model_used === 'overcharge')!.id
    t.is(await stateOf(disputedId), 'disputed', 'the refused one: disputed')
    t.is(await stateOf(tampered.id), 'invalid', 'the altered one: does not verify (the page checks the signatures itself)')
    const shownCost = await Promise.all(logs.map((l) => page.locator(`tr[data-request="${l.id}"] [data-cost-nusd]`).getAttribute('data-cost-nusd').then(Number)))
    t.alike(shownCost, logs.map((l) => Number(l.cost_nusd)), 'each row\'s cost is its request_logs charge')
    await screenshots(page, 'requests')
    await page.setViewportSize(PHONE)
    t.absent(await overflowsHorizontally(page), 'the requests page fits a phone')
    await page.setViewportSize(DESKTOP)

    await page.locator(`tr[data-request="${overHttp.requestId}"] [data-receipt-view]`).click()
    await page.waitForURL(`**/dashboard/requests/${overHttp.requestId}`)
    const checks = await page.locator('[data-table="receipt-checks"] tr[data-check]').evaluateAll((els) => els.map((e) => [(e as HTMLElement).dataset.check, e.querySelector('.status')?.textContent]))
    t.alike(checks.map((c) => c[1]), checks.map(() => 'ok'), 'the receipt page lists every check, each ok: ' + checks.map((c) => c[0]).join(', '))
    t.is(Number(await page.locator('[data-billed]').getAttribute('data-billed')), Number(logs.find((l) => l.id === overHttp.requestId)!.cost_nusd), 'and what was billed')
    const viewed = await page.request.get(`/dashboard/requests/${overHttp.requestId}/receipt.json`)
    t.ok(viewed.ok() && (viewed.headers()['content-type'] ?? '').startsWith('application/json'), 'the raw JSON is served')
    t.alike(await viewed.json(), httpReceipt, 'and is the receipt')
    const [download] = await Promise.all([page.waitForEvent('download'), page.locator('[data-receipt-download]').click()])
    t.is(download.suggestedFilename(), `receipt-${overHttp.requestId}.json`, 'Download saves receipt-<id>.json')
    const saved = JSON.parse(fs.readFileSync((await download.path())!, 'utf8')) as UsageReceipt
    t.alike(saved, httpReceipt, 'holding the receipt')

    // what was downloaded verifies offline: an empty state dir, no DHT, no database
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dash-receipt-'))
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
    fs.writeFileSync(path.join(dir, 'r.json'), JSON.stringify(saved))
    const noMesh = { HYPERINFER_BOOTSTRAP: '127.0.0.1:9', HYPERINFER_GATEWAY: '00'.repeat(32), DATABASE_URL: 'postgres://nobody@127.0.0.1:9/none' }
    const verified = await runCli(dir, ['receipts', 'verify', '--gateway', mesh.gatewayKey, path.join(dir, 'r.json')], { env: noMesh })
    t.is(verified.code, 0, 'hyperinfer receipts verify, offline, accepts the downloaded file: ' + verified.stdout.split('\n').at(-2))

    await page.goto(`/dashboard/requests/${tampered.id}`)
    t.is(await page.locator('[data-check="worker signature"] .status').textContent(), 'fails', 'the altered receipt\'s page shows its worker signature failing')
    const frankId = (await db.pool.query("SELECT l.id FROM request_logs l JOIN users u ON u.id = l.user_id WHERE u.username = 'frank'")).rows[0].id
    const other = await page.goto(`/dashboard/requests/${frankId}`)
    t.is(other?.status(), 404, 'another account\'s receipt page: 404')
    t.is((await page.request.get(`/dashboard/requests/${frankId}/receipt.json`)).status(), 404, 'and its JSON: 404')
  })
}
