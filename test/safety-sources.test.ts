import test from 'brittle'
import crypto from 'node:crypto'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { gatewayClient, startTestMesh, until, userWithKey } from './support/harness.ts'
import { GatewayProtocol } from '../shared/protocol/gateway.ts'

// The anomaly detector sees HTTP clients: the web service names each client's address (from
// X-Forwarded-For only when the proxy in front is trusted) and the gateway believes it only from
// the web service. A key used from many new addresses at once is flagged, and the alert reaches the
// operator's webhook: signed, retried after a failure, with no secret in it.

const SECRET = 'whsec-' + crypto.randomBytes(12).toString('hex')

interface Delivery { status: number, body: string, headers: http.IncomingHttpHeaders }

test('safety: a stolen key used from new HTTP addresses is flagged, and the alert reaches a signed, retried webhook', { timeout: 240_000 }, async (t) => {
  const deliveries: Delivery[] = []
  const receiver = http.createServer((req, res) => {
    let body = ''
    req.on('data', (d: Buffer) => { body += d.toString() })
    req.on('end', () => {
      // the first delivery fails: the gateway tries again
      const status = deliveries.length === 0 ? 503 : 200
      deliveries.push({ status, body, headers: req.headers })
      res.writeHead(status).end()
    })
  })
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => receiver.close(() => resolve())), { order: 2 })
  const hook = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks/anomaly`

  const m = await startTestMesh(t, {
    serviceEnv: {
      // the test talks to the web over loopback, as a reverse proxy on this machine would
      web: { WEB_TRUSTED_PROXIES: '127.0.0.1,::1,::ffff:127.0.0.1' },
      gateway: { SAFETY_WEBHOOK_URL: hook, SAFETY_WEBHOOK_SECRET: SECRET, SAFETY_WEBHOOK_TIMEOUT_MS: '3000', SAFETY_WEBHOOK_ATTEMPTS: '3' },
      inference: { SYNTHETIC_MODELS: 'synthetic' }
    }
  })
  const { client } = await gatewayClient(t, m.mesh)
  const flagged = async (token: string, keyId: string) => {
    const { keys } = await client.call(GatewayProtocol.listKeys, { token })
    return keys.find((k) => k.id === keyId)?.anomalyAt ?? null
  }
  const post = (key: string, from: string, i: number) => fetch(m.mesh.webUrl + '/v1/chat/completions', {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'x-forwarded-for': from },
    body: JSON.stringify({ model: 'synthetic', messages: [{ role: 'user', content: `hello ${i}` }], max_tokens: 2 })
  })

  // a peer that is not the web service cannot pose as HTTP clients: its claimed addresses are ignored
  const liar = await userWithKey(client, 'liar')
  for (let i = 0; i < 8; i++) {
    await client.call(GatewayProtocol.infer, { apiKey: liar.key, model: 'synthetic', prompt: `hi ${i}`, maxTokens: 2, clientIp: `198.51.100.${i + 1}` })
  }
  t.is(await flagged(liar.token, liar.keyId), null, 'eight addresses claimed over RPC by one stranger peer: one source, no alert')

  // the owner's usual traffic over HTTP, from one address, several times: normal
  const victim = await userWithKey(client, 'victim')
  for (let i = 0; i < 4; i++) t.is((await post(victim.key, '10.1.2.3', i)).status, 200)
  t.is(await flagged(victim.token, victim.keyId), null, 'steady use from one HTTP address raises nothing')

  // the key leaks: ten new addresses use it within the minute
  const started = Date.now()
  for (let i = 0; i < 10; i++) await post(victim.key, `203.0.113.${i + 10}`, 10 + i)
  const at = await until(() => flagged(victim.token, victim.keyId), (v) => v !== null, 60_000, 250)
  t.ok(at, `flagged as anomalous ${((Date.now() - started) / 1000).toFixed(1)} s after the first new address`)

  const got = await until(async () => deliveries, (d) => d.some((x) => x.status === 200), 30_000, 100)
  t.is(got[0]!.status, 503, 'the webhook\'s first delivery failed…')
  const ok = got.find((x) => x.status === 200)!
  t.ok(ok, '…and the alert was delivered again')
  t.is(ok.body, got[0]!.body, 'the same alert')
  const alert = JSON.parse(ok.body)
  t.is(alert.event, 'apikey.anomaly')
  t.is(alert.keyId, victim.keyId, 'it names the key by id')
  t.ok(alert.score >= 10, `with its score (${alert.score})`)
  t.ok(alert.signals.newSources > 0, `and the signals behind it: ${JSON.stringify(alert.signals)}`)
  t.ok(!ok.body.includes(victim.key) && !ok.body.includes(victim.key.slice(-12)) && !ok.body.includes(SECRET), 'no API key and no secret in the payload')
  const ts = String(ok.headers['x-hyperinfer-timestamp'])
  const expected = 'sha256=' + crypto.createHmac('sha256', SECRET).update(ts + '.' + ok.body).digest('hex')
  t.is(ok.headers['x-hyperinfer-signature'], expected, 'signed: HMAC-SHA256 of "<timestamp>.<body>" with the configured secret')
  t.ok(Math.abs(Number(ts) - Date.now() / 1000) < 120, 'the timestamp is now')
})
