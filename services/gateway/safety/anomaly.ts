// Anomaly detection per API key. Each key keeps a baseline learnt from its own traffic: requests and
// tokens per minute by hour of day (a key busy at noon and idle at night is normal), its error and
// refusal rate, the sources (peers) it is used from and the models it uses. Every request updates
// the key's current minute and scores it against the baseline; a score over the threshold raises
// an alert (once per ALERT_COOLDOWN) that the caller turns into a metric, an audit row, a webhook
// and, if the operator chose so, a suspension. Separately, a key whose refusals and errors spike is
// slowed: refused with a Retry-After that doubles while the spike lasts, before it burns credits.
// Time is given by the caller (`now`, ms), so a week of traffic can be replayed in a test.

const MINUTE = 60_000
/** minutes over which the per-hour baselines average (about a week of each hour) */
const HOUR_SPAN = 60 * 7
const ALL_SPAN = 60 * 24
/** what a key with little history is assumed to do per minute, at most */
const PRIOR_RATE = 10
const PRIOR_TOKENS = 20_000
const MAX_SOURCES = 64
const MAX_MODELS = 32
const MAX_KEYS = 100_000
const ALERT_COOLDOWN = 10 * MINUTE
const SLOW_MIN_FAILURES = 5
const SLOW_MAX_SECONDS = 300

export interface Signals {
  rate: number
  tokens: number
  failures: number
  newSources: number
  models: number
  timeOfDay: number
}

export interface Alert { keyId: string, userId: string, score: number, signals: Signals, at: number }

interface Stat { mean: number, var: number, n: number }

interface Minute {
  at: number
  requests: number
  tokens: number
  failures: number
  refusals: number
  newSources: number
  newModel: number
}

interface KeyState {
  userId: string
  hours: Stat[]
  all: Stat
  tokens: Stat
  failRate: number
  sources: Map<string, number>
  models: Map<string, number>
  minutes: number
  cur: Minute
  lastAlert: number
  slowUntil: number
  slowSeconds: number
  lastSeen: number
}

function fold (s: Stat, x: number, span: number): void {
  const a = 1 / Math.min(span, s.n + 1)
  const d = x - s.mean
  s.mean += a * d
  s.var = (1 - a) * (s.var + a * d * d)
  s.n++
}

const hourOf = (t: number) => new Date(t).getUTCHours()
const emptyMinute = (at: number): Minute => ({ at, requests: 0, tokens: 0, failures: 0, refusals: 0, newSources: 0, newModel: 0 })

export interface AnomalyOptions {
  /** the score over which a key is reported (default 10) */
  threshold?: number
  onAlert: (a: Alert) => void
}

export class AnomalyDetector {
  readonly threshold: number
  private readonly keys = new Map<string, KeyState>()
  private readonly onAlert: (a: Alert) => void

  constructor (opts: AnomalyOptions) {
    this.threshold = opts.threshold ?? 10
    this.onAlert = opts.onAlert
  }

  /** A request of `keyId` from `source` for `model`, at `now`: counted and scored. Returns the minute's score. */
  request (keyId: string, userId: string, source: string | null, model: string, now: number): number {
    const k = this.state(keyId, userId, now)
    k.cur.requests++
    if (source !== null) {
      if (k.sources.size > 0 && !k.sources.has(source)) k.cur.newSources++
      remember(k.sources, source, now, MAX_SOURCES)
    }
    if (k.minutes >= 60 && !k.models.has(model)) k.cur.newModel++
    remember(k.models, model, now, MAX_MODELS)
    return this.evaluate(keyId, k, now)
  }

  /** How a request of `keyId` ended: its tokens, and whether it failed or was refused. */
  outcome (keyId: string, o: { tokens: number, failed: boolean, refused: boolean }, now: number): void {
    const k = this.keys.get(keyId)
    if (!k) return
    this.roll(k, now)
    k.cur.tokens += o.tokens
    if (o.failed) k.cur.failures++
    if (o.refused) k.cur.refusals++
    const bad = k.cur.failures + k.cur.refusals
    // a spike of refusals and errors: slowed, for longer while it goes on
    if ((o.failed || o.refused) && bad >= SLOW_MIN_FAILURES && bad >= k.cur.requests * 0.5 && k.slowUntil <= now) {
      k.slowSeconds = Math.min(SLOW_MAX_SECONDS, k.slowSeconds > 0 ? k.slowSeconds * 2 : 5)
      k.slowUntil = now + k.slowSeconds * 1000
    }
    this.evaluate(keyId, k, now)
  }

  /** Seconds `keyId` must wait before its next request is taken; 0: go ahead. */
  retryAfter (keyId: string, now: number): number {
    const k = this.keys.get(keyId)
    if (!k || k.slowUntil <= now) return 0
    return Math.ceil((k.slowUntil - now) / 1000)
  }

