import test from 'brittle'
import OpenAI from 'openai'
import { gatewayClient, registerAdmin, startTestMesh, until, userWithKey } from './support/harness.ts'
import { startFakeOpenAI } from './fakes/fake-openai.ts'
import { ECHO_MODEL } from './fakes/fake-llm.ts'
import { GatewayProtocol } from '../shared/protocol/gateway.ts'
import { SafetyProtocol } from '../shared/protocol/safety.ts'

// Answers judged by the mesh's moderation model as they stream: windows of the answer go to the
// model tagged `moderation` while the rest is held, and an answer it flags ends there with
// content_filter (RPC and SSE), though the built-in detectors see nothing in it. And a cached answer
// is checked again when it is replayed: one kept under flag, on a gateway whose policy is redact, is
// cut as a fresh one would be. The echo model repeats the prompt, so a test chooses the answer.

const SAFE = 'Here is a calm and friendly reply about doors, locks and keys, which stays harmless for quite a while, ' +
  'long enough to fill a window or two of the check before anything else is said. '
const FLAGGED = SAFE + 'Then you shoot the lock off the door and walk straight in.'
const UNSAFE_CACHED = 'Sure, here is the plan. First you learn how to make a pipe bomb from parts and then you go on with it'

test('safety: the moderation model judges answers window by window; cached replays are re-checked under the policy in force', { timeout: 240_000 }, async (t) => {
  const echo = await startFakeOpenAI({ apiKey: 'sk-echo', models: [ECHO_MODEL] })
  t.teardown(() => echo.close(), { order: 2 })
  const m = await startTestMesh(t, {
    gateways: 2,
    serviceEnv: {
      auth: { ADMIN_USERS: 'boss' },
      gateway: { SAFETY_DEFAULT_POLICY: 'flag', SAFETY_MODEL_WINDOW: '64' },
      inference: { SYNTHETIC_MODELS: 'synthetic-guard', OPENAI_BASE_URL: echo.url + '/v1', OPENAI_API_KEY: 'sk-echo' }
    },
    // the second gateway's operator chose redact for every key that sets no policy, and fail-closed
    // for the model, whose verdicts never come in time there
    instanceEnv: { 'gateway-2': { SAFETY_DEFAULT_POLICY: 'redact', SAFETY_MODEL_FAILURE: 'closed', SAFETY_MODEL_TIMEOUT_MS: '1' } }
  })
  const { client } = await gatewayClient(t, m.mesh)
  const { client: second } = await gatewayClient(t, m.mesh, m.mesh.gatewayKeys[1])
  const admin = await registerAdmin(client)

  // a cached answer kept under flag is not replayed whole under redact
  const plain = await userWithKey(client, 'plain')
  const ask = { apiKey: plain.key, model: ECHO_MODEL, prompt: UNSAFE_CACHED, temperature: 0 }
  const kept = await client.call(GatewayProtocol.infer, ask, 30_000)
  t.is(kept.text, UNSAFE_CACHED, 'under flag the answer passes whole (and is kept)')
  const again = await client.call(GatewayProtocol.infer, ask, 30_000)
  t.ok(again.cached && again.text === UNSAFE_CACHED, 'and replays whole under flag')
  const replay = await second.call(GatewayProtocol.infer, ask, 30_000)
  t.is(replay.cached, true, 'the redact gateway answers from the shared tier…')
  t.is(replay.finishReason, 'content_filter', '…but cuts the replay as it would cut a fresh answer')
  t.ok(!/bomb/.test(replay.text) && UNSAFE_CACHED.startsWith(replay.text), 'the unsafe phrase is not replayed: ' + JSON.stringify(replay.text))
  const streamed: string[] = []
  const replayStream = await second.stream(GatewayProtocol.infer, { ...ask, stream: true }, { onChunk: (c) => streamed.push(c.text), idleTimeout: 30_000 })
  t.is(replayStream.finishReason, 'content_filter', 'a streamed replay too')
  t.ok(!/bomb/.test(streamed.join('')), 'with nothing unsafe in its frames')

  // the model: tagged `moderation` in the registry, it judges answers under policies that cut them
  await client.call(GatewayProtocol.registryChange, { token: admin, change: { op: 'setModel', id: 'synthetic-guard', patch: { tasks: ['moderation'] } } })
  const guarded = await userWithKey(client, 'guarded')
  await client.call(SafetyProtocol.setKeySafety, { token: guarded.token, id: guarded.keyId, safety: 'redact' })
  const moderation = await until(() => client.call(SafetyProtocol.moderate, { apiKey: guarded.key, input: 'x' }), (r) => r.model === 'synthetic-guard', 20_000, 250)
  t.is(moderation.model, 'synthetic-guard', 'the gateway serves the moderation model')
  const builtin = await client.call(SafetyProtocol.moderate, { apiKey: guarded.key, input: FLAGGED, model: 'hyperinfer-builtin' })
  t.is(builtin.results[0]!.flagged, false, 'the built-in detectors alone see nothing in the answer to come')

  const whole = await client.call(GatewayProtocol.infer, { apiKey: guarded.key, model: ECHO_MODEL, prompt: SAFE + SAFE }, 30_000)
  t.is(whole.text, SAFE + SAFE, 'a harmless answer passes whole, window after window, in order')
  t.is(whole.finishReason, 'stop')

  const frames: string[] = []
  const cut = await client.stream(GatewayProtocol.infer, { apiKey: guarded.key, model: ECHO_MODEL, prompt: FLAGGED, stream: true }, { onChunk: (c) => frames.push(c.text), idleTimeout: 30_000 })
  t.is(cut.finishReason, 'content_filter', 'RPC: the model flagged a window, the stream ends with content_filter')
  const text = frames.join('')
  t.ok(text.length >= 64 && FLAGGED.startsWith(text), `the windows before it passed (${text.length} characters)`)
  t.ok(!/shoot/.test(text), 'the flagged window never reached the caller')

  const openai = new OpenAI({ baseURL: m.mesh.webUrl + '/v1', apiKey: guarded.key, maxRetries: 0 })
  const sse = await openai.chat.completions.create({ model: ECHO_MODEL, messages: [{ role: 'user', content: FLAGGED }], stream: true })
  let finish: string | null = null
  let sseText = ''
  for await (const chunk of sse) {
    sseText += chunk.choices[0]?.delta?.content ?? ''
    finish = chunk.choices[0]?.finish_reason ?? finish
  }
  t.is(finish, 'content_filter', 'SSE: the last chunk says content_filter')
  t.ok(!/shoot/.test(sseText) && sseText.length > 0, 'after the windows that passed')

  // under flag the model is not asked about answers (its verdict could change nothing): the answer passes
  const flagKey = await userWithKey(client, 'flagger')
  const free = await client.call(GatewayProtocol.infer, { apiKey: flagKey.key, model: ECHO_MODEL, prompt: FLAGGED }, 30_000)
  t.is(free.text, FLAGGED, 'under flag the answer is whole')

  // fail-closed: no verdict in time ends the answer rather than letting unjudged text through
  // (a verdict can still beat the 1 ms limit on a quiet machine, and a window judged in time is rightly
  // released: wait for an answer whose first window went unjudged; an answer that leaks unjudged text never comes)
  const closed = await until(() => second.call(GatewayProtocol.infer, { apiKey: guarded.key, model: ECHO_MODEL, prompt: SAFE }, 30_000),
    (r) => r.finishReason === 'content_filter' && r.text === '', 20_000, 250)
  t.is(closed.finishReason, 'content_filter', 'SAFETY_MODEL_FAILURE=closed: a window the model gave no verdict on ends the answer')
  t.is(closed.text, '', 'and none of it is released')

  // the second gateway writes its decisions in batches, about once a second
  const { events } = await until(() => client.call(SafetyProtocol.safetyEvents, { token: guarded.token }),
    (r) => r.events.some((e) => e.category === 'unavailable'), 10_000, 250)
  t.ok(events.some((e) => e.detector === 'model' && e.category === 'unavailable' && e.action === 'filter'), 'recorded as the model being unavailable')
  t.ok(events.some((e) => e.stage === 'output' && e.detector === 'model' && e.category === 'violence' && e.action === 'filter'), 'the model\'s verdict is recorded as a decision')
  const plainEvents = (await client.call(SafetyProtocol.safetyEvents, { token: plain.token })).events
  t.ok(plainEvents.some((e) => e.stage === 'output' && e.detector === 'content' && e.action === 'filter'), 'so is the cut replay')
  t.ok(!JSON.stringify(events).includes('shoot'), 'never the text')
})
