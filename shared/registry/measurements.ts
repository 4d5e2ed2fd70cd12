import { MeshError } from '../errors.ts'
import type { Logger } from '../log.ts'
import { measurementSample, parseOrThrow, type MeasurementSample, type Measured } from './schema.ts'

// Per-model request outcomes, kept in memory and summarised into a model's `measured` figures off
// the hot path: recording is synchronous and cheap, and each model's figures are written at most
// once per interval. The writer (Registry) owns one and says how a summary is written.

export interface MeasurementsOptions {
  /** a model's figures are written at most once per this many ms */
  intervalMs: number
  /** the last this-many samples per model make up its figures */
  window: number
  now: () => number
  log?: Logger
  /** write one model's figures; resolves false when the model is gone (its samples are then dropped) */
  write: (id: string, measured: Measured) => Promise<boolean>
}

interface Aggregate {
  samples: MeasurementSample[]
  next: number // ring index once full
  dirty: boolean
  lastWriteAt: number
  timer: NodeJS.Timeout | null
  flushing: Promise<void> | null
}

export class Measurements {
  private readonly opts: MeasurementsOptions
  private readonly aggregates = new Map<string, Aggregate>()
  private closing = false

  constructor (opts: MeasurementsOptions) {
    this.opts = opts
  }

  /** Note one request's outcome for a model (BAD_REQUEST on a malformed sample; ignored once closing). */
  record (id: string, sample: MeasurementSample): void {
    if (this.closing) return
    const s = parseOrThrow(measurementSample, sample, 'measurement', MeshError.BAD_REQUEST)
    let agg = this.aggregates.get(id)
    if (!agg) {
      agg = { samples: [], next: 0, dirty: false, lastWriteAt: -Infinity, timer: null, flushing: null }
      this.aggregates.set(id, agg)
    }
    if (agg.samples.length < this.opts.window) agg.samples.push(s)
    else { agg.samples[agg.next] = s; agg.next = (agg.next + 1) % this.opts.window }
    agg.dirty = true
    this.schedule(id, agg)
  }

  /** Drop a model's samples and anything scheduled for it (the model was removed). */
  forget (id: string): void {
    const agg = this.aggregates.get(id)
    if (agg?.timer) clearTimeout(agg.timer)
    this.aggregates.delete(id)
  }

  /** Write every pending summary now. */
  async flush (): Promise<void> {
    const pending: Promise<void>[] = []
    for (const [id, agg] of this.aggregates) {
      if (agg.timer) { clearTimeout(agg.timer); agg.timer = null }
      pending.push(agg.flushing ?? (agg.dirty ? this.write(id, agg, true) : Promise.resolve()))
    }
    await Promise.allSettled(pending)
  }

  /** Write what was measured but not yet written once, then schedule nothing more. */
  async close (): Promise<void> {
    this.closing = true
    const pending: Promise<void>[] = []
    for (const [id, agg] of this.aggregates) {
      if (agg.timer) clearTimeout(agg.timer)
      agg.timer = null
      if (agg.flushing) pending.push(agg.flushing)
      else if (agg.dirty) pending.push(this.write(id, agg, true))
    }
    await Promise.allSettled(pending)
  }

  private schedule (id: string, agg: Aggregate): void {
    if (agg.timer || agg.flushing) return // the running write reschedules when it ends
    const delay = Math.max(0, agg.lastWriteAt + this.opts.intervalMs - this.opts.now())
    agg.timer = setTimeout(() => {
      agg.timer = null
      void this.write(id, agg, false) // never rejects: a failed write is logged there
    }, delay)
    agg.timer.unref()
  }

  private write (id: string, agg: Aggregate, final: boolean): Promise<void> {
    agg.dirty = false
    agg.lastWriteAt = this.opts.now()
    const measured = summarise(agg.samples, agg.lastWriteAt)
    const run = this.opts.write(id, measured).then((exists) => {
      if (!exists) this.aggregates.delete(id)
    }).catch((err) => {
      if (!this.closing || final) this.opts.log?.warn({ err, model: id }, 'registry: writing measurements failed')
    }).finally(() => {
      agg.flushing = null
      if (agg.dirty && !this.closing && this.aggregates.get(id) === agg) this.schedule(id, agg)
    })
    agg.flushing = run
    return run
  }
}

function median (xs: number[]): number {
  if (xs.length === 0) return 0
  const s = [...xs].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2
}

function summarise (samples: MeasurementSample[], at: number): Measured {
  const ok = samples.filter((s) => s.ok)
  return {
    p50LatencyMs: Math.round(median(ok.map((s) => s.latencyMs))),
    ttftMs: Math.round(median(ok.map((s) => s.ttftMs))),
    errorRate: samples.length ? (samples.length - ok.length) / samples.length : 0,
    samples: samples.length,
    updatedAt: at
  }
}
