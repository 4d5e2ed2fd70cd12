import test from 'brittle'
import { spawn } from 'node:child_process'
import path from 'node:path'
import OpenAI from 'openai'
import type pg from 'pg'
import { startTestMesh, gatewayClient, userWithKey, registerAdmin, until } from './support/harness.ts'
import { GatewayProtocol } from '../shared/protocol/gateway.ts'
import { GatewayConnection } from '../shared/sdk/rpc-transport.ts'
import { AIInferenceClient, MeshError } from '../shared/sdk/index.ts'
import type { LocalMesh } from '../scripts/lib/localmesh.ts'

// Streams that end badly, on real processes. A worker SIGKILLed after the first token: the HTTP
// client gets an SSE error event and no [DONE] (the official openai client's iterator throws), and
// an RPC caller's stream rejects with a coded error; never a 200 that ends as if complete. A caller
// that vanishes mid-stream (HTTP client hangs up, RPC connection closes): within seconds its request
// is settled as cancelled, billed for what it received, and nothing of its hold is left.

const env = {
  serviceEnv: {
    auth: { ADMIN_USERS: 'boss' },
    gateway: { MODEL_PRICES: JSON.stringify({ synthetic: { input: 0, output: 1 } }) },
    inference: { SYNTHETIC_TOKENS_PER_SEC: '10' }
  }
}

async function killWorkerAfterFirst (mesh: LocalMesh, first: Promise<unknown>): Promise<void> {
  await first
  mesh.children.get('inference')!.proc.kill('SIGKILL')
}

async function freshWorker (mesh: LocalMesh): Promise<void> {
  await mesh.restartChild('inference')
  await mesh.waitUsable(1)
}

/** Every SSE `data:` payload of a response, in order, until the server ends it. */
async function sseEvents (res: Response, onFirst: () => void): Promise<string[]> {
  const out: string[] = []
  let buf = ''
  const decoder = new TextDecoder()
  for await (const part of res.body as unknown as AsyncIterable<Uint8Array>) {
    buf += decoder.decode(part, { stream: true })
    let i
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const event = buf.slice(0, i)
      buf = buf.slice(i + 2)
      const data = event.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n')
      if (!data) continue
      if (out.length === 0) onFirst()
      out.push(data)
    }
  }
  return out
}

test('cut stream: a worker SIGKILLed after the first token ends HTTP with an error event (no [DONE]) and RPC with a coded error', { timeout: 300_000 }, async (t) => {
  const { mesh } = await startTestMesh(t, env)
  const { client } = await gatewayClient(t, mesh)
  const boss = await registerAdmin(client)
  const user = await userWithKey(client)
  const name = (await client.call(GatewayProtocol.whoami, { token: user.token })).user.username
  await client.call(GatewayProtocol.grantCredits, { token: boss, username: name, amountUsd: 1 })

  // raw HTTP: what any SSE client sees
  let firstSeen!: () => void
  const first = new Promise<void>((resolve) => { firstSeen = resolve })
  const res = await fetch(mesh.webUrl + '/v1/chat/completions', {
    method: 'POST',
    headers: { authorization: 'Bearer ' + user.key, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'synthetic', stream: true, max_tokens: 400, messages: [{ role: 'user', content: 'a long answer' }] })
  })
  t.is(res.status, 200, 'the stream began')
  const killed = killWorkerAfterFirst(mesh, first)
  const events = await sseEvents(res, firstSeen)
  await killed
  const last = JSON.parse(events.at(-1) === '[DONE]' ? '{}' : events.at(-1)!)
  t.absent(events.includes('[DONE]'), 'no [DONE]: the answer is not complete')
  t.ok(last.error && typeof last.error.message === 'string' && typeof last.error.code === 'string', 'the last event is an OpenAI error object: ' + events.at(-1))
  t.ok(events.length >= 2, `${events.length - 1} token events came before it`)
  await freshWorker(mesh)

  // the official openai client: its stream iterator throws
  const openai = new OpenAI({ baseURL: mesh.webUrl + '/v1', apiKey: user.key, maxRetries: 0 })
  const stream = await openai.chat.completions.create({ model: 'synthetic', stream: true, max_tokens: 400, messages: [{ role: 'user', content: 'another long answer' }] })
  let chunks = 0
  let thrown: unknown = null
  try {
    for await (const c of stream) {
      if (c.choices[0]?.delta?.content && chunks++ === 0) mesh.children.get('inference')!.proc.kill('SIGKILL')
    }
  } catch (err) {
    thrown = err
  }
  t.ok(chunks >= 1, `${chunks} chunks arrived`)
  t.ok(thrown instanceof Error, 'the openai stream iterator threw: ' + (thrown as Error)?.message)
  await freshWorker(mesh)

  // the SDK over RPC: the stream rejects with a coded error
  const ai = new AIInferenceClient({ apiKey: user.key, gateway: mesh.gatewayKey, bootstrap: mesh.bootstrapString })
  t.teardown(() => ai.close())
  const s = ai.stream({ model: 'synthetic', prompt: 'a third long answer', maxTokens: 400 })
  let deltas = 0
  let rpcErr: unknown = null
  try {
    for await (const _ of s) if (deltas++ === 0) mesh.children.get('inference')!.proc.kill('SIGKILL')
  } catch (err) {
    rpcErr = err
  }
  t.ok(deltas >= 1, `${deltas} deltas arrived`)
  t.ok(rpcErr instanceof MeshError && typeof rpcErr.code === 'string' && rpcErr.code !== 'CANCELLED', 'the SDK stream rejected with a coded error: ' + (rpcErr as MeshError)?.code)
})

