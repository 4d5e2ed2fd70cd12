import test from 'brittle'
import { AnomalyDetector, type Alert } from '../safety/anomaly.ts'

// The anomaly detector on its own, with time handed in: a week of ordinary traffic replayed minute by
// minute in a moment, and a key used the way a thief uses one.

const MINUTE = 60_000
const WEEK_START = Date.UTC(2025, 0, 6) // a Monday, 00:00 UTC

/** A small seeded generator, so the week replays the same every run. */
function rng (seed: number): () => number {
  let s = seed >>> 0
  return () => { s = (s * 1664525 + 1013904223) >>> 0; return s / 2 ** 32 }
}
function poisson (mean: number, rand: () => number): number {
  let l = Math.exp(-mean); let k = 0; let p = 1
  do { k++; p *= rand() } while (p > l)
  return k - 1
}
/** requests per minute of an office key: busy by day, quiet by night, quieter at weekends */
function dailyRate (t: number): number {
  const d = new Date(t)
  const hour = d.getUTCHours() + d.getUTCMinutes() / 60
  const day = Math.max(0, Math.sin(((hour - 6) / 14) * Math.PI))
  const weekend = d.getUTCDay() === 0 || d.getUTCDay() === 6 ? 0.3 : 1
  return 0.2 + 12 * day * weekend
}

/** A week of one key's steady traffic from its usual three clients (one replaced every day). */
function steadyWeek (det: AnomalyDetector, keyId: string, rand: () => number): { requests: number, maxScore: number } {
  let requests = 0
  let maxScore = 0
  for (let m = 0; m < 7 * 24 * 60; m++) {
    const minute = WEEK_START + m * MINUTE
    const n = poisson(dailyRate(minute), rand)
    const day = Math.floor(m / (24 * 60))
    for (let i = 0; i < n; i++) {
      const at = minute + Math.floor(rand() * MINUTE)
      const source = ['laptop', 'ci', 'server-' + day][Math.floor(rand() * 3)]!
      const model = rand() < 0.8 ? 'llama3' : 'mistral'
      maxScore = Math.max(maxScore, det.request(keyId, 'user-1', source, model, at))
      const failed = rand() < 0.02
      det.outcome(keyId, { tokens: 200 + Math.floor(rand() * 600), failed, refused: false }, at + 500)
      requests++
    }
  }
  return { requests, maxScore }
}

test('anomaly: a week of steady traffic with a daily pattern raises no alert', async (t) => {
  const alerts: Alert[] = []
  const det = new AnomalyDetector({ onAlert: (a) => alerts.push(a) })
  const { requests, maxScore } = steadyWeek(det, 'key-1', rng(42))
  t.ok(requests > 20_000, `replayed a week: ${requests} requests`)
  t.is(alerts.length, 0, `no alert (highest minute score ${maxScore.toFixed(2)}, threshold ${det.threshold})`)
})

test('anomaly: a stolen key (a burst from new peers) is flagged within a minute', async (t) => {
  const alerts: Alert[] = []
  const det = new AnomalyDetector({ onAlert: (a) => alerts.push(a) })
  const rand = rng(7)
  steadyWeek(det, 'key-1', rand)
  t.is(alerts.length, 0, 'the week itself is quiet')
  // Monday 10:00 of the next week: the key's owner works as usual, then a thief uses it from ten new peers
  const start = WEEK_START + 7 * 24 * 60 * MINUTE + 10 * 60 * MINUTE
  det.request('key-1', 'user-1', 'laptop', 'llama3', start)
  let flaggedAt: number | null = null
  for (let i = 0; i < 300 && flaggedAt === null; i++) {
    const at = start + 1000 + i * 150
    det.request('key-1', 'user-1', 'thief-' + (i % 10), 'llama3', at)
    if (alerts.length > 0) flaggedAt = at
  }
  t.ok(flaggedAt !== null, 'an alert was raised')
  t.ok(flaggedAt! - start < MINUTE, `within a minute of the burst starting (${((flaggedAt! - start) / 1000).toFixed(1)} s)`)
  t.is(alerts[0]!.keyId, 'key-1')
  t.ok(alerts[0]!.signals.newSources > 0, 'the alert names the new sources as a reason')
})

test('anomaly: a key whose refusals spike is slowed, for longer while it lasts', async (t) => {
  const det = new AnomalyDetector({ onAlert: () => {} })
  const now = WEEK_START
  for (let i = 0; i < 4; i++) {
    det.request('k', 'u', 'p', 'm', now + i)
    det.outcome('k', { tokens: 0, failed: false, refused: true }, now + i)
  }
  t.is(det.retryAfter('k', now + 10), 0, 'four refusals: not slowed yet')
  det.request('k', 'u', 'p', 'm', now + 20)
  det.outcome('k', { tokens: 0, failed: false, refused: true }, now + 20)
  const first = det.retryAfter('k', now + 30)
  t.ok(first > 0, `the fifth refusal slows the key (Retry-After ${first} s)`)
  t.is(det.retryAfter('k', now + 20 + first * 1000 + 1), 0, 'it may try again after Retry-After')
  det.request('k', 'u', 'p', 'm', now + first * 1000 + 50)
  det.outcome('k', { tokens: 10, failed: false, refused: false }, now + first * 1000 + 50)
  t.is(det.retryAfter('k', now + first * 1000 + 60), 0, 'a request that succeeds after the wait is not slowed again')
  det.request('k', 'u', 'p', 'm', now + first * 1000 + 100)
  det.outcome('k', { tokens: 0, failed: false, refused: true }, now + first * 1000 + 100)
  t.ok(det.retryAfter('k', now + first * 1000 + 200) > first, 'refused again in the same spike: the wait doubles')
  t.is(det.retryAfter('other', now), 0, 'another key is not slowed')
})
