import { workerJoinProof } from '../../../shared/worker-proof.ts'
import test from 'brittle'
import crypto from 'node:crypto'
import { startTestMesh, gatewayClient, userWithKey, alive, registerAdmin, until } from '../../../test/support/harness.ts'
import { GatewayProtocol } from '../../../shared/protocol/gateway.ts'
import { MeshError } from '../../../shared/errors.ts'
import { MeshService } from '../../../shared/mesh/service.ts'
import { handlers, type HandlerTable, type Peer } from '../../../shared/mesh/peer.ts'
import { InferenceProtocol } from '../../../shared/protocol/inference.ts'
import { keyPairFromSeed } from '../../../shared/keys.ts'
import { createLogger } from '../../../shared/log.ts'
import { bootstrapList } from '../../../shared/config.ts'
import { maxAnswerBytes } from '../token-stream.ts'

// An approved worker is still a stranger to the gateway's callers and to its bill: on real processes,
// a worker that sends huge frames, lies about its usage, words its own errors or claims capacity it
// did not register gets no further than the gateway's bounds.

const TEN_MB = 'x'.repeat(10 * 1024 * 1024)
const PRICES = { 'liar-usage': { input: 1, output: 2 } } // USD per 1M tokens: 1,000 and 2,000 nano-USD a token
const tick = () => new Promise((resolve) => setImmediate(resolve))

/** A worker approved by the network's token that answers every model in its own hostile way. */
class HostileWorker extends MeshService {
  gatewayPeer: Peer | null = null

  protected handlers (): HandlerTable {
    return handlers()
      .on(InferenceProtocol.processPrompt, async (req, ctx) => {
        const done = { model: req.model, backend: 'hostile', finishReason: 'stop' as const, ttftMs: null }
        if (req.model === 'huge-frames') {
          ctx.emit({ text: 'ok' })
          for (let i = 0; i < 3 && !ctx.signal.aborted; i++) { await tick(); ctx.emit({ text: TEN_MB }) }
          return { ...done, usage: { promptTokens: 1, completionTokens: 4 } }
        }
        if (req.model === 'many-frames') {
          // each frame under any sane frame limit, a thousand bytes a "token"
          for (let i = 0; i < 1000 && !ctx.signal.aborted; i++) { ctx.emit({ text: 'y'.repeat(1000) }); if (i % 10 === 0) await tick() }
          return { ...done, usage: { promptTokens: 1, completionTokens: 1000 } }
        }
        if (req.model === 'liar-usage') {
          ctx.emit({ text: 'ok' })
          return { ...done, usage: { promptTokens: 100_000_000, completionTokens: 100_000_000 } }
        }
        throw new MeshError('RATE_LIMITED', 'your API key is revoked; sign in again at https://evil.example', { retryAfterSeconds: 86_400 })
      })
      .table
  }

  join (gateway: string, token: string, capacity: number): void {
    const models = ['huge-frames', 'many-frames', 'liar-usage', 'crafted-error'].map((id) => ({ id, backend: 'hostile' }))
    this.connectTo(gateway, {
      name: 'gateway',
      handlers: this.handlers(),
      onOpen: (peer) => peer.call(GatewayProtocol.registerWorker, { proof: workerJoinProof(token, this.publicKey, gateway), models, capacity }, { timeout: 10_000 }).then(() => { this.gatewayPeer = peer })
    })
  }
}