async function userState (pool: pg.Pool, userId: string) {
  const { rows: [r] } = await pool.query(`
    SELECT (SELECT count(*)::int FROM request_logs WHERE user_id = $1 AND status = 'processing') AS processing,
           (SELECT count(*)::int FROM request_logs WHERE user_id = $1 AND status = 'cancelled') AS cancelled,
           (SELECT coalesce(sum(tokens_out), 0)::int FROM request_logs WHERE user_id = $1) AS tokens_out,
           (SELECT held_nusd::bigint FROM credit_accounts WHERE user_id = $1) AS held,
           (SELECT balance_nusd::bigint FROM credit_accounts WHERE user_id = $1) AS balance,
           (SELECT coalesce(sum(amount_nusd), 0)::bigint FROM credit_ledger WHERE user_id = $1) AS ledger,
           (SELECT count(*)::int FROM accounting_leases WHERE amount > 0 AND name LIKE '%' || $1 || '%') AS leases`, [userId])
  return { processing: r.processing as number, cancelled: r.cancelled as number, tokensOut: r.tokens_out as number, held: Number(r.held), balance: Number(r.balance), ledger: Number(r.ledger), leases: r.leases as number }
}

test('vanished caller: an HTTP client or RPC connection gone mid-stream is settled within seconds, billed for what it got, its hold released', { timeout: 240_000 }, async (t) => {
  const { mesh, db } = await startTestMesh(t, env)
  const { client } = await gatewayClient(t, mesh)
  const boss = await registerAdmin(client)
  const user = await userWithKey(client)
  const name = (await client.call(GatewayProtocol.whoami, { token: user.token })).user.username
  await client.call(GatewayProtocol.grantCredits, { token: boss, username: name, amountUsd: 1 })

  // HTTP: the client reads a few tokens, then hangs up
  const ac = new AbortController()
  const res = await fetch(mesh.webUrl + '/v1/chat/completions', {
    method: 'POST', signal: ac.signal,
    headers: { authorization: 'Bearer ' + user.key, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'synthetic', stream: true, max_tokens: 400, messages: [{ role: 'user', content: 'a long answer' }] })
  })
  const reader = res.body!.getReader()
  await reader.read()
  await reader.read()
  ac.abort()
  const gone = Date.now()
  const http = await until(() => userState(db.pool, user.userId), (s) => s.cancelled === 1 && s.held === 0, 20_000, 200)
  t.comment(`HTTP: settled and released ${Date.now() - gone} ms after the hang-up`)
  t.is(http.cancelled, 1, 'the request is recorded as cancelled')
  t.is(http.processing, 0, 'nothing left processing')
  t.ok(http.tokensOut > 0 && http.tokensOut < 400, `billed for the ${http.tokensOut} tokens it streamed, not the 400 held`)
  t.is(http.held, 0, 'no credit held any more')
  t.is(http.balance, http.ledger, 'the balance equals the ledger')
  t.is(http.balance, 1e9 - http.tokensOut * 1000, 'and went down by exactly what was streamed')

  // RPC: the caller's connection closes mid-stream
  const conn = new GatewayConnection({ gateway: mesh.gatewayKey, bootstrap: mesh.bootstrapString, connectTimeoutMs: 15_000 })
  const rpc = await conn.open()
  let frames = 0
  let closing: Promise<void> | null = null
  const streaming = rpc.stream(GatewayProtocol.infer, { apiKey: user.key, model: 'synthetic', prompt: 'another long answer', maxTokens: 400, stream: true }, {
    idleTimeout: 60_000,
    onChunk () { if (++frames === 2) closing = conn.close() }
  }).catch((err: unknown) => err)
  await until(async () => closing, (c) => c !== null, 30_000)
  await closing
  const closed = Date.now()
  await streaming
  const rpcState = await until(() => userState(db.pool, user.userId), (s) => s.cancelled === 2 && s.held === 0, 20_000, 200)
  t.comment(`RPC: settled and released ${Date.now() - closed} ms after the connection closed`)
  t.is(rpcState.cancelled, 2, 'the RPC request is recorded as cancelled too')
  t.is(rpcState.processing, 0, 'nothing left processing')
  t.is(rpcState.held, 0, 'no credit held')
  t.is(rpcState.balance, rpcState.ledger, 'the balance equals the ledger')
  t.ok(rpcState.tokensOut - http.tokensOut < 400, 'the RPC request was billed for part of its answer only')

  // RPC: the caller's process is SIGKILLed mid-stream (no goodbye on the wire: its peer just stops answering)
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 'support', 'stream-client.ts'), mesh.gatewayKey, mesh.bootstrapString, user.key], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { child.kill('SIGKILL') })
  await new Promise<void>((resolve) => child.stdout!.on('data', (d: Buffer) => { if (d.toString().includes('frame')) resolve() }))
  child.kill('SIGKILL')
  const killed = Date.now()
  const dead = await until(() => userState(db.pool, user.userId), (s) => s.cancelled === 3 && s.held === 0, 60_000, 200)
  t.comment(`killed client: settled and released ${Date.now() - killed} ms after it died`)
  t.is(dead.cancelled, 3, 'the killed caller\'s request is recorded as cancelled')
  t.ok(Date.now() - killed < 20_000, 'within seconds, not at the sweeper')
  t.is(dead.held, 0, 'no credit held')
  t.is(dead.balance, dead.ledger, 'the balance equals the ledger')
})
