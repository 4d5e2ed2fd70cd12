import test from 'brittle'
import crypto from 'node:crypto'
import type { MeshClient } from '../shared/mesh/client.ts'
import { GatewayProtocol, type InferResult } from '../shared/protocol/gateway.ts'
import { OperatorProtocol } from '../shared/protocol/operators.ts'
import { verifyReceipt } from '../shared/receipt.ts'
import { ADMIN_PASSWORD, gatewayClient, registerAdmin, runCli, startTestMesh, strangerWorker, until } from './support/harness.ts'
import { chromiumUnavailable, launchBrowser, newUser, screenshots } from './support/browser.ts'

// Two operators' workers serve one model at different prices. Each worker belongs to the account its
// join token was issued to; each operator prices its own within the admin's bounds, sees and drains
// only its own. Requests go to both; each is charged its serving worker's price, the cost strategy
// sends requests to the cheaper one, and every debit is split into the owner's earning and the
// network's fee to the nano-dollar. Earnings, the payout export (CLI and HTTP) and the dashboard's
// operator page and catalog show the same numbers.

const MODEL = 'shared-model'
const FEE_PCT = 12.5

async function account (client: MeshClient, name: string): Promise<{ token: string, id: string, password: string }> {
  const password = 'pw-' + crypto.randomBytes(8).toString('hex')
  const reg = await client.call(GatewayProtocol.register, { username: name, email: `${name}@example.com`, password })
  const { token } = await client.call(GatewayProtocol.login, { email: `${name}@example.com`, password })
  return { token, id: reg.user.id, password }
}

const code = (p: Promise<unknown>) => p.then(() => 'ok', (e: { code?: string }) => e.code ?? String(e))

async function cliAs (home: string, email: string, password: string): Promise<void> {
  const r = await runCli(home, ['login', '--email', email, '--password', password])
  if (r.code !== 0) throw new Error('login failed: ' + r.stderr)
}

