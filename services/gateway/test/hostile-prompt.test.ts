import test from 'brittle'
import crypto from 'node:crypto'
import { startTestMesh, gatewayClient, userWithKey, alive } from '../../../test/support/harness.ts'
import { GatewayProtocol } from '../../../shared/protocol/gateway.ts'

// A prompt that is slow to tokenize (100k of one CJK character: BPE over one unbroken run) must not
// stall the gateway for anyone else: a stranger's is refused before it is counted, and a customer's
// is counted in slices that give the event loop back. Real processes; the other user's requests run
// with the client's ordinary call timeout. The stranger and the customer dial from peers of their own
// (a peer's made-up keys count against that peer alone), and the stranger's cut-off after repeated bad
// keys is lifted here: this test is about the prompt's cost, and test/hardening.test.ts covers the cut-off.

const BIG = '漢'.repeat(100_000)
const generous = JSON.stringify({ default: { userRequestsPerHour: 100000, tokensPerHour: 100000000, tokensPerDay: 100000000 } })

test('hostile prompts: while 100k-character prompts with a made-up key and with a real one keep coming, another user\'s small requests all complete', { timeout: 400_000 }, async (t) => {
  const { mesh } = await startTestMesh(t, { serviceEnv: { gateway: { TIER_LIMITS: generous, DEFAULT_RATE_LIMIT: '100000', HYPERINFER_MAX_AUTH_FAILURES_PER_MINUTE: '100000' } } })
  const stranger = (await gatewayClient(t, mesh)).client
  const attacker = (await gatewayClient(t, mesh)).client
  const victim = (await gatewayClient(t, mesh)).client
  const { key: attackerKey } = await userWithKey(attacker)
  const { key: victimKey } = await userWithKey(victim)
  const madeUp = 'hi_' + crypto.randomBytes(32).toString('base64url').slice(0, 43)
  await victim.call(GatewayProtocol.infer, { apiKey: victimKey, prompt: 'warm up', maxTokens: 2 })

  let victimDone = false
  const hostile = async (client: typeof attacker, apiKey: string) => {
    const codes: string[] = []
    while (!victimDone) {
      codes.push(await client.call(GatewayProtocol.infer, { apiKey, prompt: BIG, maxTokens: 2 }, 300_000).then((r) => r.text.length > 0 ? 'ok' : 'empty', (e) => e.code))
    }
    return codes
  }
  const small = async () => {
    const out: Array<{ ok: boolean, ms: number, code?: string }> = []
    for (let i = 0; i < 20; i++) {
      const started = Date.now()
      // the client's ordinary call timeout (10 s): a gateway stalled by another request fails it
      const r = await victim.call(GatewayProtocol.infer, { apiKey: victimKey, prompt: `small ${i}`, maxTokens: 2 }).then(() => null, (e) => e.code as string)
      out.push({ ok: r === null, ms: Date.now() - started, ...(r ? { code: r } : {}) })
      if (r !== null) break
    }
    victimDone = true
    return out
  }
  const [strangerCodes, customerCodes, victimResults] = await Promise.all([hostile(stranger, madeUp), hostile(attacker, attackerKey), small()])

  t.is(victimResults.filter((r) => r.ok).length, 20, 'all 20 of the other user\'s requests succeed: ' + JSON.stringify(victimResults.filter((r) => !r.ok)))
  t.comment(`the other user's slowest request took ${Math.max(...victimResults.map((r) => r.ms))} ms (not asserted; npm run bench measures it)`)
  t.ok(strangerCodes.length > 0 && strangerCodes.every((c) => c === 'INVALID_API_KEY'), `every big prompt with a made-up key is refused with INVALID_API_KEY (${strangerCodes.length} sent)`)
  t.ok(customerCodes.length > 0 && customerCodes.every((c) => c === 'ok'), `every big prompt with a real key is answered (${customerCodes.length} sent): ${[...new Set(customerCodes)].join(', ')}`)
  t.ok(alive(mesh).includes('gateway'), 'the gateway is still up')
})
