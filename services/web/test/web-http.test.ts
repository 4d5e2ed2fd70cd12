import test from 'brittle'
import crypto from 'node:crypto'
import { localTestnet } from '../../../test/support/testnet.ts'
import { keyPairFromSeed } from '../../../shared/keys.ts'
import pino from 'pino'
import { createLogger } from '../../../shared/log.ts'
import { WebService } from '../service.ts'

// The HTTP edge on its own: auth and gateway keys point at nobody, so everything here is what the
// web service decides before (or instead of) a successful RPC.

const log = createLogger('test', 'silent')
const randomKey = () => crypto.randomBytes(32).toString('hex')

async function setup (t: any) {
  const { testnet, bootstrap } = await localTestnet(3)
  const gatewayKey = randomKey()
  const web = new WebService({
    keyPair: keyPairFromSeed(crypto.randomBytes(32)),
    log,
    bootstrap,
    authKey: randomKey(),
    gatewayKey,
    port: 0,
    rpcTimeoutMs: 1500
  })
  await web.open()
  t.teardown(async () => { await web.close(); await testnet.destroy() })
  return { web, gatewayKey }
}

function isErrorBody (t: any, body: any, code: string) {
  t.is(body?.error?.code, code, `error code ${code}`)
  t.is(typeof body?.error?.message, 'string')
  t.is(typeof body?.error?.type, 'string')
}

test('web: landing page, health, request ids', async (t) => {
  const { web, gatewayKey } = await setup(t)
  const res = await fetch(`${web.url}/`)
  t.is(res.status, 200)
  t.ok(res.headers.get('content-type')?.startsWith('text/html'))
  const html = await res.text()
  t.ok(html.includes(gatewayKey), 'shows the gateway key')
  t.ok(html.includes('npx hyperinfer register'), 'shows the CLI')
  t.ok(res.headers.get('x-request-id'), 'request id header')

  const echoed = await fetch(`${web.url}/health`, { headers: { 'x-request-id': 'abc-123' } })
  t.is(echoed.headers.get('x-request-id'), 'abc-123', 'a sane incoming request id is kept')
  const health = await echoed.json() as any
  t.is(health.service, 'web')
  t.is(health.auth, 'disconnected')

  const missing = await fetch(`${web.url}/nope`)
  t.is(missing.status, 404)
  isErrorBody(t, await missing.json(), 'NOT_FOUND')
})

test('web: malformed requests get coded errors and never crash the process', async (t) => {
  const { web } = await setup(t)
  const post = (path: string, body: string, headers: Record<string, string> = { 'content-type': 'application/json' }) =>
    fetch(`${web.url}${path}`, { method: 'POST', headers, body })

  const malformed = await post('/api/auth/register', '{"username": "al')
  t.is(malformed.status, 400, 'malformed JSON: 400')
  const body = await malformed.json() as any
  isErrorBody(t, body, 'BAD_REQUEST')
  t.is(body.error.type, 'invalid_request_error')

  const notObject = await post('/api/auth/register', '[1,2,3]')
  t.is(notObject.status, 400, 'array body: 400')
  isErrorBody(t, await notObject.json(), 'BAD_REQUEST')

  const wrongType = await post('/api/auth/register', '<xml/>', { 'content-type': 'application/xml' })
  t.is(wrongType.status, 400, 'wrong content type: 400')
  isErrorBody(t, await wrongType.json(), 'BAD_REQUEST')

  const huge = JSON.stringify({ username: 'x', email: 'x@example.com', password: 'p'.repeat(1024 * 1024 + 10) })
  const tooLarge = await post('/api/auth/register', huge)
  t.is(tooLarge.status, 413, 'body over 1 MiB: 413')
  isErrorBody(t, await tooLarge.json(), 'PAYLOAD_TOO_LARGE')

  const noBearer = await fetch(`${web.url}/api/auth/api-keys`)
  t.is(noBearer.status, 401, 'no Bearer: 401')
  const nb = await noBearer.json() as any
  isErrorBody(t, nb, 'UNAUTHENTICATED')
  t.is(nb.error.type, 'authentication_error')

  const noKey = await post('/api/inference', JSON.stringify({ prompt: 'hi' }))
  t.is(noKey.status, 401, 'no X-API-Key: 401')
  isErrorBody(t, await noKey.json(), 'INVALID_API_KEY')

  const health = await fetch(`${web.url}/health`)
  t.is(health.status, 200, 'still serving after all that')
})

test('web: an unreachable auth service is a quick 503 UNAVAILABLE', async (t) => {
  const { web } = await setup(t)
  const started = Date.now()
  const res = await fetch(`${web.url}/api/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: 'alice@example.com', password: 'correct horse battery' })
  })
  const ms = Date.now() - started
  t.is(res.status, 503)
  const body = await res.json() as any
  isErrorBody(t, body, 'UNAVAILABLE')
  t.is(body.error.type, 'server_error')
  t.ok(ms < 5000, `answered in ${ms} ms`)

  const models = await fetch(`${web.url}/api/models`)
  t.is(models.status, 503, 'unreachable gateway: 503 too')
})

test('web: every request gets one access-log line, without its query string', async (t) => {
  const { testnet, bootstrap } = await localTestnet(3)
  let written = ''
  const log = pino({ name: 'web', level: 'info' }, { write (s: string) { written += s } })
  const web = new WebService({ keyPair: keyPairFromSeed(crypto.randomBytes(32)), log, bootstrap, authKey: randomKey(), gatewayKey: randomKey(), port: 0, rpcTimeoutMs: 1500 })
  await web.open()
  t.teardown(async () => { await web.close(); await testnet.destroy() })

  const ok = await fetch(`${web.url}/health?token=hunter2-secret`, { headers: { 'x-request-id': 'access-1' } })
  await ok.body?.cancel()
  const missing = await fetch(`${web.url}/nope?key=hunter2-secret`, { headers: { 'x-request-id': 'access-2' } })
  await missing.body?.cancel()
  await new Promise((resolve) => setTimeout(resolve, 50)) // lines leave in a batch at the end of the loop's turn

  const lines = written.trim().split('\n').map((l) => JSON.parse(l)).filter((l) => l.msg === 'http')
  const one = lines.find((l) => l.reqId === 'access-1')
  const two = lines.find((l) => l.reqId === 'access-2')
  t.alike({ method: one?.method, path: one?.path, status: one?.status, level: one?.level, name: one?.name }, { method: 'GET', path: '/health', status: 200, level: 30, name: 'web' })
  t.alike({ path: two?.path, status: two?.status }, { path: '/nope', status: 404 })
  t.is(typeof one?.ms, 'number')
  t.is(typeof one?.time, 'number')
  t.absent(written.includes('hunter2'), 'no query string reaches the log')
})
