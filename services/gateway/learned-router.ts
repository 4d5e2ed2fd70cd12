import { costSignal, speedSignal, type ModelCandidate, type Weights } from './router.ts'

// The `learned` strategy: a contextual bandit over the models a request's filters allow. The context
// is the request's task. Each (context, model) arm keeps exponentially decayed sums of what its
// requests showed — success, speed (time to first token), cost per token — and of the scores users
// gave its answers. An arm's value is P(success) × the weighted mean of speed, cost and quality,
// the same three signals and weights as `hybrid`, whose registry figures are the prior each arm starts
// from (PRIOR_WEIGHT observations' worth), so a model nobody has used yet ranks as hybrid ranks it.
//
// Most requests go to the arm with the best estimate; a bounded share (`exploration`, ≤ 5% by
// default) goes to the arm that wins a Thompson draw from each arm's posterior — so exploring favours
// models whose value is uncertain and close to the best, and never leaves the filtered pool. Decay
// (a half-life in time) lets a model that drifts be re-learned: old evidence weighs less every minute.

export interface ArmStats {
  /** decayed counts and sums, as of `at` (ms epoch) */
  n: number
  okN: number
  speedSum: number
  costSum: number
  qN: number
  qSum: number
  at: number
}

export type ArmDelta = Omit<ArmStats, 'at'>

export interface Outcome { ok: boolean, ttftMs: number | null, /** USD per 1M tokens actually charged */ usdPerMTok: number | null }

export interface LearnedOptions {
  /** share of requests that explore, 0..1 */
  exploration?: number
  halfLifeMs?: number
  random?: () => number
  now?: () => number
  /** each decision, for metrics */
  onChoice?: (mode: Choice['mode']) => void
}

export interface Choice { id: string, mode: 'exploit' | 'explore', value: number, estimates: Array<{ id: string, value: number, n: number }> }

const PRIOR_WEIGHT = 2
/** spread of one observation around its arm's mean, for the posterior draws */
const SIGMA = 0.3
const EMPTY: ArmDelta = { n: 0, okN: 0, speedSum: 0, costSum: 0, qN: 0, qSum: 0 }

export const speedReward = (ttftMs: number) => 1 / (1 + Math.max(0, ttftMs) / 200)
export const costReward = (usdPerMTok: number) => 1 / (1 + Math.max(0, usdPerMTok))

/** A standard normal draw (Box–Muller). */
function gaussian (random: () => number): number {
  const u = Math.max(random(), 1e-12)
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random())
}

export class LearnedRouter {
  readonly exploration: number
  readonly halfLifeMs: number
  private readonly random: () => number
  private readonly now: () => number
  private readonly onChoice?: (mode: Choice['mode']) => void
  private readonly arms = new Map<string, ArmStats>()
  /** what this router observed since the last takeDeltas(), for the shared store */
  private deltas = new Map<string, ArmDelta>()

  constructor (opts: LearnedOptions = {}) {
    this.exploration = opts.exploration ?? 0.05
    this.halfLifeMs = opts.halfLifeMs ?? 10 * 60_000
    this.random = opts.random ?? Math.random
    this.now = opts.now ?? Date.now
    this.onChoice = opts.onChoice
  }

  private static id (context: string, model: string): string { return context + '\0' + model }

  /** The arm, decayed to now. */
  arm (context: string, model: string): ArmStats {
    const id = LearnedRouter.id(context, model)
    const now = this.now()
    const a = this.arms.get(id)
    if (!a) {
      const fresh = { ...EMPTY, at: now }
      this.arms.set(id, fresh)
      return fresh
    }
    if (now > a.at) {
      const f = Math.pow(0.5, (now - a.at) / this.halfLifeMs)
      a.n *= f; a.okN *= f; a.speedSum *= f; a.costSum *= f; a.qN *= f; a.qSum *= f
      a.at = now
    }
    return a
  }

  /** Mean and spread of each signal: the arm's evidence on top of the candidate's registry prior. */
  private posterior (context: string, c: ModelCandidate) {
    const a = this.arm(context, c.id)
    const p = PRIOR_WEIGHT
    return {
      n: a.n,
      ok: { mean: (a.okN + p) / (a.n + p), sd: SIGMA / Math.sqrt(a.n + p) },
      speed: { mean: (a.speedSum + p * speedSignal(c)) / (a.okN + p), sd: SIGMA / Math.sqrt(a.okN + p) },
      cost: { mean: (a.costSum + p * costSignal(c)) / (a.okN + p), sd: SIGMA / Math.sqrt(a.okN + p) },
      quality: { mean: (a.qSum + p * c.quality) / (a.qN + p), sd: SIGMA / Math.sqrt(a.qN + p) }
    }
  }

