import test from 'brittle'
import type pg from 'pg'
import { startTestMesh, gatewayClient, userWithKey, registerAdmin, until } from './support/harness.ts'
import { GatewayProtocol } from '../shared/protocol/gateway.ts'
import { GatewayConnection } from '../shared/sdk/rpc-transport.ts'
import { AIInferenceClient, MeshError } from '../shared/sdk/index.ts'
import { syntheticText } from '../services/inference/backends/synthetic.ts'
import type { LocalMesh } from '../scripts/lib/localmesh.ts'

// Idempotent requests on real processes: an Idempotency-Key (HTTP) or requestId (RPC) makes a retry
// after a dropped connection get the first attempt's answer, whole, charged once; the same key with
// a different body is refused with 422; keys are per API key. The SDK sends a requestId itself and
// retries with it when its connection is lost mid-stream.

const env = {
  serviceEnv: {
    auth: { ADMIN_USERS: 'boss' },
    gateway: { MODEL_PRICES: JSON.stringify({ synthetic: { input: 0, output: 1 } }) },
    inference: { SYNTHETIC_TOKENS_PER_SEC: '20' }
  }
}

function post (mesh: LocalMesh, path: string, key: string, body: unknown, idem?: string, signal?: AbortSignal) {
  return fetch(mesh.webUrl + path, {
    method: 'POST', signal,
    headers: { authorization: 'Bearer ' + key, 'content-type': 'application/json', ...(idem ? { 'idempotency-key': idem } : {}) },
    body: JSON.stringify(body)
  })
}

async function charged (pool: pg.Pool, userId: string) {
  const { rows: [r] } = await pool.query(`SELECT count(*)::int AS n, coalesce(sum(tokens_out), 0)::int AS tout, coalesce(sum(cost_nusd), 0)::bigint AS cost,
      (SELECT balance_nusd FROM credit_accounts WHERE user_id = $1)::bigint AS balance FROM request_logs WHERE user_id = $1`, [userId])
  return { n: r.n as number, tout: r.tout as number, cost: Number(r.cost), balance: Number(r.balance) }
}

