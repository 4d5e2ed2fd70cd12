import { MeshError } from '../../shared/errors.ts'

// How often one worker key may register: `limit` registrations per `windowMs` window. A worker
// registers on each (re)connect and when its model list changes, far below the limit; a peer that
// re-registers in a loop is refused (RATE_LIMITED, with retryAfterSeconds) before any work is done.
// Keys are free, so the table of keys is bounded too: past `maxKeys`, ended windows go first, then
// the oldest.

export interface RegistrationRateOptions {
  limit?: number
  windowMs?: number
  maxKeys?: number
  now?: () => number
}

interface Window { start: number, count: number }

export class RegistrationRate {
  private readonly limit: number
  private readonly windowMs: number
  private readonly maxKeys: number
  private readonly now: () => number
  private readonly windows = new Map<string, Window>()

  constructor (opts: RegistrationRateOptions = {}) {
    this.limit = opts.limit ?? 10
    this.windowMs = opts.windowMs ?? 60_000
    this.maxKeys = opts.maxKeys ?? 50_000
    this.now = opts.now ?? Date.now
  }

  /** Count one registration for `key`, or throw RATE_LIMITED. */
  take (key: string): void {
    const now = this.now()
    let w = this.windows.get(key)
    if (w && now - w.start >= this.windowMs) {
      this.windows.delete(key)
      w = undefined
    }
    if (!w) {
      if (this.windows.size >= this.maxKeys) this.evict(now)
      w = { start: now, count: 0 }
      this.windows.set(key, w)
    }
    if (w.count >= this.limit) {
      const wait = Math.max(1, Math.ceil((w.start + this.windowMs - now) / 1000))
      throw MeshError.RATE_LIMITED(`this worker registered ${this.limit} times in ${Math.round(this.windowMs / 1000)} s; retry in ${wait} s`, wait)
    }
    w.count++
  }

  private evict (now: number): void {
    for (const [key, w] of this.windows) if (now - w.start >= this.windowMs) this.windows.delete(key)
    for (const key of this.windows.keys()) {
      if (this.windows.size < this.maxKeys) break
      this.windows.delete(key)
    }
  }
}