  private static value (w: Weights, s: { ok: number, speed: number, cost: number, quality: number }): number {
    const total = w.cost + w.latency + w.quality || 1
    return s.ok * (w.latency * s.speed + w.cost * s.cost + w.quality * s.quality) / total
  }

  /** Pick one of `pool` (already filtered by the request) for `context`. */
  choose (context: string, pool: readonly ModelCandidate[], weights: Weights): Choice {
    if (pool.length === 0) throw new Error('learned routing needs at least one candidate')
    const posts = pool.map((c) => ({ c, post: this.posterior(context, c) }))
    const estimates = posts.map(({ c, post }) => ({
      id: c.id, n: Math.round(post.n * 10) / 10,
      value: LearnedRouter.value(weights, { ok: post.ok.mean, speed: post.speed.mean, cost: post.cost.mean, quality: post.quality.mean })
    }))
    const greedy = estimates.reduce((best, e) => e.value > best.value ? e : best)
    if (pool.length === 1 || this.random() >= this.exploration) {
      this.onChoice?.('exploit')
      return { id: greedy.id, mode: 'exploit', value: greedy.value, estimates }
    }
    const draw = (m: { mean: number, sd: number }) => Math.min(1, Math.max(0, m.mean + m.sd * gaussian(this.random)))
    let best = { id: greedy.id, value: -Infinity }
    for (const { c, post } of posts) {
      const v = LearnedRouter.value(weights, { ok: draw(post.ok), speed: draw(post.speed), cost: draw(post.cost), quality: draw(post.quality) })
      if (v > best.value) best = { id: c.id, value: v }
    }
    const mode = best.id === greedy.id ? 'exploit' : 'explore'
    this.onChoice?.(mode)
    return { id: best.id, mode, value: estimates.find((e) => e.id === best.id)!.value, estimates }
  }

  /** A request to `model` ended. */
  observe (context: string, model: string, o: Outcome): void {
    const d: ArmDelta = { ...EMPTY, n: 1 }
    if (o.ok) {
      d.okN = 1
      d.speedSum = speedReward(o.ttftMs ?? 200)
      d.costSum = o.usdPerMTok === null ? 0 : costReward(o.usdPerMTok)
      // an unknown cost counts as the prior's: add the mean so far rather than a made-up figure
      if (o.usdPerMTok === null) { const a = this.arm(context, model); d.costSum = a.okN > 0 ? a.costSum / a.okN : 1 }
    }
    this.add(context, model, d)
  }

  /** A user scored an answer of `model`, 0..1. */
  feedback (context: string, model: string, score: number): void {
    this.add(context, model, { ...EMPTY, qN: 1, qSum: Math.min(1, Math.max(0, score)) })
  }

  private add (context: string, model: string, d: ArmDelta): void {
    const a = this.arm(context, model)
    a.n += d.n; a.okN += d.okN; a.speedSum += d.speedSum; a.costSum += d.costSum; a.qN += d.qN; a.qSum += d.qSum
    const id = LearnedRouter.id(context, model)
    const acc = this.deltas.get(id) ?? { ...EMPTY }
    acc.n += d.n; acc.okN += d.okN; acc.speedSum += d.speedSum; acc.costSum += d.costSum; acc.qN += d.qN; acc.qSum += d.qSum
    this.deltas.set(id, acc)
  }

  /** What was observed since the last call, per arm, and forget it (the shared store has it now). */
  takeDeltas (): Array<{ context: string, model: string } & ArmDelta> {
    const out = [...this.deltas].map(([id, d]) => { const [context, model] = id.split('\0') as [string, string]; return { context, model, ...d } })
    this.deltas = new Map()
    return out
  }

  /** Put back deltas the shared store did not take, to send them next time. */
  restoreDeltas (list: Array<{ context: string, model: string } & ArmDelta>): void {
    for (const { context, model, ...d } of list) {
      const id = LearnedRouter.id(context, model)
      const acc = this.deltas.get(id) ?? { ...EMPTY }
      acc.n += d.n; acc.okN += d.okN; acc.speedSum += d.speedSum; acc.costSum += d.costSum; acc.qN += d.qN; acc.qSum += d.qSum
      this.deltas.set(id, acc)
    }
  }

  /** Replace arms with the shared store's (which includes every gateway's deltas), keeping what is not sent yet. */
  load (rows: Array<{ context: string, model: string } & ArmStats>): void {
    for (const r of rows) {
      const id = LearnedRouter.id(r.context, r.model)
      const pending = this.deltas.get(id) ?? EMPTY
      this.arms.set(id, {
        n: r.n + pending.n, okN: r.okN + pending.okN, speedSum: r.speedSum + pending.speedSum, costSum: r.costSum + pending.costSum,
        qN: r.qN + pending.qN, qSum: r.qSum + pending.qSum, at: r.at
      })
    }
  }
}
