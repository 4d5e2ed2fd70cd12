import test from 'brittle'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { startTestMesh, gatewayClient, userWithKey, registerAdmin, runCli, until } from './support/harness.ts'
import { GatewayProtocol } from '../shared/protocol/gateway.ts'
import { verifyReceipt, type UsageReceipt } from '../shared/receipt.ts'
import { ReceiptWorker, FAKE_TEXT, RECEIPT_MODES } from './fakes/receipt-worker.ts'

// Signed usage receipts on real processes: the worker signs each answer's receipt, the gateway
// checks and countersigns it, the user fetches it over HTTP, RPC and the CLI, and anyone checks it
// offline with `hyperinfer receipts verify` (no mesh, no database). A worker whose receipt does not
// add up is refused at settlement and its request billed nothing.

const PRICE = { input: 1, output: 2 } // USD per 1M tokens: 1,000 and 2,000 nano-USD a token
const PRICES = Object.fromEntries(['synthetic', ...RECEIPT_MODES].map((m) => [m, PRICE]))
const sha256 = (s: string) => crypto.createHash('sha256').update(s).digest('hex')
const refusal = (p: Promise<unknown>) => p.then(() => null, (e) => e as { code: string, message: string })

async function pricedMesh (t: Parameters<typeof startTestMesh>[0]) {
  const m = await startTestMesh(t, { serviceEnv: { auth: { ADMIN_USERS: 'boss' }, gateway: { MODEL_PRICES: JSON.stringify(PRICES) } } })
  const { client } = await gatewayClient(t, m.mesh)
  const boss = await registerAdmin(client)
  const funded = async () => {
    const u = await userWithKey(client)
    const name = (await client.call(GatewayProtocol.whoami, { token: u.token })).user.username
    await client.call(GatewayProtocol.grantCredits, { token: boss, username: name, amountUsd: 1 })
    return u
  }
  return { ...m, client, funded }
}

/** Every leaf of a receipt changed in turn: [path, the tampered copy]. */
function tamperings (doc: UsageReceipt): Array<[string, unknown]> {
  const out: Array<[string, unknown]> = []
  const walk = (node: Record<string, unknown>, trail: string[]) => {
    for (const [k, v] of Object.entries(node)) {
      if (v !== null && typeof v === 'object') { walk(v as Record<string, unknown>, [...trail, k]); continue }
      const copy = structuredClone(doc) as unknown as Record<string, any>
      let at = copy
      for (const step of trail) at = at[step]
      if (typeof v === 'number') at[k] = v + 1
      else if (k === 'time') at[k] = new Date(Date.parse(v as string) + 1).toISOString()
      else if (/^[0-9a-f]+$/.test(v as string)) at[k] = ((v as string)[0] === '0' ? '1' : '0') + (v as string).slice(1)
      else at[k] = v + 'x'
      out.push([[...trail, k].join('.'), copy])
    }
  }
  walk(doc as unknown as Record<string, unknown>, [])
  return out
}

