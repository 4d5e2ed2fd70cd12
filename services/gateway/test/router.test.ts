import test from 'brittle'
import { route, type ModelCandidate } from '../router.ts'

// The router is a pure function of the candidates' data: table-driven checks of every strategy,
// including latency (which the end-to-end test cannot pin down with equally fast synthetic models).

const base = { provider: 'openai', tasks: ['chat'], priceIn: 1, priceOut: 2, quality: 0.5, safety: 0.5, ttftMs: 100, inflight: 0, workers: 1 }
const models: ModelCandidate[] = [
  { ...base, id: 'fast', ttftMs: 20, priceIn: 3, priceOut: 9, quality: 0.6 },
  { ...base, id: 'slow-cheap', ttftMs: 900, priceIn: 0.05, priceOut: 0.1, quality: 0.4 },
  { ...base, id: 'best', ttftMs: 300, priceIn: 10, priceOut: 30, quality: 0.97, safety: 0.9 },
  { ...base, id: 'coder', ttftMs: 150, tasks: ['chat', 'code'], quality: 0.8, safety: 0.6 },
  { ...base, id: 'local', provider: 'ollama', priceIn: 0, priceOut: 0, ttftMs: 400, quality: 0.5 },
  { ...base, id: 'unpriced-remote', priceIn: 0, priceOut: 0, ttftMs: 100, quality: 0.5 }
]

test('router: each strategy picks what the data says', (t) => {
  const cases: Array<[string, Parameters<typeof route>[1], string]> = [
    ['latency', { strategy: 'latency' }, 'fast'],
    ['cost: a free local backend beats every price', { strategy: 'cost' }, 'local'],
    ['cost among priced remote (no local)', { strategy: 'cost', minSafety: 0.55 }, 'coder'],
    ['quality', { strategy: 'quality' }, 'best'],
    ['task code', { task: 'code' }, 'coder'],
    ['min safety', { strategy: 'latency', minSafety: 0.85 }, 'best'],
    ['hybrid weights: latency only', { weights: { cost: 0, latency: 1, quality: 0 } }, 'fast']
  ]
  for (const [name, spec, expected] of cases) t.is(route(models, spec).ranked[0]!.id, expected, `${name} → ${expected}`)
})

test('router: load pushes a fast model down; unpriced remote ranks last on cost; empty pools are NO_WORKER', (t) => {
  const busy = models.map((m) => m.id === 'fast' ? { ...m, inflight: 400 } : m)
  t.not(route(busy, { strategy: 'latency' }).ranked[0]!.id, 'fast', 'a saturated model loses the latency race')
  const cost = route(models, { strategy: 'cost' }).ranked
  t.is(cost[cost.length - 1]!.id, 'unpriced-remote', 'a remote model with no price is assumed to cost the most')
  try {
    route(models, { task: 'translate' })
    t.fail('no model for the task should throw')
  } catch (err) {
    t.is((err as { code: string }).code, 'NO_WORKER', 'no model for the task: NO_WORKER')
  }
  const r = route(models, { strategy: 'quality' })
  t.ok(r.reason.startsWith('quality: highest score 0.97'), 'the reason names the strategy and score: ' + r.reason)
})