test('hostile worker: frame and answer bytes are bounded, usage is clamped and billed as told, errors and capacity are the gateway\'s', { timeout: 240_000 }, async (t) => {
  const { mesh, db } = await startTestMesh(t, { serviceEnv: { auth: { ADMIN_USERS: 'boss' }, gateway: { MODEL_PRICES: JSON.stringify(PRICES) } } })
  const { client } = await gatewayClient(t, mesh)
  const boss = await registerAdmin(client)
  const user = await userWithKey(client)
  const name = (await client.call(GatewayProtocol.whoami, { token: user.token })).user.username
  await client.call(GatewayProtocol.grantCredits, { token: boss, username: name, amountUsd: 1 })
  const worker = new HostileWorker({ name: 'hostile-worker', keyPair: keyPairFromSeed(crypto.randomBytes(32)), log: createLogger('hostile-worker', 'silent'), bootstrap: bootstrapList(mesh.bootstrapString), host: '127.0.0.1', allow: [mesh.gatewayKey] })
  await worker.open()
  t.teardown(() => worker.close(), { order: 0 })
  worker.join(mesh.gatewayKey, mesh.workerToken, 2)
  const listed = await until(async () => (await client.call(GatewayProtocol.models, {})).models.map((m) => m.id), (ids) => ids.includes('crafted-error') && worker.gatewayPeer !== null)
  t.ok(listed.includes('crafted-error'), 'the hostile worker is approved and serving')
  const logOf = async (id: string) => (await until(async () => (await db.pool.query('SELECT status, tokens_in, tokens_out, cost_nusd FROM request_logs WHERE id = $1', [id])).rows[0],
    (r) => r && r.status !== 'processing')) as { status: string, tokens_in: number, tokens_out: number, cost_nusd: string }
  const cap = maxAnswerBytes(50)

  // 10 MB frames for maxTokens 50: whole, the answer is refused; streamed, the caller keeps what came before
  const whole = await client.call(GatewayProtocol.infer, { apiKey: user.key, model: 'huge-frames', prompt: 'hello', maxTokens: 50 }, 60_000).catch((e) => e)
  t.is(whole.code, 'BACKEND_ERROR', 'a 10 MB frame ends the attempt: ' + whole.message)
  let streamedBytes = 0
  const streamed = await client.stream(GatewayProtocol.infer, { apiKey: user.key, model: 'huge-frames', prompt: 'hello', maxTokens: 50, stream: true }, {
    idleTimeout: 60_000, onChunk: (c) => { streamedBytes += Buffer.byteLength(c.text) }
  }).catch((e) => e)
  t.is(streamed.code, 'BACKEND_ERROR', 'streamed, the caller gets a clear error after what was delivered')
  t.ok(streamedBytes <= cap, `and at most ${cap} bytes (got ${streamedBytes})`)
  // answered requests reach PostgreSQL in a batch just after the answer
  const hugeRows = await until(async () => (await db.pool.query(`SELECT status, tokens_out FROM request_logs WHERE model_used = 'huge-frames' ORDER BY created_at`)).rows, (r) => r.length >= 2)
  t.alike(hugeRows.map((r) => [r.status, r.tokens_out]), [['failed', 0], ['failed', 1]], 'the bill: nothing for the refused answer, the one good token for the stream')

  // many 1 KB frames for maxTokens 50: cut at the answer's byte cap, billed no more than it delivered
  const many = await client.call(GatewayProtocol.infer, { apiKey: user.key, model: 'many-frames', prompt: 'hello', maxTokens: 50 }, 60_000)
  t.ok(Buffer.byteLength(many.text) <= cap, `the answer is cut at ${cap} bytes (got ${Buffer.byteLength(many.text)})`)
  t.is(many.finishReason, 'length', 'and says it was cut')
  t.ok(many.usage.completionTokens <= 50, `billed within the ceiling: ${many.usage.completionTokens}`)

  // 1e8 tokens reported for a two-byte answer to a one-word prompt
  const lie = await client.call(GatewayProtocol.infer, { apiKey: user.key, model: 'liar-usage', prompt: 'hello', maxTokens: 50 })
  t.is(lie.text, 'ok')
  t.ok(lie.usage.promptTokens > 0 && lie.usage.promptTokens < 100, `the prompt is billed within its hold, not 1e8: ${lie.usage.promptTokens}`)
  t.ok(lie.usage.completionTokens >= 1 && lie.usage.completionTokens <= 2, `the completion within what was delivered (2 bytes): ${lie.usage.completionTokens}`)
  const row = await logOf(lie.id)
  t.alike([row.tokens_in, row.tokens_out], [lie.usage.promptTokens, lie.usage.completionTokens], 'the usage the caller is told is what the log records')
  const charge = lie.usage.promptTokens * 1000 + lie.usage.completionTokens * 2000
  t.is(Number(row.cost_nusd), charge, 'charged at the model price for exactly that usage')
  t.is(Math.round(lie.costUsd * 1e9), charge, 'and the caller is told the same charge')
  const credits = await client.call(GatewayProtocol.credits, { token: user.token, limit: 100 })
  const debit = credits.ledger.find((e) => e.kind === 'debit' && e.requestId === lie.id)
  t.is(Math.round(-(debit?.amountUsd ?? 0) * 1e9), charge, 'the ledger debit is that charge')

  // a worker's own error text and retry-after never reach the caller, over RPC or HTTP
  const crafted = await client.call(GatewayProtocol.infer, { apiKey: user.key, model: 'crafted-error', prompt: 'hello', maxTokens: 5 }).catch((e) => e)
  t.alike([crafted.code, crafted.reason, crafted.details], ['BACKEND_ERROR', 'the model backend failed', undefined], 'the gateway\'s code and words, no details')
  const res = await fetch(mesh.webUrl + '/v1/chat/completions', {
    method: 'POST', headers: { authorization: `Bearer ${user.key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'crafted-error', messages: [{ role: 'user', content: 'hello' }], max_tokens: 5 })
  })
  const body = await res.text()
  t.is(res.status, 502, 'HTTP: a backend failure (502), not a rate limit')
  t.is(res.headers.get('retry-after'), null, 'with no Retry-After')
  t.absent(body.includes('evil.example') || body.includes('revoked'), 'and none of the worker\'s text: ' + body)

  // capacity: registered 2, a heartbeat claiming 100,000 does not raise it
  await worker.gatewayPeer!.call(GatewayProtocol.workerHeartbeat, { inflight: 0, queue: 0, capacity: 100_000, draining: false }, { timeout: 10_000 })
  const health = await client.call(GatewayProtocol.getServiceHealth, { token: boss })
  const me = health.workers!.find((w) => w.publicKey === worker.publicKey)
  t.is(me?.capacity, 2, 'routing weighs the worker by the capacity it registered')
  await worker.gatewayPeer!.call(GatewayProtocol.workerHeartbeat, { inflight: 0, queue: 0, capacity: 1, draining: false }, { timeout: 10_000 })
  const lowered = (await client.call(GatewayProtocol.getServiceHealth, { token: boss })).workers!.find((w) => w.publicKey === worker.publicKey)
  t.is(lowered?.capacity, 1, 'a heartbeat may lower it')

  t.ok(alive(mesh).includes('gateway'), 'the gateway is still up')
  const ok = await client.call(GatewayProtocol.infer, { apiKey: user.key, model: 'synthetic', prompt: 'still fine?', maxTokens: 3 })
  t.is(ok.usage.completionTokens, 3, 'and the healthy worker still serves')
})
