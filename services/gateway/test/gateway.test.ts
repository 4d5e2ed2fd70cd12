import test from 'brittle'
import c from 'compact-encoding'
import { startTestMesh, gatewayClient, userWithKey, alive, until } from '../../../test/support/harness.ts'
import { workerJoinProof } from '../../../shared/worker-proof.ts'
import { GatewayProtocol } from '../../../shared/protocol/gateway.ts'
import { CommonProtocol } from '../../../shared/protocol/common.ts'
import { MeshError } from '../../../shared/errors.ts'
import crypto from 'node:crypto'
import { MeshService } from '../../../shared/mesh/service.ts'
import { handlers, type HandlerTable } from '../../../shared/mesh/peer.ts'
import { InferenceProtocol } from '../../../shared/protocol/inference.ts'
import { keyPairFromSeed } from '../../../shared/keys.ts'
import { createLogger } from '../../../shared/log.ts'
import { bootstrapList } from '../../../shared/config.ts'

// The gateway's contract with strangers, on real processes: rate limits exact under concurrency,
// revocation within a second, and bad input answered with coded errors while every process stays up.

test('gateway: request 101 in the hour is refused with retry-after, exactly, under 200 concurrent calls', { timeout: 180_000 }, async (t) => {
  const { mesh } = await startTestMesh(t, { serviceEnv: { gateway: { DEFAULT_RATE_LIMIT: '100' } } })
  const { client } = await gatewayClient(t, mesh)
  const { key } = await userWithKey(client)

  const calls = Array.from({ length: 200 }, (_, i) => client.call(GatewayProtocol.infer, { apiKey: key, prompt: `request ${i}`, maxTokens: 2 }, 60_000)
    .then(() => 'ok', (err: MeshError) => err))
  const results = await Promise.all(calls)
  const ok = results.filter((r) => r === 'ok').length
  const limited = results.filter((r) => r instanceof MeshError && r.code === 'RATE_LIMITED') as MeshError[]
  t.is(ok, 100, '100 admitted')
  t.is(limited.length, 100, '100 refused with RATE_LIMITED')
  // windows are clock hours shared by every gateway: retry when this one ends
  const toNextHour = Math.ceil((Math.ceil(Date.now() / 3_600_000) * 3_600_000 - Date.now()) / 1000)
  t.ok(limited.every((e) => Math.abs(Number(e.details?.retryAfterSeconds) - toNextHour) <= 5), `each says when to retry (at the top of the hour, ${toNextHour} s)`)

  const next = await client.call(GatewayProtocol.infer, { apiKey: key, prompt: 'one more', maxTokens: 2 }).catch((e) => e)
  t.is(next.code, 'RATE_LIMITED', 'request 201 is refused too')
  const quota = await client.call(GatewayProtocol.getUserQuota, { apiKey: key })
  t.alike([quota.limit, quota.used, quota.remaining], [100, 100, 0], 'getUserQuota agrees')

  const other = await userWithKey(client)
  const fresh = await client.call(GatewayProtocol.infer, { apiKey: other.key, prompt: 'hi', maxTokens: 2 })
  t.ok(fresh.text.length > 0, 'another key has its own allowance')
})

test('gateway: a revoked key is refused within 1 s', { timeout: 120_000 }, async (t) => {
  const { mesh } = await startTestMesh(t)
  const { client } = await gatewayClient(t, mesh)
  const { key, keyId, token } = await userWithKey(client)
  const first = await client.call(GatewayProtocol.infer, { apiKey: key, prompt: 'warm the cache', maxTokens: 2 })
  t.ok(first.text, 'the key works (and is now cached by the gateway)')
  await client.call(GatewayProtocol.revokeKey, { token, id: keyId })
  const revokedAt = Date.now()
  let deniedAfter = -1
  while (Date.now() - revokedAt < 3000) {
    const r = await client.call(GatewayProtocol.infer, { apiKey: key, prompt: 'still?', maxTokens: 1 }).catch((e) => e)
    if (r instanceof MeshError && r.code === 'INVALID_API_KEY') { deniedAfter = Date.now() - revokedAt; break }
  }
  t.ok(deniedAfter >= 0 && deniedAfter <= 1000, `denied ${deniedAfter} ms after the revoke returned`)
})

