// Choosing a model when the caller states a task and preferences instead of a model. Strategies are
// data: weights over per-model signals, each in [0, 1]. Today's signals come from what the gateway
// measures and knows: time to first token (its own moving average), live load, and whether a backend
// is local (free) or a paid API. The registry (model prices, quality and safety scores) will replace
// the stand-ins below without changing the shape.

export interface Preferences { speed: number, cost: number, quality: number }

export interface Candidate { id: string, backend: string, workers: number, ttftMs: number | null, inflight: number }

export interface Ranked { id: string, score: number, signals: { speed: number, cost: number, quality: number } }

export interface Routing { strategy: string, reason: string, ranked: Ranked[] }

/** Backends that run on the worker's own machine cost nothing per token. */
const LOCAL_BACKENDS = new Set(['synthetic', 'ollama'])
/** Until the registry scores models, every model is rated the same on quality. */
const UNSCORED_QUALITY = 0.5

export const DEFAULT_PREFERENCES: Preferences = { speed: 1, cost: 1, quality: 1 }

export function speedSignal (c: Candidate): number {
  // 1 at 0 ms, 0.5 at 200 ms; an unmeasured model sits in the middle; load pushes it down
  const ttft = c.ttftMs ?? 200
  return (1 / (1 + ttft / 200)) / (1 + c.inflight / Math.max(1, c.workers * 8))
}

export function rank (candidates: Candidate[], prefs: Preferences): Ranked[] {
  const total = prefs.speed + prefs.cost + prefs.quality || 1
  return candidates.map((c) => {
    const signals = { speed: speedSignal(c), cost: LOCAL_BACKENDS.has(c.backend) ? 1 : 0, quality: UNSCORED_QUALITY }
    const score = (prefs.speed * signals.speed + prefs.cost * signals.cost + prefs.quality * signals.quality) / total
    return { id: c.id, score: Math.round(score * 1000) / 1000, signals }
  }).sort((a, b) => b.score - a.score || b.signals.speed - a.signals.speed || a.id.localeCompare(b.id)) // ties go to the faster
}

export function route (candidates: Candidate[], prefs: Preferences = DEFAULT_PREFERENCES): Routing {
  const ranked = rank(candidates, prefs)
  const best = ranked[0]
  const reason = best
    ? `highest weighted score ${best.score} (speed ${best.signals.speed.toFixed(2)} × ${prefs.speed}, cost ${best.signals.cost.toFixed(2)} × ${prefs.cost}, quality ${best.signals.quality.toFixed(2)} × ${prefs.quality}) among ${ranked.length} model(s)`
    : 'no model is served'
  return { strategy: 'hybrid', reason, ranked }
}