  /** The key's score for its current minute, and the signals in it (0 for an unknown key). */
  score (keyId: string, now: number): { score: number, signals: Signals | null } {
    const k = this.keys.get(keyId)
    if (!k) return { score: 0, signals: null }
    this.roll(k, now)
    const signals = this.signals(k, now)
    return { score: total(signals), signals }
  }

  get size (): number { return this.keys.size }

  private state (keyId: string, userId: string, now: number): KeyState {
    let k = this.keys.get(keyId)
    if (!k) {
      if (this.keys.size >= MAX_KEYS) this.evictOldest()
      k = {
        userId, hours: Array.from({ length: 24 }, () => ({ mean: 0, var: 0, n: 0 })), all: { mean: 0, var: 0, n: 0 }, tokens: { mean: 0, var: 0, n: 0 },
        failRate: 0, sources: new Map(), models: new Map(), minutes: 0, cur: emptyMinute(Math.floor(now / MINUTE)), lastAlert: -Infinity, slowUntil: 0, slowSeconds: 0, lastSeen: now
      }
      this.keys.set(keyId, k)
    }
    k.lastSeen = now
    this.roll(k, now)
    return k
  }

  /** Fold the minutes since the current one into the baseline (quiet minutes count as zero). */
  private roll (k: KeyState, now: number): void {
    const minute = Math.floor(now / MINUTE)
    if (minute <= k.cur.at) return
    // a long silence is folded a day at most: beyond that, zeros teach the baseline nothing new
    const gap = Math.min(minute - k.cur.at, 60 * 24)
    for (let i = 0; i < gap; i++) {
      const m = i === 0 ? k.cur : emptyMinute(k.cur.at + i)
      const at = (k.cur.at + i) * MINUTE
      fold(k.hours[hourOf(at)]!, m.requests, HOUR_SPAN)
      fold(k.all, m.requests, ALL_SPAN)
      if (m.requests > 0) {
        fold(k.tokens, m.tokens, ALL_SPAN)
        k.failRate += (Math.min(1, (m.failures + m.refusals) / m.requests) - k.failRate) / 60
      }
      k.minutes++
    }
    k.cur = emptyMinute(minute)
    if (k.slowUntil <= now) k.slowSeconds = 0
  }

  private signals (k: KeyState, now: number): Signals {
    const c = k.cur
    const hour = k.hours[hourOf(now)]!
    // the hour's own baseline once it has a few hours of history, else the whole day's; a young key gets the prior
    const learnt = hour.n >= 180 ? hour : k.all
    const young = k.minutes < 60 * 24
    const expected = young ? Math.max(learnt.mean, PRIOR_RATE) : learnt.mean
    const rateZ = (c.requests - expected) / Math.sqrt(expected + learnt.var + 1)
    const expTokens = young ? Math.max(k.tokens.mean, PRIOR_TOKENS) : k.tokens.mean
    const failShare = c.requests > 0 ? (c.failures + c.refusals) / c.requests : 0
    return {
      rate: Math.max(0, rateZ - 3),
      tokens: Math.min(5, Math.max(0, (c.tokens - 3 * expTokens) / (expTokens + 1000))),
      failures: c.failures + c.refusals >= SLOW_MIN_FAILURES ? Math.max(0, failShare - k.failRate - 0.3) * 6 : 0,
      newSources: Math.min(12.5, 2.5 * Math.max(0, c.newSources - 1)),
      models: c.requests >= 3 ? 3 * (c.newModel / c.requests) : 0,
      // traffic in an hour this key has been silent in for days
      timeOfDay: hour.n >= 180 && hour.mean < 0.05 && c.requests >= 5 ? Math.min(4, c.requests * 0.2) : 0
    }
  }

  private evaluate (keyId: string, k: KeyState, now: number): number {
    const signals = this.signals(k, now)
    const score = total(signals)
    if (score >= this.threshold && now - k.lastAlert >= ALERT_COOLDOWN) {
      k.lastAlert = now
      this.onAlert({ keyId, userId: k.userId, score, signals, at: now })
    }
    return score
  }

  private evictOldest (): void {
    let oldest: string | null = null
    let at = Infinity
    for (const [id, k] of this.keys) if (k.lastSeen < at) { at = k.lastSeen; oldest = id }
    if (oldest) this.keys.delete(oldest)
  }
}

function total (s: Signals): number {
  return Math.round((s.rate + s.tokens + s.failures + s.newSources + s.models + s.timeOfDay) * 100) / 100
}

/** Note `item` as seen at `now` in a bounded map, forgetting the least recently seen. */
function remember (m: Map<string, number>, item: string, now: number, max: number): void {
  m.delete(item)
  m.set(item, now)
  if (m.size > max) m.delete(m.keys().next().value!)
}