test('idempotency: retries get the first answer charged once; a changed body is 422; keys are per API key; the SDK retries a lost stream', { timeout: 300_000 }, async (t) => {
  const { mesh, db } = await startTestMesh(t, env)
  const { client } = await gatewayClient(t, mesh)
  const boss = await registerAdmin(client)
  const user = await userWithKey(client)
  const other = await userWithKey(client)
  for (const u of [user, other]) {
    const name = (await client.call(GatewayProtocol.whoami, { token: u.token })).user.username
    await client.call(GatewayProtocol.grantCredits, { token: boss, username: name, amountUsd: 1 })
  }
  const messages = [{ role: 'user', content: 'say something' }]
  const body = { model: 'synthetic', max_tokens: 12, messages }

  // a whole answer, then its retry
  const first = await post(mesh, '/v1/chat/completions', user.key, body, 'key-1')
  const a = await first.json() as any
  const second = await post(mesh, '/v1/chat/completions', user.key, body, 'key-1')
  const b = await second.json() as any
  t.is(second.status, 200)
  t.is(b.choices[0].message.content, a.choices[0].message.content, 'the retry gets the same answer')
  t.alike(b.usage, a.usage, 'with the same usage')
  const once = await until(() => charged(db.pool, user.userId), (c) => c.n === 1, 10_000)
  t.is(once.n, 1, 'one request recorded')
  t.is(once.balance, 1e9 - 12 * 1000, 'charged once')

  const changed = await post(mesh, '/v1/chat/completions', user.key, { ...body, max_tokens: 13 }, 'key-1')
  const err = await changed.json() as any
  t.is(changed.status, 422, 'the same key with another body is refused')
  t.is(err.error?.code, 'idempotency_key_mismatch', 'as idempotency_key_mismatch')

  const theirs = await post(mesh, '/v1/chat/completions', other.key, body, 'key-1')
  t.is(theirs.status, 200, 'another API key with the same idempotency key runs its own request')
  t.is((await until(() => charged(db.pool, other.userId), (c) => c.n === 1, 10_000)).n, 1, 'and is charged for it')

  // a stream whose client hangs up after its first tokens; the retry gets the whole answer
  const streamBody = { model: 'synthetic', max_tokens: 40, stream: true, messages }
  const ac = new AbortController()
  const cut = await post(mesh, '/v1/chat/completions', user.key, streamBody, 'key-2', ac.signal)
  const reader = cut.body!.getReader()
  await reader.read()
  ac.abort()
  const retry = await post(mesh, '/v1/chat/completions', user.key, streamBody, 'key-2')
  const text = await retry.text()
  t.is(retry.status, 200)
  t.ok(text.trim().endsWith('data: [DONE]'), 'the retried stream is complete')
  const content = text.split('\n\n').filter((e) => e.startsWith('data: {')).map((e) => JSON.parse(e.slice(6))).map((c) => c.choices?.[0]?.delta?.content ?? '').join('')
  t.is(content, syntheticText(messages as never, 40), 'with every token of the answer, from the first')
  const afterStream = await until(() => charged(db.pool, user.userId), (c) => c.n === 2, 10_000)
  t.is(afterStream.n, 2, 'the hung-up stream and its retry are one request')
  t.is(afterStream.balance, 1e9 - (12 + 40) * 1000, 'charged once, for its 40 tokens')

  // embeddings
  const e1 = await (await post(mesh, '/v1/embeddings', user.key, { model: 'synthetic', input: 'embed me' }, 'key-3')).json() as any
  const e2 = await (await post(mesh, '/v1/embeddings', user.key, { model: 'synthetic', input: 'embed me' }, 'key-3')).json() as any
  t.alike(e2.data[0].embedding, e1.data[0].embedding, 'an embedding retry gets the same vector')
  t.is((await until(() => charged(db.pool, user.userId), (c) => c.n === 3, 10_000)).n, 3, 'recorded once')

  // RPC: the first attempt's connection closes mid-stream; a retry on a new connection attaches to it
  const conn = new GatewayConnection({ gateway: mesh.gatewayKey, bootstrap: mesh.bootstrapString, connectTimeoutMs: 15_000 })
  const rpc = await conn.open()
  let frames = 0
  let closing: Promise<void> | null = null
  const req = { apiKey: user.key, model: 'synthetic', prompt: 'rpc retry', maxTokens: 40, stream: true, requestId: 'rpc-1' }
  const lost = rpc.stream(GatewayProtocol.infer, req, { idleTimeout: 60_000, onChunk () { if (++frames === 2) closing = conn.close() } }).catch((e: unknown) => e)
  await until(async () => closing, (c) => c !== null, 30_000)
  await closing
  await lost
  const { client: again } = await gatewayClient(t, mesh)
  let retried = ''
  const r = await again.stream(GatewayProtocol.infer, req, { idleTimeout: 60_000, onChunk (c) { retried += c.text } })
  t.is(retried, syntheticText([{ role: 'user', content: 'rpc retry' }], 40), 'the RPC retry gets every frame from the first')
  t.is(r.usage.completionTokens, 40)
  const rpcBusy = await again.call(GatewayProtocol.infer, { ...req, maxTokens: 41 }, 30_000).catch((e: unknown) => e)
  t.is((rpcBusy as MeshError).code, 'IDEMPOTENCY_KEY_MISMATCH', 'RPC: the same id with another request is a coded error')
  const rpcCharged = await until(() => charged(db.pool, user.userId), (c) => c.n === 4, 10_000)
  t.is(rpcCharged.balance, 1e9 - (12 + 40 + 40) * 1000, 'the RPC request is charged once')

  // the SDK: its connection is lost mid-stream, it retries with its own requestId
  const ai = new AIInferenceClient({ apiKey: user.key, gateway: mesh.gatewayKey, bootstrap: mesh.bootstrapString })
  t.teardown(() => ai.close())
  const s = ai.stream({ model: 'synthetic', prompt: 'sdk retry', maxTokens: 40 })
  let sdkText = ''
  let dropped = false
  for await (const d of s) {
    sdkText += d
    if (!dropped) {
      dropped = true
      ;((ai as any).t.conns[0].client as any).peer.destroy() // the connection breaks under the stream
    }
  }
  const res = await s.result
  t.ok(dropped, 'the connection was dropped mid-stream')
  t.is(sdkText, syntheticText([{ role: 'user', content: 'sdk retry' }], 40), 'the SDK stream still delivered the whole answer, each token once')
  t.is(res.usage.completionTokens, 40)
  const sdkCharged = await until(() => charged(db.pool, user.userId), (c) => c.n === 5, 10_000)
  t.is(sdkCharged.n, 5, 'one request for the SDK stream and its retry')
  t.is(sdkCharged.balance, 1e9 - (12 + 40 + 40 + 40) * 1000, 'charged once')
})
