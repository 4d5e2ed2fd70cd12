import test from 'brittle'
import { LearnedRouter } from '../learned-router.ts'
import { Holt } from '../demand.ts'
import { route, STRATEGIES, type ModelCandidate } from '../router.ts'
import { MIN_SAFETY, prng, simulate } from '../../../scripts/lib/routing-sim.ts'

// The learned strategy as a pure function of what it observed, on a seeded random source.

const base = { provider: 'openai', tasks: ['chat'], priceIn: 1, priceOut: 2, quality: 0.5, safety: 0.9, ttftMs: 200, inflight: 0, workers: 1 }
const pool: ModelCandidate[] = [
  { ...base, id: 'a' },
  { ...base, id: 'b' },
  { ...base, id: 'c', tasks: ['chat', 'code'] },
  { ...base, id: 'risky', safety: 0.1, quality: 1, ttftMs: 10, priceIn: 0, priceOut: 0, provider: 'ollama' }
]

test('learned: before any evidence it ranks as hybrid; outcomes and feedback move it', (t) => {
  const r = new LearnedRouter({ exploration: 0, random: prng(7) })
  const hybrid = route(pool, { strategy: 'hybrid', minSafety: 0.5 }).ranked[0]!.id
  t.is(route(pool, { strategy: 'learned', minSafety: 0.5 }, r).ranked[0]!.id, hybrid, 'cold start: the hybrid pick')
  for (let i = 0; i < 50; i++) {
    r.observe('chat', 'a', { ok: false, ttftMs: null, usdPerMTok: null })
    r.observe('chat', 'b', { ok: true, ttftMs: 100, usdPerMTok: 1.75 })
    r.feedback('chat', 'b', 1)
    r.observe('chat', 'c', { ok: true, ttftMs: 100, usdPerMTok: 1.75 })
    r.feedback('chat', 'c', 0)
  }
  const picked = route(pool, { strategy: 'learned', minSafety: 0.5 }, r)
  t.is(picked.ranked[0]!.id, 'b', 'the model that succeeds and is scored well wins')
  t.ok(picked.reason.startsWith('learned: best estimate b'), picked.reason)
  const est = Object.fromEntries(picked.learned!.estimates.map((e) => [e.id, e.value]))
  t.ok(est.a! < est.c! && est.c! < est.b!, `errors cost more than bad scores: ${JSON.stringify(est)}`)
  t.is(route(pool, { strategy: 'learned', task: 'code' }, r).ranked[0]!.id, 'c', 'a task is its own context, and a filter the pool')
})

test('learned: exploration stays within its share and never leaves the filtered pool', (t) => {
  const r = new LearnedRouter({ exploration: 0.05, random: prng(11) })
  let explored = 0
  const n = 20_000
  for (let i = 0; i < n; i++) {
    const c = route(pool, { strategy: 'learned', minSafety: 0.5 }, r)
    if (c.ranked[0]!.id === 'risky') { t.fail('picked a model the filter excludes'); return }
    if (c.learned!.mode === 'explore') explored++
    r.observe('chat', c.ranked[0]!.id, { ok: true, ttftMs: 150, usdPerMTok: 1.75 })
  }
  t.ok(explored / n <= 0.05, `explored ${(explored / n * 100).toFixed(2)}% of requests (bound 5%)`)
  t.ok(explored > 0, 'and does explore')
  const none = new LearnedRouter({ exploration: 0, random: prng(3) })
  let exploring = 0
  for (let i = 0; i < 1000; i++) if (route(pool, { strategy: 'learned', minSafety: 0.5 }, none).learned!.mode !== 'exploit') exploring++
  t.is(exploring, 0, 'exploration 0: never explores')
})

test('learned: evidence decays with its half-life, so a drifting model is re-learned', (t) => {
  let now = 0
  const r = new LearnedRouter({ halfLifeMs: 60_000, now: () => now })
  for (let i = 0; i < 100; i++) r.observe('chat', 'a', { ok: true, ttftMs: 100, usdPerMTok: 1 })
  t.ok(Math.abs(r.arm('chat', 'a').n - 100) < 1e-9)
  now = 60_000
  t.ok(Math.abs(r.arm('chat', 'a').n - 50) < 1e-9, 'one half-life later the evidence counts half')
})

test('learned: deltas for the shared store, and loading every gateway\'s arms back', (t) => {
  const r = new LearnedRouter()
  r.observe('chat', 'a', { ok: true, ttftMs: 200, usdPerMTok: 0 })
  r.feedback('chat', 'a', 1)
  const d = r.takeDeltas()
  t.is(d.length, 1)
  t.alike({ ...d[0], speedSum: Math.round(d[0]!.speedSum * 100) / 100 }, { context: 'chat', model: 'a', n: 1, okN: 1, speedSum: 0.5, costSum: 1, qN: 1, qSum: 1 })
  t.is(r.takeDeltas().length, 0, 'taken once')
  r.observe('chat', 'a', { ok: false, ttftMs: null, usdPerMTok: null })
  r.load([{ context: 'chat', model: 'a', n: 10, okN: 10, speedSum: 5, costSum: 10, qN: 0, qSum: 0, at: Date.now() }])
  t.is(Math.round(r.arm('chat', 'a').n), 11, 'the store\'s arms plus what is not sent yet')
  t.is(STRATEGIES.learned.quality, 1)
})

test('simulation: learned beats hybrid after the drift and stays within 10% of the oracle, on every seed', (t) => {
  for (const seed of [1, 2, 3]) {
    const r = simulate({ seed, steps: 8000 })
    const { learned, hybrid, random } = r.strategies
    t.ok(learned.afterDrift > hybrid.afterDrift, `seed ${seed}: after the drift learned ${learned.afterDrift.toFixed(0)} > hybrid ${hybrid.afterDrift.toFixed(0)}`)
    t.ok(learned.reward >= 0.9 * r.oracle.reward, `seed ${seed}: learned ${(learned.reward / r.oracle.reward * 100).toFixed(1)}% of the oracle's reward`)
    t.ok(learned.afterDrift >= 0.9 * r.oracle.afterDrift, `seed ${seed}: and ${(learned.afterDrift / r.oracle.afterDrift * 100).toFixed(1)}% after the drift`)
    t.ok(learned.reward > random.reward, 'and beats random')
    t.is(learned.outsideFilter + hybrid.outsideFilter + random.outsideFilter, 0, `no strategy picked outside safety ≥ ${MIN_SAFETY}`)
  }
})

test('demand: Holt follows a level and its trend', (t) => {
  const h = new Holt(0.5, 0.3)
  for (let i = 1; i <= 30; i++) h.push(10 * i)
  t.ok(Math.abs(h.forecast(5) - 350) < 15, `a steady ramp of 10/min forecasts ~350 five minutes after 300: ${h.forecast(5).toFixed(1)}`)
  const flat = new Holt()
  for (let i = 0; i < 30; i++) flat.push(42)
  t.ok(Math.abs(flat.forecast(5) - 42) < 1e-6, 'a flat series forecasts itself')
})