test('operators: two operators serve one model at their own prices; payouts, fees and debits balance to the nano-dollar', { timeout: 400_000 }, async (t) => {
  const { mesh, db, home } = await startTestMesh(t, { workers: 0, serviceEnv: { auth: { ADMIN_USERS: 'boss' }, gateway: { NETWORK_FEE_PCT: String(FEE_PCT) } } })
  const { client } = await gatewayClient(t, mesh)
  const boss = await registerAdmin(client)
  const alice = await account(client, 'alice')
  const bob = await account(client, 'bob')
  const carol = await account(client, 'carol')
  const { key: apiKey } = await client.call(GatewayProtocol.createKey, { token: carol.token, name: 'carol' })
  await client.call(GatewayProtocol.grantCredits, { token: boss, username: 'carol', amountUsd: 1 })

  // ---- join tokens issued to accounts: the workers they admit belong to them ------------------
  await cliAs(home, 'boss@example.com', ADMIN_PASSWORD)
  const made = await runCli(home, ['workers', 'token', 'create', '--label', 'alice-box', '--owner', 'alice', '--json'])
  t.is(made.json?.created?.owner, 'alice', 'hyperinfer workers token create --owner alice issues the token to alice')
  const bobToken = await client.call(GatewayProtocol.joinTokens, { token: boss, op: 'create', label: 'bob-box', owner: 'bob' })
  t.is(await code(client.call(GatewayProtocol.joinTokens, { token: boss, op: 'create', label: 'x', owner: 'nobody-here' })), 'NOT_FOUND', 'a token for an unknown account is refused')
  const aliceWorker = await strangerWorker(mesh, 'alice-w', MODEL, { HYPERINFER_WORKER_TOKEN: made.json.created.token })
  const bobWorker = await strangerWorker(mesh, 'bob-w', MODEL, { HYPERINFER_WORKER_TOKEN: bobToken.created!.token })
  await until(() => client.call(GatewayProtocol.models, {}), (r) => r.models.find((m) => m.id === MODEL)?.workers === 2, 30_000)

  const listed = await runCli(home, ['workers', 'list', '--json'])
  const ownerOf = (ws: Array<{ key: string, owner?: string | null }>, k: string) => ws.find((w) => w.key === k)?.owner
  t.is(ownerOf(listed.json.workers, aliceWorker), 'alice', 'hyperinfer workers shows the owner of alice\'s worker (admin view)')
  t.is(ownerOf(listed.json.workers, bobWorker), 'bob', 'and of bob\'s')
  const mine = await client.call(GatewayProtocol.workers, { token: alice.token })
  t.alike(mine.workers.map((w) => w.key), [aliceWorker], 'an operator sees its own workers only')
  t.is((await client.call(GatewayProtocol.workers, { token: carol.token })).workers.length, 0, 'an account with no workers sees none')

  // ---- prices: bounds by the admin, each operator its own ---------------------------------------
  const bounds = await runCli(home, ['prices', 'bounds', MODEL, '--min', '10', '--max', '1000'])
  t.is(bounds.code, 0, 'hyperinfer prices bounds: ' + bounds.stdout.trim() + bounds.stderr.trim())
  t.is(await code(client.call(OperatorProtocol.setPriceBounds, { token: alice.token, model: MODEL, minInput: 0, maxInput: 1, minOutput: 0, maxOutput: 1 })), 'FORBIDDEN', 'only an admin sets bounds')
  await cliAs(home, 'alice@example.com', alice.password)
  const aliceSet = await runCli(home, ['prices', 'set', MODEL, '--input', '100', '--output', '300'])
  t.is(aliceSet.code, 0, 'hyperinfer prices set (alice): ' + aliceSet.stdout.trim() + aliceSet.stderr.trim())
  const tooHigh = await runCli(home, ['prices', 'set', MODEL, '--input', '100', '--output', '5000'])
  t.ok(tooHigh.code !== 0 && /BAD_REQUEST/.test(tooHigh.stderr) && /1000/.test(tooHigh.stderr), 'a price above the bounds is refused, naming them: ' + tooHigh.stderr.trim())
  await client.call(OperatorProtocol.setPrice, { token: bob.token, model: MODEL, input: 37, output: 91 })
  t.is(await code(client.call(OperatorProtocol.setPrice, { token: carol.token, model: MODEL, input: 50, output: 50 })), 'FORBIDDEN', 'an account whose workers do not serve the model cannot price it')
  const price = { [aliceWorker]: { input: 100, output: 300 }, [bobWorker]: { input: 37, output: 91 } }

  // ---- an operator drains its own worker, never another's --------------------------------------
  t.is(await code(client.call(OperatorProtocol.drainWorker, { token: alice.token, key: bobWorker, drain: true })), 'FORBIDDEN', 'alice cannot drain bob\'s worker')
  const othersCli = await runCli(home, ['workers', 'drain', bobWorker])
  t.ok(othersCli.code !== 0 && /FORBIDDEN/.test(othersCli.stderr), 'nor from the CLI: ' + othersCli.stderr.trim())

  // ---- requests naming the model go to both workers, each charged its own price ----------------
  const results: InferResult[] = []
  const ask = async (n: number, extra: Record<string, unknown>) => {
    const out: InferResult[] = []
    for (let i = 0; i < n; i++) {
      out.push(await client.call(GatewayProtocol.infer, { apiKey, prompt: `request ${results.length + out.length} ${crypto.randomUUID()} tell me about prices`, maxTokens: 7 + (i % 5), ...extra }, 30_000))
    }
    results.push(...out)
    return out
  }
  const named = await ask(24, { model: MODEL })
  const served = new Set(named.map((r) => r.worker))
  t.ok(served.has(aliceWorker) && served.has(bobWorker), `requests naming the model reach both workers (alice ${named.filter((r) => r.worker === aliceWorker).length}, bob ${named.filter((r) => r.worker === bobWorker).length})`)
  t.ok(named.every((r) => Math.round(r.costUsd * 1e9) === r.usage.promptTokens * price[r.worker]!.input + r.usage.completionTokens * price[r.worker]!.output),
    'each request is charged its tokens at its serving worker\'s price')

  const cheap = await ask(8, { route: { strategy: 'cost' } })
  t.ok(cheap.every((r) => r.worker === bobWorker && r.routing.strategy === 'cost'), 'the cost strategy sends every request to the cheaper worker (bob\'s)')

  // alice drains her worker: it gets nothing new until she resumes it
  const drained = await runCli(home, ['workers', 'drain', aliceWorker])
  t.is(drained.code, 0, 'hyperinfer workers drain (own worker): ' + drained.stdout.trim() + drained.stderr.trim())
  const whileDrained = await ask(6, { model: MODEL })
  t.ok(whileDrained.every((r) => r.worker === bobWorker), 'a drained worker gets no requests')
  t.is((await client.call(GatewayProtocol.workers, { token: alice.token })).workers[0]?.drained, true, 'and is listed as drained')
  t.is((await runCli(home, ['workers', 'resume', aliceWorker])).code, 0, 'hyperinfer workers resume')
  await ask(6, { model: MODEL })

  // ---- the books: every debit is one earning plus one fee, to the nano-dollar ------------------
  await client.call(GatewayProtocol.usage, { token: carol.token }) // waits until every answered request is recorded
  const ids = results.map((r) => r.id)
  const { rows: ledger } = await db.pool.query<{ request_id: string, kind: string, user_id: string | null, amount_nusd: string }>(
    `SELECT request_id, kind, user_id, amount_nusd FROM credit_ledger WHERE request_id = ANY($1::uuid[])`, [ids])
  const per = new Map<string, { debit: number, earning: number, fee: number, owner: string | null }>()
  for (const l of ledger) {
    const e = per.get(l.request_id) ?? { debit: 0, earning: 0, fee: 0, owner: null }
    if (l.kind === 'debit') e.debit -= Number(l.amount_nusd)
    if (l.kind === 'earning') { e.earning += Number(l.amount_nusd); e.owner = l.user_id }
    if (l.kind === 'fee') e.fee += Number(l.amount_nusd)
    per.set(l.request_id, e)
  }
  const charged = results.map((r) => Math.round(r.costUsd * 1e9))
  t.ok(results.every((r, i) => per.get(r.id)?.debit === charged[i]), 'each request\'s debit is what its answer said it cost')
  t.ok(results.every((r) => { const e = per.get(r.id)!; return e.earning + e.fee === e.debit }), 'for every request, earning + fee == debit exactly')
  t.ok(results.every((r) => { const e = per.get(r.id)!; return e.fee === Math.floor(e.debit * FEE_PCT / 100) }), `the fee is ${FEE_PCT}% of the charge, rounded down to the nano-dollar`)
  t.ok(results.every((r) => per.get(r.id)!.owner === (r.worker === aliceWorker ? alice.id : bob.id)), 'each earning goes to the serving worker\'s owner')
  const { rows: [sums] } = await db.pool.query<{ debits: string, earnings: string, fees: string }>(
    `SELECT coalesce(sum(-amount_nusd) FILTER (WHERE kind = 'debit'), 0) AS debits, coalesce(sum(amount_nusd) FILTER (WHERE kind = 'earning'), 0) AS earnings,
            coalesce(sum(amount_nusd) FILTER (WHERE kind = 'fee'), 0) AS fees FROM credit_ledger`)
  t.is(Number(sums!.earnings) + Number(sums!.fees), Number(sums!.debits), `over the whole ledger, earnings ${sums!.earnings} + fees ${sums!.fees} == debits ${sums!.debits}`)
  const earned = (owner: string) => results.filter((r) => per.get(r.id)!.owner === owner).reduce((n, r) => n + per.get(r.id)!.earning, 0)
  const { rows: balances } = await db.pool.query<{ user_id: string, balance_nusd: string }>('SELECT user_id, balance_nusd FROM credit_accounts WHERE user_id = ANY($1::uuid[])', [[alice.id, bob.id]])
  t.is(Number(balances.find((b) => b.user_id === alice.id)!.balance_nusd), earned(alice.id), 'alice\'s balance is credited exactly her earnings')
  t.is(Number(balances.find((b) => b.user_id === bob.id)!.balance_nusd), earned(bob.id), 'and bob\'s his')

  // ---- receipts: each signed by its serving worker at that worker's own price, billed as logged ---
  const { rows: logged } = await db.pool.query<{ id: string, cost_nusd: string, worker: string }>('SELECT id, cost_nusd, worker FROM request_logs WHERE id = ANY($1::uuid[])', [ids])
  const loggedCost = new Map(logged.map((r) => [r.id, Number(r.cost_nusd)]))
  const receipts = await Promise.all(results.map((r) => client.call(GatewayProtocol.receipt, { apiKey, id: r.id })))
  const priceOf = (i: number) => receipts[i]!.worker.priceNusdPerToken
  t.ok(receipts.every((rc, i) => rc.worker.workerKey === results[i]!.worker), 'each receipt is signed by the worker that served it')
  t.ok(receipts.every((_, i) => priceOf(i).input === price[results[i]!.worker]!.input && priceOf(i).output === price[results[i]!.worker]!.output),
    `each carries its own worker's price (alice ${JSON.stringify(price[aliceWorker])}, bob ${JSON.stringify(price[bobWorker])})`)
  t.ok(new Set(receipts.map((rc) => rc.worker.priceNusdPerToken.input)).size === 2, 'so the receipts of one model carry two prices')
  t.ok(receipts.every((rc, i) => rc.gateway?.chargeNusd === loggedCost.get(results[i]!.id) && rc.worker.chargeNusd === loggedCost.get(results[i]!.id)),
    'the worker\'s charge and the countersigned bill are each request\'s cost_nusd in request_logs')
  t.ok(receipts.every((rc, i) => rc.gateway?.chargeNusd === per.get(results[i]!.id)!.debit), 'and its debit')
  t.ok(receipts.every((rc) => verifyReceipt(rc, { gateway: mesh.gatewayKey }).ok), 'every receipt verifies offline')

  // ---- what operators and admins read -----------------------------------------------------------
  const aliceEarnings = await runCli(home, ['earnings', '--json'])
  t.is(aliceEarnings.json?.total?.earned, earned(alice.id), 'hyperinfer earnings: alice\'s total is her ledger earnings')
  t.ok(aliceEarnings.json.rows.every((r: { worker: string, model: string }) => r.worker === aliceWorker && r.model === MODEL), 'by worker and model, her own only')
  const text = await runCli(home, ['earnings'])
  t.ok(text.code === 0 && text.stdout.includes(aliceWorker.slice(0, 16)) && /network fee \(12\.5%\)/.test(text.stdout), 'the table names her worker and the fee: ' + text.stdout.split('\n').at(-2))
  const notAdmin = await runCli(home, ['earnings', 'export', '--csv'])
  t.ok(notAdmin.code !== 0 && /FORBIDDEN/.test(notAdmin.stderr), 'an operator cannot export everyone\'s payouts')
  await cliAs(home, 'boss@example.com', ADMIN_PASSWORD)
  const csv = await runCli(home, ['earnings', 'export', '--csv'])
  const line = (name: string) => csv.stdout.split('\n').find((l) => l.split(',')[1] === name)?.split(',')
  t.is(csv.stdout.split('\n')[0], 'account_id,account,email,requests,charged_nusd,fees_nusd,earned_nusd,earned_usd,period_start,period_end', 'hyperinfer earnings export --csv: the header')
  t.is(Number(line('alice')?.[6]), earned(alice.id), 'alice\'s line carries her earnings')
  t.is(Number(line('bob')?.[6]), earned(bob.id), 'bob\'s line his')
  const httpCsv = await fetch(`${mesh.webUrl}/api/admin/payouts.csv`, { headers: { authorization: `Bearer ${boss}` } })
  t.is(httpCsv.status, 200, 'GET /api/admin/payouts.csv answers an admin')
  t.is(await httpCsv.text(), csv.stdout, 'with the same CSV')
  const httpDenied = await fetch(`${mesh.webUrl}/api/admin/payouts.csv`, { headers: { authorization: `Bearer ${alice.token}` } })
  t.is(httpDenied.status, 403, 'and refuses an operator')

  // ---- the dashboard: catalog price range, the operator page ------------------------------------
  const unavailable = chromiumUnavailable()
  if (unavailable) { t.fail('Chromium is needed for the dashboard part: ' + unavailable); return }
  const browser = await launchBrowser(t)
  const { page } = await newUser(browser, mesh.webUrl!)
  await page.goto('/login')
  await page.getByLabel('Email').fill('alice@example.com')
  await page.getByLabel('Password').fill(alice.password)
  await page.getByRole('button', { name: 'Log in' }).click()
  await page.waitForURL('**/dashboard**')
  await page.goto('/dashboard/models')
  const range = await page.locator(`tr[data-model="${MODEL}"] [data-price-range]`).textContent()
  t.ok(range?.includes('$0.037') && range.includes('$0.10') && range.includes('$0.091') && range.includes('$0.30'), 'the catalog shows the model\'s price range across operators: ' + range)
  await page.getByRole('link', { name: 'Operator' }).click()
  await page.waitForURL('**/dashboard/operator')
  t.is(await page.locator(`[data-table="operator-workers"] tr[data-worker="${aliceWorker}"] [data-owner]`).textContent(), 'alice', 'the operator page lists her worker as hers')
  t.is(await page.locator('[data-table="operator-workers"] tbody tr').count(), 1, 'and no one else\'s')
  t.is(Number(await page.locator('[data-earnings-total]').getAttribute('data-earnings-total')), earned(alice.id), 'her earnings total matches the ledger')
  t.ok(await page.locator(`[data-table="earnings"] tr[data-worker="${aliceWorker}"][data-model="${MODEL}"]`).count() >= 1, 'earnings by day, worker and model')
  await screenshots(page, 'operator')

  // ---- the operator page's forms: drain / resume her worker, set her price ----------------------
  const aliceRow = page.locator(`[data-table="operator-workers"] tr[data-worker="${aliceWorker}"]`)
  const stateShown = () => aliceRow.locator('[data-state]').textContent().then((s) => s ?? '')
  await aliceRow.getByRole('button', { name: 'Drain' }).click()
  t.ok((await until(stateShown, (s) => s.startsWith('drained'), 15_000)).startsWith('drained'), 'Drain: the page shows her worker drained')
  t.is((await client.call(GatewayProtocol.workers, { token: alice.token })).workers[0]?.drained, true, 'and the gateway has drained it')
  await aliceRow.getByRole('button', { name: 'Resume' }).click()
  t.ok((await until(stateShown, (s) => !s.startsWith('drained'), 15_000)) === 'approved', 'Resume: it is back')
  t.is((await client.call(GatewayProtocol.workers, { token: alice.token })).workers[0]?.drained, false, 'at the gateway too')

  const priceForm = page.locator(`form[data-form="set-price"][data-model="${MODEL}"]`)
  t.is(await priceForm.locator('[data-price-in]').getAttribute('data-price-in'), '100', 'the price form shows her price')
  t.ok((await priceForm.locator('[data-bounds]').textContent())?.includes('10–1000'), 'and the admin\'s bounds')
  await priceForm.getByLabel('Input nUSD/token').fill('120')
  await priceForm.getByLabel('Output nUSD/token').fill('280')
  await priceForm.getByRole('button', { name: 'Set price' }).click()
  await until(() => priceForm.locator('[data-price-in]').getAttribute('data-price-in'), (v) => v === '120', 15_000)
  t.is(await priceForm.locator('[data-price-out]').getAttribute('data-price-out'), '280', 'Set price: the page shows her new price')
  const nowMine = (await client.call(OperatorProtocol.prices, { token: alice.token })).mine.find((p) => p.model === MODEL)
  t.alike(nowMine?.effective, { input: 120, output: 280 }, 'and the gateway charges it')
  await priceForm.getByLabel('Output nUSD/token').fill('5000')
  await priceForm.getByRole('button', { name: 'Set price' }).click()
  const priceError = priceForm.locator('[data-error]')
  await priceError.waitFor({ state: 'visible' })
  t.ok(/1000/.test(await priceError.innerText()) && /\[BAD_REQUEST\]/.test(await priceError.innerText()), 'a price out of bounds is refused in the form: ' + await priceError.innerText())

  // ---- another operator's worker, from her session: refused by the gateway ------------------------
  const post = (path: string, body?: unknown) => page.evaluate(async ([p, b]) => {
    const headers: Record<string, string> = b === undefined ? { 'x-hyperinfer-csrf': '1' } : { 'x-hyperinfer-csrf': '1', 'content-type': 'application/json' }
    const r = await fetch(p as string, { method: 'POST', headers, body: b === undefined ? undefined : JSON.stringify(b) })
    return { status: r.status, code: ((await r.json()) as { error?: { code?: string } }).error?.code ?? 'ok' }
  }, [path, body] as const)
  t.alike(await post(`/api/dashboard/operator/workers/${bobWorker}/drain`), { status: 403, code: 'FORBIDDEN' }, 'draining bob\'s worker from her dashboard session: 403')
  const bobNow = (await client.call(GatewayProtocol.workers, { token: boss })).workers.find((w) => w.key === bobWorker)
  t.is(bobNow?.drained, false, 'and bob\'s worker is not drained')
  t.alike(await post('/api/dashboard/operator/prices', { model: 'not-her-model', input: 1, output: 1 }), { status: 403, code: 'FORBIDDEN' }, 'pricing a model her workers do not serve: 403')
  await screenshots(page, 'operator-forms')
})