test('receipts: fetched over HTTP, RPC and the CLI, verified offline; tampering with any field fails', { timeout: 240_000 }, async (t) => {
  const { mesh, db, home, client, funded } = await pricedMesh(t)
  const alice = await funded()
  const bob = await funded()

  // a whole answer over the OpenAI-compatible HTTP API
  const res = await fetch(mesh.webUrl + '/v1/chat/completions', {
    method: 'POST', headers: { authorization: `Bearer ${alice.key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'synthetic', messages: [{ role: 'user', content: 'count the peers on the mesh' }], max_tokens: 6 })
  })
  t.is(res.status, 200)
  const answer = await res.json() as { id: string, choices: Array<{ message: { content: string } }>, usage: { prompt_tokens: number, completion_tokens: number } }
  const requestId = res.headers.get('x-hyperinfer-request-id')!
  t.ok(/^[0-9a-f-]{36}$/.test(requestId ?? ''), 'the answer names its request id')

  const get = (id: string, key?: string) => fetch(`${mesh.webUrl}/v1/receipts/${encodeURIComponent(id)}`, { headers: key ? { authorization: `Bearer ${key}` } : {} })
  const got = await get(requestId, alice.key)
  t.is(got.status, 200, 'GET /v1/receipts/:id answers its owner')
  const receipt = await got.json() as UsageReceipt
  const text = answer.choices[0]!.message.content
  t.is(receipt.worker.requestId, requestId)
  t.is(receipt.worker.model, 'synthetic')
  t.is(receipt.worker.workerKey, mesh.keys.inference, 'signed by the worker that served it')
  t.is(receipt.worker.gatewayKey, mesh.gatewayKey, 'for the gateway that sent it')
  t.alike([receipt.worker.tokensIn, receipt.worker.tokensOut], [answer.usage.prompt_tokens, answer.usage.completion_tokens], 'the worker\'s token counts are the answer\'s usage')
  t.is(receipt.worker.outputSha256, sha256(text), 'the hash is of the text the caller got')
  t.alike(receipt.worker.priceNusdPerToken, { input: 1000, output: 2000 }, 'the price the gateway applied')
  const { rows } = await db.pool.query('SELECT cost_nusd, tokens_in, tokens_out FROM request_logs WHERE id = $1', [requestId])
  t.is(receipt.gateway!.chargeNusd, Number(rows[0].cost_nusd), 'the countersigned charge is what the request was billed')
  t.is(receipt.gateway!.chargeNusd, rows[0].tokens_in * 1000 + rows[0].tokens_out * 2000, 'which is its tokens × the price')
  t.ok(verifyReceipt(receipt, { gateway: mesh.gatewayKey, worker: mesh.keys.inference }).ok, 'both signatures verify')

  t.is((await get(answer.id, alice.key)).status, 404, 'the chatcmpl- id is the web\'s own, not a request id')
  t.alike(await client.call(GatewayProtocol.receipt, { apiKey: alice.key, id: requestId }), receipt, 'and the RPC method gives the same document')
  const bobs = await get(requestId, bob.key)
  t.is(bobs.status, 404, 'another account gets a 404')
  t.is(((await bobs.json()) as { error: { code: string } }).error.code, 'NOT_FOUND')
  t.is((await refusal(client.call(GatewayProtocol.receipt, { apiKey: bob.key, id: requestId })))?.code, 'NOT_FOUND', 'over RPC too')
  t.is((await get(requestId)).status, 401, 'no key: 401')
  t.is((await get('not-a-request', alice.key)).status, 404, 'an id that is no request: 404')

  // a streamed answer through the CLI, its receipt shown and written by the CLI
  const env = { HYPERINFER_API_KEY: alice.key }
  const streamed = await runCli(home, ['infer', '--stats', '--model', 'synthetic', '--max-tokens', '5', 'tell me about receipts'], { env })
  t.is(streamed.code, 0, 'streamed infer: ' + streamed.stderr.trim())
  const streamedId = /id ([0-9a-f-]{36})/.exec(streamed.stderr)?.[1] ?? ''
  const shown = await runCli(home, ['receipts', 'show', streamedId], { env })
  t.is(shown.code, 0, 'receipts show exits 0: ' + shown.stderr.trim())
  const shownDoc = JSON.parse(shown.stdout) as UsageReceipt
  t.is(shownDoc.worker.outputSha256, sha256(streamed.stdout.replace(/\n$/, '')), 'the streamed text is what the worker hashed')
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'receipts-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'receipt.json')
  const saved = await runCli(home, ['receipts', 'show', streamedId, '--out', file], { env })
  t.is(saved.code, 0)
  t.alike(JSON.parse(fs.readFileSync(file, 'utf8')), shownDoc, '--out writes the same receipt')
  t.is((await runCli(home, ['receipts', 'show', streamedId], { env: { HYPERINFER_API_KEY: bob.key } })).code, 1, 'bob cannot show alice\'s receipt')

  // verify offline: an empty state dir, a DHT that is not there, no database
  const offline = fs.mkdtempSync(path.join(os.tmpdir(), 'receipts-offline-'))
  t.teardown(() => fs.rmSync(offline, { recursive: true, force: true }))
  const noMesh = { HYPERINFER_BOOTSTRAP: '127.0.0.1:9', HYPERINFER_GATEWAY: '00'.repeat(32), DATABASE_URL: 'postgres://nobody@127.0.0.1:9/none' }
  const verified = await runCli(offline, ['receipts', 'verify', file], { env: noMesh })
  t.is(verified.code, 0, 'receipts verify exits 0 offline: ' + verified.stdout + verified.stderr)
  t.ok(verified.stdout.includes('ok    worker signature') && verified.stdout.includes('ok    gateway countersignature'), 'and says both signatures verify')
  t.ok(verified.stdout.includes(`verified: request ${streamedId}`), 'and what it verified')
  const pinned = await runCli(offline, ['receipts', 'verify', '--gateway', mesh.gatewayKey, '--worker', mesh.keys.inference!, file], { env: noMesh })
  t.is(pinned.code, 0, 'pinned to the mesh\'s gateway and worker keys')
  const otherGateway = await runCli(offline, ['receipts', 'verify', '--gateway', 'ab'.repeat(32), file], { env: noMesh })
  t.is(otherGateway.code, 1, 'pinned to another gateway: fails')

  const tampered = structuredClone(shownDoc)
  tampered.worker.tokensOut += 1
  const tamperedFile = path.join(dir, 'tampered.json')
  fs.writeFileSync(tamperedFile, JSON.stringify(tampered))
  const refused = await runCli(offline, ['receipts', 'verify', tamperedFile], { env: noMesh })
  t.is(refused.code, 1, 'a tampered token count exits 1')
  t.ok(refused.stdout.includes('FAIL  worker signature') && refused.stdout.includes('NOT verified'), 'and says the worker\'s signature fails: ' + refused.stdout)
  const asJson = await runCli(offline, ['receipts', 'verify', '--json', tamperedFile], { env: noMesh })
  t.is(asJson.json?.ok, false, '--json says so as one object')

  const all = tamperings(shownDoc)
  t.ok(all.length >= 16, `every field is tampered with in turn (${all.length})`)
  const passed = all.filter(([, doc]) => verifyReceipt(doc).ok).map(([p]) => p)
  t.alike(passed, [], 'no tampered copy verifies')
  const stored = await db.pool.query('SELECT status FROM request_receipts WHERE request_id = ANY($1)', [[requestId, streamedId]])
  t.alike(stored.rows.map((r) => r.status), ['settled', 'settled'], 'both receipts are stored with their requests')
})

test('receipts: a worker whose receipt does not add up is refused at settlement and billed nothing', { timeout: 240_000 }, async (t) => {
  const { mesh, db, client, funded } = await pricedMesh(t)
  const user = await funded()
  const worker = ReceiptWorker.make(mesh.bootstrapString, mesh.gatewayKey)
  await worker.open()
  t.teardown(() => worker.close(), { order: 0 })
  worker.join(mesh.gatewayKey, mesh.workerToken)
  await until(async () => (await client.call(GatewayProtocol.models, {})).models.map((m) => m.id), (ids) => RECEIPT_MODES.every((m) => ids.includes(m)) && worker.gatewayPeer !== null)

  // the fake signs correctly when honest: its receipts are checked, not just refused (listed can come
  // a moment before routable)
  const ask = (model: string) => client.call(GatewayProtocol.infer, { apiKey: user.key, model, prompt: 'hello', maxTokens: 10 })
  const honest = await until(() => ask('honest').catch((e) => e), (r) => r.code !== 'UNKNOWN_MODEL' && r.code !== 'NO_WORKER')
  t.is(honest.text, FAKE_TEXT.join(''))
  const good = await client.call(GatewayProtocol.receipt, { apiKey: user.key, id: honest.id })
  t.ok(verifyReceipt(good, { worker: worker.publicKey, gateway: mesh.gatewayKey }).ok, 'the honest receipt is countersigned and verifies')

  const reasons: Record<string, RegExp> = { overcharge: /charge/, 'own-price': /price/, 'other-key': /signature/, 'other-text': /hash/, 'nul-id': /malformed/ }
  for (const mode of RECEIPT_MODES.filter((m) => m !== 'honest')) {
    const err = await refusal(ask(mode))
    t.is(err?.code, 'RECEIPT_DISPUTED', `${mode}: refused at settlement with a coded error`)
    t.ok(reasons[mode]!.test(err?.message ?? ''), `${mode}: saying why: ${err?.message}`)
  }
  const res = await fetch(mesh.webUrl + '/v1/chat/completions', {
    method: 'POST', headers: { authorization: `Bearer ${user.key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'overcharge', messages: [{ role: 'user', content: 'hello' }], max_tokens: 10 })
  })
  t.is(res.status, 502, 'over HTTP: 502')
  t.is(((await res.json()) as { error: { code: string } }).error.code, 'RECEIPT_DISPUTED', 'with the code')

  const logs = await until(async () => (await db.pool.query(
    `SELECT l.id, l.model_used, l.status, l.error_code, l.cost_nusd, l.tokens_in, l.tokens_out, r.status AS receipt, r.receipt AS doc
     FROM request_logs l LEFT JOIN request_receipts r ON r.request_id = l.id WHERE l.model_used <> 'honest' AND l.model_used <> 'synthetic'`)).rows, (r) => r.length === 6)
  t.alike(logs.map((r) => [r.status, r.error_code, Number(r.cost_nusd), r.tokens_in, r.tokens_out, r.receipt]),
    logs.map(() => ['failed', 'RECEIPT_DISPUTED', 0, 0, 0, 'disputed']), 'each is logged failed as disputed, billed 0 for 0 tokens, its receipt kept as disputed')
  const credits = await client.call(GatewayProtocol.credits, { token: user.token, limit: 100 })
  const debited = credits.ledger.filter((e) => e.kind === 'debit').map((e) => e.requestId)
  t.alike(debited, [honest.id], 'only the honest answer is debited')
  t.is(Math.round(credits.balanceUsd * 1e9), 1e9 - Math.round(honest.costUsd * 1e9), 'the balance lost exactly its charge')

  const over = logs.find((r) => r.model_used === 'overcharge')!
  const disputed = await client.call(GatewayProtocol.receipt, { apiKey: user.key, id: over.id })
  t.ok(disputed.disputed && !disputed.gateway, 'the user sees the worker\'s receipt, why it was refused, and no countersignature')
  const checked = verifyReceipt(disputed)
  t.absent(checked.ok, 'it does not verify')
  t.alike(checked.checks.filter((c) => !c.ok).map((c) => c.name), ['worker charge', 'gateway countersignature'], 'for its charge, and for want of a countersignature')
})
