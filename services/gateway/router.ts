import { MeshError } from '../../shared/errors.ts'
import { localBackendIds } from '../inference/backends/table.ts'
import type { Choice, LearnedRouter } from './learned-router.ts'

// Choosing a model. Strategies are data: each is a set of weights over per-model signals in [0, 1]
// (cost, latency, quality), plus filters (task, minimum safety). The signals come from the registry
// (prices, quality and safety scores, measured latency) and from what this gateway measures live
// (its own time-to-first-token average and the load on the model's workers). `learned` weighs the same
// signals as hybrid but learns them from outcomes and user feedback (learned-router.ts).

export type Strategy = 'cost' | 'latency' | 'quality' | 'hybrid' | 'learned'
export interface Weights { cost: number, latency: number, quality: number }

export const STRATEGIES: Record<Strategy, Weights> = {
  cost: { cost: 1, latency: 0, quality: 0 },
  latency: { cost: 0, latency: 1, quality: 0 },
  quality: { cost: 0, latency: 0, quality: 1 },
  hybrid: { cost: 1, latency: 1, quality: 1 },
  learned: { cost: 1, latency: 1, quality: 1 }
}

export interface RouteSpec {
  strategy?: Strategy
  /** only models tagged with this task (chat, code, embed, …) */
  task?: string
  /** only models whose safety score is at least this */
  minSafety?: number
  /** replaces the strategy's weights (hybrid with your own mix) */
  weights?: Partial<Weights>
}

export interface ModelCandidate {
  id: string
  provider: string
  tasks: string[]
  /** USD per 1M tokens */
  priceIn: number
  priceOut: number
  quality: number
  safety: number
  /** measured time to first token, ms (gateway average, else the registry's p50), null if never measured */
  ttftMs: number | null
  inflight: number
  workers: number
}

export interface Ranked { id: string, score: number, signals: { speed: number, cost: number, quality: number, safety: number } }
export interface Routing { strategy: string, reason: string, ranked: Ranked[], /** learned: how the model was picked */ learned?: Choice & { context: string } }

/** Backends that run on the worker's own machine cost nothing per token. */
const LOCAL_PROVIDERS = localBackendIds

export function costSignal (c: ModelCandidate): number {
  const blended = (c.priceIn + 3 * c.priceOut) / 4
  if (blended > 0) return 1 / (1 + blended)
  // unpriced: a local backend is free; a remote API without a price is assumed to cost something
  return LOCAL_PROVIDERS.has(c.provider) ? 1 : 0
}

export function speedSignal (c: ModelCandidate): number {
  // 1 at 0 ms, 0.5 at 200 ms; an unmeasured model sits in the middle; load pushes it down
  const ttft = c.ttftMs ?? 200
  return (1 / (1 + ttft / 200)) / (1 + c.inflight / Math.max(1, c.workers * 8))
}

const round = (x: number) => Math.round(x * 1000) / 1000

export function rank (candidates: ModelCandidate[], weights: Weights): Ranked[] {
  const total = weights.cost + weights.latency + weights.quality || 1
  return candidates.map((c) => {
    const signals = { speed: round(speedSignal(c)), cost: round(costSignal(c)), quality: c.quality, safety: c.safety }
    const score = (weights.latency * signals.speed + weights.cost * signals.cost + weights.quality * signals.quality) / total
    return { id: c.id, score: round(score), signals }
  }).sort((a, b) => b.score - a.score || b.signals.speed - a.signals.speed || a.id.localeCompare(b.id)) // ties go to the faster
}

/** The context `learned` keeps apart: the request's task. */
export const learnedContext = (spec: RouteSpec): string => spec.task ?? 'chat'

export function route (candidates: ModelCandidate[], spec: RouteSpec = {}, learner?: LearnedRouter): Routing {
  const strategy = spec.strategy ?? 'hybrid'
  const weights = { ...STRATEGIES[strategy], ...spec.weights }
  let pool = candidates
  const filters: string[] = []
  if (spec.task) {
    pool = pool.filter((c) => c.tasks.includes(spec.task!))
    filters.push(`task '${spec.task}'`)
  }
  if (spec.minSafety !== undefined) {
    pool = pool.filter((c) => c.safety >= spec.minSafety!)
    filters.push(`safety ≥ ${spec.minSafety}`)
  }
  if (pool.length === 0) {
    throw MeshError.NO_WORKER(`no served model meets ${filters.join(' and ') || 'the request'} (served: ${candidates.map((c) => c.id).join(', ') || 'none'})`)
  }
  const ranked = rank(pool, weights)
  if (strategy === 'learned' && learner) {
    const context = learnedContext(spec)
    const choice = learner.choose(context, pool, weights)
    const chosen = ranked.find((r) => r.id === choice.id)!
    const reason = `learned: ${choice.mode === 'explore' ? 'exploring' : 'best estimate'} ${choice.id} (value ${choice.value.toFixed(3)}) for '${context}' among ${ranked.length} model(s)${filters.length ? ' with ' + filters.join(' and ') : ''}`
    return { strategy, reason, ranked: [{ ...chosen, score: round(choice.value) }, ...ranked.filter((r) => r !== chosen)], learned: { ...choice, context } }
  }
  const best = ranked[0]!
  const parts = (['cost', 'latency', 'quality'] as const).filter((k) => weights[k] > 0)
    .map((k) => `${k} ${(k === 'latency' ? best.signals.speed : best.signals[k]).toFixed(2)} × ${weights[k]}`)
  const reason = `${strategy}: highest score ${best.score} (${parts.join(', ')}) among ${ranked.length} model(s)${filters.length ? ' with ' + filters.join(' and ') : ''}`
  return { strategy, reason, ranked }
}
