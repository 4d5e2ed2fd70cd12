import { LearnedRouter } from '../../services/gateway/learned-router.ts'
import { costSignal, route, type ModelCandidate } from '../../services/gateway/router.ts'

// A routing simulation: synthetic models whose quality, time to first token, error rate and price
// are hidden distributions that drift halfway through the run. Each strategy routes the same stream
// of requests (one a simulated second) and sees only what the gateway would see: `hybrid` the
// registry (admin-set quality, prices) and the time to first token it measured on its own picks;
// `learned` the outcomes of its picks and the users' scores (given on a share of answers); `random`
// nothing. The oracle knows every model's true expected reward at every moment. The reward of an
// answer is what both hybrid and learned optimise: P(success) × mean(speed, cost, quality) with
// speed = 1/(1 + ttft/200 ms), cost = the router's cost signal and quality the model's true quality.

export interface SimModel {
  id: string
  provider: string
  priceIn: number
  priceOut: number
  safety: number
  /** before and after the drift */
  phases: [Phase, Phase]
}
interface Phase { quality: number, ttftMedianMs: number, errorRate: number }

export const SIM_MODELS: SimModel[] = [
  { id: 'alpha', provider: 'openai', priceIn: 0.5, priceOut: 1.5, safety: 0.9, phases: [{ quality: 0.95, ttftMedianMs: 200, errorRate: 0.01 }, { quality: 0.6, ttftMedianMs: 200, errorRate: 0.1 }] },
  { id: 'beta', provider: 'openai', priceIn: 0.2, priceOut: 0.6, safety: 0.9, phases: [{ quality: 0.7, ttftMedianMs: 250, errorRate: 0.01 }, { quality: 0.7, ttftMedianMs: 250, errorRate: 0.01 }] },
  { id: 'gamma', provider: 'ollama', priceIn: 0, priceOut: 0, safety: 0.8, phases: [{ quality: 0.55, ttftMedianMs: 600, errorRate: 0.02 }, { quality: 0.9, ttftMedianMs: 600, errorRate: 0.02 }] },
  { id: 'delta', provider: 'openai', priceIn: 5, priceOut: 15, safety: 0.9, phases: [{ quality: 0.8, ttftMedianMs: 150, errorRate: 0.01 }, { quality: 0.8, ttftMedianMs: 150, errorRate: 0.01 }] },
  // the best model of all, outside the requests' filter (safety ≥ 0.5): no strategy may pick it
  { id: 'unsafe', provider: 'ollama', priceIn: 0, priceOut: 0, safety: 0.2, phases: [{ quality: 1, ttftMedianMs: 50, errorRate: 0 }, { quality: 1, ttftMedianMs: 50, errorRate: 0 }] }
]
export const MIN_SAFETY = 0.5

/** A seeded PRNG (mulberry32), so a run can be repeated exactly. */
export function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const speed = (ttft: number) => 1 / (1 + ttft / 200)

export interface SimOptions { steps?: number, seed?: number, feedbackRate?: number, exploration?: number }
export interface StrategyResult { reward: number, beforeDrift: number, afterDrift: number, regret: number, regretAfterDrift: number, picks: Record<string, number>, outsideFilter: number }
export interface SimResult { steps: number, driftAt: number, oracle: { reward: number, beforeDrift: number, afterDrift: number }, strategies: Record<'learned' | 'hybrid' | 'random', StrategyResult> }

export function simulate (opts: SimOptions = {}): SimResult {
  const steps = opts.steps ?? 20_000
  const driftAt = Math.floor(steps / 2)
  const rnd = prng(opts.seed ?? 1)
  const feedbackRate = opts.feedbackRate ?? 0.3
  const lognormal = (median: number) => median * Math.exp(0.3 * Math.sqrt(-2 * Math.log(Math.max(rnd(), 1e-12))) * Math.cos(2 * Math.PI * rnd()))
  const phaseOf = (t: number) => (t < driftAt ? 0 : 1)
  const cand = (m: SimModel): ModelCandidate => ({ id: m.id, provider: m.provider, tasks: ['chat'], priceIn: m.priceIn, priceOut: m.priceOut, quality: m.phases[0].quality, safety: m.safety, ttftMs: m.phases[0].ttftMedianMs, inflight: 0, workers: 1 })
  // the true expected reward of each model in each phase (E[speed] by sampling)
  const truth = SIM_MODELS.map((m) => m.phases.map((p) => {
    let s = 0
    for (let i = 0; i < 4000; i++) s += speed(lognormal(p.ttftMedianMs))
    return (1 - p.errorRate) * (s / 4000 + costSignal(cand(m)) + p.quality) / 3
  }))
  const allowed = SIM_MODELS.map((m, i) => ({ m, i })).filter(({ m }) => m.safety >= MIN_SAFETY)
  const oracle = { reward: 0, beforeDrift: 0, afterDrift: 0 }

  let now = 0
  const learner = new LearnedRouter({ exploration: opts.exploration ?? 0.05, random: rnd, now: () => now })
  const hybridTtft = new Map(SIM_MODELS.map((m) => [m.id, m.phases[0].ttftMedianMs]))
  const mk = (): StrategyResult => ({ reward: 0, beforeDrift: 0, afterDrift: 0, regret: 0, regretAfterDrift: 0, picks: {}, outsideFilter: 0 })
  const res = { learned: mk(), hybrid: mk(), random: mk() }

  for (let t = 0; t < steps; t++) {
    now = t * 1000
    const ph = phaseOf(t)
    const best = Math.max(...allowed.map(({ i }) => truth[i]![ph]!))
    oracle.reward += best
    if (ph === 0) oracle.beforeDrift += best; else oracle.afterDrift += best
    const candidates = SIM_MODELS.map(cand)
    const picks: Record<keyof typeof res, string> = {
      learned: route(candidates, { strategy: 'learned', minSafety: MIN_SAFETY }, learner).ranked[0]!.id,
      hybrid: route(candidates.map((c) => ({ ...c, ttftMs: hybridTtft.get(c.id)! })), { strategy: 'hybrid', minSafety: MIN_SAFETY }).ranked[0]!.id,
      random: allowed[Math.floor(rnd() * allowed.length)]!.m.id
    }
    for (const [name, id] of Object.entries(picks) as Array<[keyof typeof res, string]>) {
      const i = SIM_MODELS.findIndex((m) => m.id === id)
      const m = SIM_MODELS[i]!
      const p = m.phases[ph]!
      const r = res[name]
      const expected = truth[i]![ph]!
      r.reward += expected
      if (ph === 0) r.beforeDrift += expected; else r.afterDrift += expected
      r.regret += best - expected
      if (ph === 1) r.regretAfterDrift += best - expected
      r.picks[id] = (r.picks[id] ?? 0) + 1
      if (m.safety < MIN_SAFETY) r.outsideFilter++
      // what the gateway sees of this answer
      const ok = rnd() >= p.errorRate
      const ttft = lognormal(p.ttftMedianMs)
      if (name === 'learned') {
        learner.observe('chat', id, { ok, ttftMs: ok ? ttft : null, usdPerMTok: (m.priceIn + 3 * m.priceOut) / 4 })
        if (ok && rnd() < feedbackRate) learner.feedback('chat', id, rnd() < p.quality ? 1 : 0)
      } else if (name === 'hybrid' && ok) {
        hybridTtft.set(id, hybridTtft.get(id)! * 0.8 + ttft * 0.2)
      }
    }
  }
  return { steps, driftAt, oracle, strategies: res }
}
