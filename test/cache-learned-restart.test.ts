import test from 'brittle'
import { startTestMesh, gatewayClient, userWithKey, registerAdmin, until } from './support/harness.ts'
import { GatewayProtocol, type InferResult } from '../shared/protocol/gateway.ts'
import type { MeshClient } from '../shared/mesh/client.ts'

// What the gateway learns outlives it, and what it keeps warm follows the registry. When a model's
// registry entry changes (its context length here), its cached answers go and its hot prompts are
// answered again at once, as far as the warm-up budget reaches. And the learned router's estimates
// are in PostgreSQL when the gateway stops, so a restarted gateway routes as the old one had learned.

// tokens an hour: the first prompt's estimate (maxTokens 3 + 256 for its prompt) fits, the second's does not after the first's 6 are spent
const WARM_BUDGET = 262

test('cache and learned routing: a registry change re-warms hot prompts within the budget; learned state survives a restart', { timeout: 240_000 }, async (t) => {
  const { mesh } = await startTestMesh(t, {
    serviceEnv: {
      auth: { ADMIN_USERS: 'boss' },
      // no periodic rounds in the test's time: only the registry change warms; the learned state is written at shutdown only
      gateway: { CACHE_WARM_BUDGET_TOKENS: String(WARM_BUDGET), CACHE_WARM_MIN_USES: '2', CACHE_WARM_INTERVAL_MS: '600000', LEARNED_SYNC_MS: '600000', LEARNED_EXPLORATION: '0' },
      inference: { SYNTHETIC_MODELS: 'synthetic,other', SYNTHETIC_TOKENS_PER_SEC: '0' }
    }
  })
  let { client } = await gatewayClient(t, mesh)
  const admin = await registerAdmin(client)
  const alice = await userWithKey(client, 'alice')
  const ask = (c: MeshClient, prompt: string, model = 'synthetic') => c.call(GatewayProtocol.infer, { apiKey: alice.key, model, prompt, maxTokens: 3, temperature: 0 }, 30_000) as Promise<InferResult>

  // two hot prompts (the hotter asked more) and a cold one
  const hotter = await ask(client, 'the hottest prompt')
  for (let i = 0; i < 3; i++) await ask(client, 'the hottest prompt')
  await ask(client, 'a hot prompt')
  for (let i = 0; i < 2; i++) await ask(client, 'a hot prompt')
  await ask(client, 'a cold prompt')
  t.is((await ask(client, 'the hottest prompt')).cache?.sourceId, hotter.id, 'before the change: the first answer is what is replayed')

  await client.call(GatewayProtocol.registryChange, { token: admin, change: { op: 'setModel', id: 'synthetic', patch: { contextLength: 4096 } } })
  const stats = await until(() => client.call(GatewayProtocol.cacheStats, { token: alice.token }), (r) => r.warmEntries >= 1, 20_000, 200)
  t.is(stats.warmEntries, 1, 'warm-up answered one prompt again after the change (the budget allows one)')
  const refreshed = await ask(client, 'the hottest prompt')
  t.is(refreshed.cached, true, 'the hottest prompt is a hit right after the change…')
  t.not(refreshed.cache?.sourceId, hotter.id, '…of an answer made after it: warm-up refreshed it')
  t.absent((await ask(client, 'a hot prompt')).cached, 'the budget held: the second hot prompt was not warmed')
  t.absent((await ask(client, 'a cold prompt')).cached, 'the cold prompt\'s answer went with the change')

  // learned routing: the users score `other` well and `synthetic` badly
  const first = await client.call(GatewayProtocol.infer, { apiKey: alice.key, prompt: 'route me', maxTokens: 2, route: { strategy: 'learned' } }, 30_000)
  const prior = first.model
  const better = prior === 'synthetic' ? 'other' : 'synthetic'
  for (let i = 0; i < 8; i++) {
    const bad = await ask(client, `scored ${i}`, prior)
    await client.call(GatewayProtocol.feedback, { apiKey: alice.key, requestId: bad.id, score: 0 })
    const good = await ask(client, `scored ${i}`, better)
    await client.call(GatewayProtocol.feedback, { apiKey: alice.key, requestId: good.id, score: 1 })
  }
  const learned = await client.call(GatewayProtocol.infer, { apiKey: alice.key, prompt: 'route me again', maxTokens: 2, route: { strategy: 'learned' } }, 30_000)
  t.is(learned.model, better, `learned: ${learned.routing.reason}`)

  await mesh.restartChild('gateway')
  client = (await gatewayClient(t, mesh)).client
  await mesh.waitUsable(1)
  const after = await until(() => client.call(GatewayProtocol.infer, { apiKey: alice.key, prompt: 'route me after', maxTokens: 2, route: { strategy: 'learned' } }, 30_000),
    (r) => r.model === better, 20_000, 500)
  t.is(after.model, better, `after a restart the gateway routes as it had learned: ${after.routing.reason}`)
  t.is(after.routing.reason.split(' (value')[0], learned.routing.reason.split(' (value')[0], 'with the same best estimate')
})
