import test from 'brittle'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import RPC from '@hyperswarm/rpc'
import c from 'compact-encoding'
import DHT from 'hyperdht'
import { alive, gatewayClient, startTestMesh, userWithKey } from './support/harness.ts'
import { createTestDatabase } from './support/db.ts'
import { createDHT } from '../shared/mesh/dht.ts'
import { bootstrapList } from '../shared/config.ts'
import { GatewayProtocol } from '../shared/protocol/gateway.ts'
import { runFuzz } from '../scripts/fuzz/run.ts'
import { formatReport } from '../scripts/fuzz/report.ts'

// Hostile frames against real processes: a few hand-made ones that once stopped a service, then a
// short run of the same fuzzer `npm run fuzz` runs at full size.

/** a raw @hyperswarm/rpc client with a fresh identity: it can send frames the typed client never would */
async function strangerRpc (t: { teardown: (fn: () => unknown) => void }, bootstrap: string): Promise<RPC> {
  const kp = DHT.keyPair(crypto.randomBytes(32))
  const dht = createDHT({ keyPair: kp, bootstrap: bootstrapList(bootstrap), clientOnly: true })
  const rpc = new RPC({ keyPair: kp, dht, valueEncoding: c.json })
  t.teardown(async () => { await rpc.destroy({ force: true }); await dht.destroy() })
  return rpc
}

test('fuzz: frames that are not JSON, requests to event names and bad stream ids get coded errors and the gateway stays up', { timeout: 180_000 }, async (t) => {
  const { mesh } = await startTestMesh(t)
  const rpc = await strangerRpc(t, mesh.bootstrapString)
  const gw = rpc.connect(Buffer.from(mesh.gatewayKey, 'hex'))
  const codeOf = (p: Promise<unknown>) => p.then(() => 'answered', (err: { code?: string }) => err.code ?? 'no code')

  // a length-prefixed string that is not JSON: the server's JSON.parse throws a SyntaxError
  const notJson = await codeOf(gw.request('infer', Buffer.from('\x05{oops'), { requestEncoding: c.raw, timeout: 5000 }))
  t.is(notJson, 'DECODE_ERROR', 'a frame that is not JSON is refused with DECODE_ERROR')
  // '_cancel' is an event; asked as a request its handler returns nothing, which JSON cannot encode
  const eventAsRequest = await gw.request('_cancel', { id: 1 }, { timeout: 5000 }).catch((err: Error) => err)
  t.alike(eventAsRequest, { ok: false, error: { code: 'BAD_REQUEST', message: "'_cancel' is an event, not a method" } }, 'a request to an event name gets a coded error')

  // a stream id that is an object whose toString and valueOf are not functions: Number() throws on it
  // (with a real key: a made-up one is refused before the frame is looked at)
  const { key: apiKey } = await userWithKey((await gatewayClient(t, mesh)).client)
  const badSid = await gw.request('infer', { _sid: { toString: 'x', valueOf: 1 }, apiKey, prompt: 'hi' }, { timeout: 5000 })
  t.is(badSid?.error?.code, 'BAD_REQUEST', 'a stream id that is not a number is refused as BAD_REQUEST, not INTERNAL')

  t.alike(alive(mesh), ['auth', 'gateway', 'inference', 'metrics', 'web'], 'every process is still running')
  const { client } = await gatewayClient(t, mesh)
  const { key } = await userWithKey(client)
  const r = await client.stream(GatewayProtocol.infer, { apiKey: key, model: 'synthetic', prompt: 'hi', maxTokens: 4 }, { onChunk () {}, idleTimeout: 20_000 })
  t.is(r.usage.completionTokens, 4, 'and the gateway still serves a real inference')
})

test('fuzz: a short run of npm run fuzz keeps every invariant', { timeout: 600_000 }, async (t) => {
  const db = await createTestDatabase()
  const home = fs.mkdtempSync(path.join(process.env.HYPERINFER_TEST_TMP ?? os.tmpdir(), 'fuzz-'))
  t.teardown(async () => { await db.drop(); fs.rmSync(home, { recursive: true, force: true }) })
  const report = await runFuzz({ frames: 2000, http: 300, seed: 7, concurrency: 50, timeoutMs: 15_000, home, databaseUrl: db.url })
  t.comment(formatReport(report).split('\n').join('\n# '))
  t.is(report.rpc.sent, 2000, 'every RPC frame was sent and classified')
  t.is(report.http.sent, 300, 'every HTTP request was sent and classified')
  t.ok(report.rpc.counts.coded > 0 && report.http.counts.coded > 0, 'hostile input was answered with coded errors')
  t.ok(report.rpc.counts.success > 0 && report.http.counts.success > 0, 'and some of it was valid and served')
  t.alike(report.rpc.failures, [], 'no RPC answer was uncoded or INTERNAL')
  t.alike(report.http.failures, [], 'no HTTP answer was a 5xx (but 503) or lacked an OpenAI error object')
  t.alike(report.processes.filter((p) => !p.alive).map((p) => p.name), [], 'no process crashed')
  t.is(report.processes.length, 5, 'all five processes were watched')
  t.alike(report.postRun, { rpc: 'ok', http: 'ok' }, 'a real inference works over RPC and over HTTP after the run')
  t.ok(report.logBytes > 0, 'the processes wrote logs, and they were scanned')
  t.alike(report.leaks, [], 'no secret appeared in an answer or a log')
  t.alike(report.failures, [], 'the run reports no failure')
})

test('fuzz: a password check that waited too long for a slot is refused as RATE_LIMITED, not left to time out', async (t) => {
  const { Passwords } = await import('../services/auth/passwords.ts')
  const passwords = new Passwords({ params: { N: 2 ** 14, r: 8, p: 1 }, maxConcurrent: 1, maxQueued: 1000, maxWaitMs: 50 })
  const hash = await passwords.hash('correct horse battery')
  const outcomes = await Promise.all(Array.from({ length: 200 }, () => passwords.verify('correct horse battery', hash).then(String, (err) => err.code)))
  t.ok(outcomes.includes('true'), 'the checks that got a slot in time ran')
  t.ok(outcomes.includes('RATE_LIMITED'), 'the ones that waited past the limit were refused with a coded error')
  t.alike([...new Set(outcomes)].sort(), ['RATE_LIMITED', 'true'], 'nothing else happened')
})
