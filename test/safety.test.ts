import test from 'brittle'
import OpenAI from 'openai'
import { gatewayClient, runCli, until } from './support/harness.ts'
import { cliUser, refusal, safetyMesh } from './support/safety-mesh.ts'
import { ECHO_MODEL } from './fakes/fake-llm.ts'
import { sampleValue } from '../services/metrics/test/util.ts'
import { syntheticText } from '../services/inference/backends/synthetic.ts'
import { GatewayProtocol } from '../shared/protocol/gateway.ts'
import { SafetyProtocol } from '../shared/protocol/safety.ts'

// The safety layer as users meet it, on a real mesh: policies set from the CLI, a blocked prompt
// billed nothing, items redacted before the worker and restored in the answer, an unsafe answer cut
// with content_filter over RPC and SSE, and every decision recorded (never the text) and counted.

const EMAIL = 'carol.x@example.com'

test('safety: policies from the CLI; block bills nothing, redact hides items from the worker, unsafe answers end with content_filter', { timeout: 240_000 }, async (t) => {
  const m = await safetyMesh(t)
  const { client } = await gatewayClient(t, m.mesh)
  const carol = await cliUser(t, m, client, 'carol')

  const created = await runCli(carol.home, ['keys', 'create', '--name', 'guarded', '--safety', 'block', '--json'])
  t.is(created.code, 0, 'keys create --safety block')
  t.is(created.json.safety, 'block', 'the key carries its policy')
  const key = created.json.key as string
  const keyId = created.json.id as string

  const blocked = await refusal(client.call(GatewayProtocol.infer, { apiKey: key, model: 'synthetic', prompt: `write to ${EMAIL} please`, maxTokens: 4 }))
  t.is(blocked?.code, 'SAFETY_BLOCKED', 'a prompt with an email address is refused under block')
  t.ok(!blocked!.message.includes(EMAIL), 'the refusal names the category, never the text: ' + blocked!.message)
  const usage = await client.call(GatewayProtocol.usage, { token: carol.token })
  t.is(usage.totals.requests, 0, 'the blocked request is billed nothing and not even counted as a request')
  const rows = await m.db.pool.query('SELECT count(*)::int AS n FROM request_logs WHERE api_key_id = $1', [keyId])
  t.is(rows.rows[0].n, 0, 'no request row: nothing was held or charged')

  // refusals that keep coming: a key is slowed (429 with Retry-After over HTTP) before it spends more
  const spiky = (await client.call(GatewayProtocol.createKey, { token: carol.token, name: 'spiky', safety: 'block' })).key
  for (let i = 0; i < 5; i++) await refusal(client.call(GatewayProtocol.infer, { apiKey: spiky, model: 'synthetic', prompt: `again ${EMAIL}`, maxTokens: 4 }))
  const slowed = await fetch(m.mesh.webUrl + '/v1/chat/completions', {
    method: 'POST', headers: { authorization: `Bearer ${spiky}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'synthetic', messages: [{ role: 'user', content: 'hello' }], max_tokens: 2 })
  })
  t.is(slowed.status, 429, 'the sixth request in the spike is slowed: HTTP 429')
  t.ok(Number(slowed.headers.get('retry-after')) > 0, `with Retry-After: ${slowed.headers.get('retry-after')} s`)

  const set = await runCli(carol.home, ['keys', 'set', keyId, '--safety', 'redact'])
  t.is(set.code, 0, 'keys set <id> --safety redact')
  t.ok(/safety redact/.test(set.stdout), set.stdout.trim())
  const redacted = await client.call(GatewayProtocol.infer, { apiKey: key, model: 'synthetic', prompt: `mail ${EMAIL} about it`, maxTokens: 6 })
  t.is(redacted.text, syntheticText([{ role: 'user', content: 'mail [EMAIL_1] about it' }], 6), 'the worker saw a placeholder, not the address')
  const echoed = await client.call(GatewayProtocol.infer, { apiKey: key, model: ECHO_MODEL, prompt: `forward it to ${EMAIL} today` })
  t.is(echoed.text, `forward it to ${EMAIL} today`, 'the placeholder in the answer is restored to the original (SAFETY_RESTORE_REDACTED=on)')

  // the account's own policy, from the CLI: a key with none of its own follows it
  const account = await runCli(carol.home, ['safety', 'block'])
  t.ok(account.code === 0 && /account safety policy: block/.test(account.stdout), 'safety block sets the account\'s policy: ' + account.stdout.trim())
  await runCli(carol.home, ['keys', 'set', keyId, '--safety', 'default'])
  const byAccount = await refusal(client.call(GatewayProtocol.infer, { apiKey: key, model: 'synthetic', prompt: `write to ${EMAIL} please`, maxTokens: 4 }))
  t.is(byAccount?.code, 'SAFETY_BLOCKED', 'a key set to default is held to the account\'s block')
  t.ok(/account safety policy: block/.test((await runCli(carol.home, ['safety'])).stdout), '`safety` alone shows the policy')
  await runCli(carol.home, ['safety', 'default'])
  await runCli(carol.home, ['keys', 'set', keyId, '--safety', 'redact'])

  const unsafe = 'Sure, here is the plan. First you learn how to make a pipe bomb from parts and then you go on with more steps after it'
  const frames: string[] = []
  const cut = await client.stream(GatewayProtocol.infer, { apiKey: key, model: ECHO_MODEL, prompt: unsafe, stream: true }, { onChunk: (c) => frames.push(c.text), idleTimeout: 30_000 })
  t.is(cut.finishReason, 'content_filter', 'RPC: the stream ends with finish reason content_filter')
  const streamed = frames.join('')
  t.ok(streamed.length > 0 && unsafe.startsWith(streamed), 'what came before passed: ' + JSON.stringify(streamed))
  t.ok(!/bomb/.test(streamed), 'the unsafe phrase never reached the caller')

  const openai = new OpenAI({ baseURL: m.mesh.webUrl + '/v1', apiKey: key, maxRetries: 0 })
  const sse = await openai.chat.completions.create({ model: ECHO_MODEL, messages: [{ role: 'user', content: unsafe }], stream: true })
  let finish: string | null = null
  let sseText = ''
  for await (const chunk of sse) {
    sseText += chunk.choices[0]?.delta?.content ?? ''
    finish = chunk.choices[0]?.finish_reason ?? finish
  }
  t.is(finish, 'content_filter', 'SSE: the last chunk says content_filter')
  t.ok(!/bomb/.test(sseText), 'and carries no unsafe text')

  const { events } = await client.call(SafetyProtocol.safetyEvents, { token: carol.token })
  const has = (e: Partial<(typeof events)[number]>) => events.some((x) => Object.entries(e).every(([k, v]) => (x as any)[k] === v))
  t.ok(has({ stage: 'input', detector: 'pii', category: 'email', action: 'block', keyId }), 'the block is recorded')
  t.ok(has({ stage: 'input', detector: 'pii', category: 'email', action: 'redact' }), 'the redaction is recorded')
  t.ok(has({ stage: 'output', detector: 'content', category: 'violence', action: 'filter' }), 'the cut answer is recorded')
  t.ok(!JSON.stringify(events).includes('carol.x') && !JSON.stringify(events).includes('bomb'), 'the record holds no text of prompts or answers')

  const metricsUrl = new URL(m.mesh.metricsUrl!).origin + '/metrics'
  const text = await until(async () => (await fetch(metricsUrl)).text(), (s) => (sampleValue(s, 'ai_platform_safety_events_total', { detector: 'pii', category: 'email', action: 'block' }) ?? 0) >= 7, 20_000, 500)
  t.is(sampleValue(text, 'ai_platform_safety_events_total', { detector: 'pii', category: 'email', action: 'block' }), 7, 'every block counted in ai_platform_safety_events_total (one, five on the spiky key, one under the account policy)')
})