test('gateway: bad input gets coded errors and changes nothing; every process stays up', { timeout: 120_000 }, async (t) => {
  const { mesh, db } = await startTestMesh(t, { serviceEnv: { gateway: { MAX_PROMPT_CHARS: '1000' } } })
  const { client } = await gatewayClient(t, mesh)
  const { key } = await userWithKey(client)
  const before = await db.pool.query('SELECT count(*)::int AS n FROM request_logs')

  const cases: Array<[string, () => Promise<unknown>, string]> = [
    ['oversized prompt', () => client.call(GatewayProtocol.infer, { apiKey: key, prompt: 'x'.repeat(1001) }), 'PROMPT_TOO_LARGE'],
    ['unknown model', () => client.call(GatewayProtocol.infer, { apiKey: key, prompt: 'hi', model: 'nope' }), 'UNKNOWN_MODEL'],
    ['wrong type', () => client.call(GatewayProtocol.infer, { apiKey: key, prompt: 42 } as any), 'BAD_REQUEST'],
    ['both prompt and messages', () => client.call(GatewayProtocol.infer, { apiKey: key, prompt: 'a', messages: [{ role: 'user', content: 'b' }] }), 'BAD_REQUEST'],
    ['negative max tokens', () => client.call(GatewayProtocol.infer, { apiKey: key, prompt: 'a', maxTokens: -5 }), 'BAD_REQUEST'],
    ['unexpected field', () => client.call(GatewayProtocol.infer, { apiKey: key, prompt: 'a', admin: true } as any), 'BAD_REQUEST'],
    // the credential is checked before the body is parsed
    ['missing api key', () => client.call(GatewayProtocol.infer, { prompt: 'a' } as any), 'INVALID_API_KEY'],
    ['made-up api key', () => client.call(GatewayProtocol.infer, { apiKey: 'hi_' + 'A'.repeat(43), prompt: 'a' }), 'INVALID_API_KEY'],
    ['null payload', () => client.call(GatewayProtocol.infer, null as any), 'INVALID_API_KEY'],
    ['array payload', () => client.call(GatewayProtocol.register, [1, 2, 3] as any), 'BAD_REQUEST'],
    ['weak password', () => client.call(GatewayProtocol.register, { username: 'bob', email: 'bob@example.com', password: 'short' }), 'BAD_REQUEST'],
    ['bad email', () => client.call(GatewayProtocol.register, { username: 'bob', email: 'not-an-email', password: 'long enough pw' }), 'BAD_REQUEST'],
    ['forged session', () => client.call(GatewayProtocol.listKeys, { token: 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.invalidsignature' }), 'UNAUTHENTICATED'],
    ['internal method from a stranger', () => client.call(CommonProtocol.serviceInfo, {}), 'FORBIDDEN'],
    ['trace id with a NUL (it would poison a database batch)', () => client.call(GatewayProtocol.infer, { apiKey: key, prompt: 'x', traceId: 'a\u0000b' }), 'BAD_REQUEST'],
    ['worker with an oversized model list', () => client.call(GatewayProtocol.registerWorker, { models: Array.from({ length: 1001 }, (_, i) => ({ id: 'm' + i, backend: 'x' })) }), 'BAD_REQUEST']
  ]
  for (const [name, p, code] of cases) {
    const err = await p().then(() => null, (e) => e)
    t.is(err?.code, code, `${name} → ${code}`)
    t.ok(typeof err?.message === 'string' && err.message.length > 0, `${name} has a message`)
  }

  // a worker without the token is only recorded as pending: no traffic, no model offered; one whose
  // token proof matches no token is refused
  const pending = await client.call(GatewayProtocol.registerWorker, { models: [{ id: 'evil', backend: 'x' }] })
  t.is(pending.approval, 'pending', 'a worker without the token is pending')
  const wrong = await client.call(GatewayProtocol.registerWorker, { proof: { tokenId: 'network', mac: 'ab'.repeat(32) }, models: [{ id: 'evil', backend: 'x' }] }).catch((e) => e)
  t.is(wrong.code, 'FORBIDDEN', 'a proof made with a wrong token is refused')
  const evil = await client.call(GatewayProtocol.infer, { apiKey: key, model: 'evil', prompt: 'x' }).catch((e) => e)
  t.is(evil.code, 'UNKNOWN_MODEL', 'the pending worker\'s model is not offered')
  const models = await client.call(GatewayProtocol.models, {})
  t.absent(models.models.some((m) => m.id === 'evil'), 'nor listed')

  // raw bytes that are not JSON at all, and a method that does not exist
  const channel = (client as any).peer.channel
  const garbage = await channel.request('infer', Buffer.from([0xff, 0x00, 0x13, 0x37]), { requestEncoding: c.raw, timeout: 5000 }).catch((e: any) => e)
  t.is(garbage?.code, 'DECODE_ERROR', 'undecodable payload refused by the transport')
  const unknown = await channel.request('dropTables', {}, { timeout: 5000 }).catch((e: any) => e)
  t.is(unknown?.code, 'UNKNOWN_METHOD')

  const after = await db.pool.query('SELECT count(*)::int AS n FROM request_logs')
  t.is(after.rows[0].n, before.rows[0].n, 'no request was logged or counted for refused input')
  const users = await db.pool.query(`SELECT count(*)::int AS n FROM users WHERE username = 'bob'`)
  t.is(users.rows[0].n, 0, 'no user was created from bad input')
  t.alike(alive(mesh), ['auth', 'gateway', 'inference', 'metrics', 'web'], 'every process is still up')
  const ok = await client.call(GatewayProtocol.infer, { apiKey: key, prompt: 'still working?', maxTokens: 3 })
  t.is(ok.usage.completionTokens, 3, 'and the gateway still serves')
})

/** A worker that speaks the protocol but sends garbage: null frames, odd counts, a null result. */
class BadWorker extends MeshService {
  protected handlers (): HandlerTable {
    return handlers()
      .on(InferenceProtocol.processPrompt, async (req, ctx) => {
        if (req.model === 'garbage-frames') {
          ctx.emit(null as any)
          ctx.emit({ text: 42 } as any)
          ctx.emit({ text: 'ok' })
          return { model: req.model, backend: 'bad', usage: { promptTokens: -4000, completionTokens: 1e300 }, finishReason: 'weird', ttftMs: null } as any
        }
        ctx.emit({ text: 'x' })
        return null as any
      })
      .table
  }

  join (gateway: string, token: string): void {
    this.connectTo(gateway, {
      name: 'gateway',
      handlers: this.handlers(),
      onOpen: (peer) => peer.call(GatewayProtocol.registerWorker, { proof: workerJoinProof(token, this.publicKey, gateway), models: [{ id: 'garbage-frames', backend: 'bad' }, { id: 'null-result', backend: 'bad' }] }, { timeout: 10_000 }).then(() => {})
    })
  }
}

test('gateway: a worker that sends malformed frames and results cannot crash it or bill nonsense', { timeout: 120_000 }, async (t) => {
  const { mesh, db } = await startTestMesh(t)
  const { client } = await gatewayClient(t, mesh)
  const { key } = await userWithKey(client)
  const bad = new BadWorker({ name: 'bad-worker', keyPair: keyPairFromSeed(crypto.randomBytes(32)), log: createLogger('bad-worker', 'silent'), bootstrap: bootstrapList(mesh.bootstrapString), host: '127.0.0.1', allow: [mesh.gatewayKey] })
  await bad.open()
  t.teardown(() => bad.close(), { order: 0 })
  bad.join(mesh.gatewayKey, mesh.workerToken)
  const listed = async () => (await client.call(GatewayProtocol.models, {})).models.map((m) => m.id)
  for (let i = 0; i < 100 && !(await listed()).includes('garbage-frames'); i++) await new Promise((r) => setTimeout(r, 100))

  const r = await client.call(GatewayProtocol.infer, { apiKey: key, model: 'garbage-frames', prompt: 'hello', maxTokens: 5 })
  t.is(r.text, 'ok', 'malformed frames are dropped; the good one arrives')
  t.is(r.usage.completionTokens, 1, 'absurd counts from the worker are not billed: the delivered token is')
  t.ok(r.usage.promptTokens > 0, 'a negative prompt count falls back to the gateway\'s own')
  t.is(r.finishReason, 'stop', 'an unknown finish reason is not passed on')
  const nullResult = await client.call(GatewayProtocol.infer, { apiKey: key, model: 'null-result', prompt: 'hello', maxTokens: 5 })
  t.alike([nullResult.text, nullResult.usage.completionTokens], ['x', 1], 'a null result still answers with what was delivered')
  t.ok(alive(mesh).includes('gateway'), 'the gateway is still up')
  // answered requests reach PostgreSQL in a batch just after the answer
  const rows = await until(async () => (await db.pool.query(`SELECT status, tokens_in, tokens_out FROM request_logs WHERE model_used = 'garbage-frames'`)).rows, (r) => r.length > 0)
  t.alike(rows.map((x) => [x.status, x.tokens_out]), [['success', 1]], 'and the log holds what was really delivered')
  t.ok(rows[0].tokens_in > 0 && rows[0].tokens_in < 1000, 'with a sane prompt count')
  const ok = await client.call(GatewayProtocol.infer, { apiKey: key, model: 'synthetic', prompt: 'still fine?', maxTokens: 3 })
  t.is(ok.usage.completionTokens, 3, 'and the healthy worker still serves')
})
