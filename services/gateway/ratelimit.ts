import { MeshError } from '../../shared/errors.ts'

// Per-key sliding-window limit (requests per hour). Exact within one gateway: the check and the record
// happen in one synchronous step, so 200 concurrent calls cannot all slip past `limit - 1`. A key's
// history is restored once from request_logs the first time this process sees it, so a restart does
// not hand out a fresh hour. (Limits shared exactly across several gateways are a later step.)

export interface LimitState { limit: number, used: number, remaining: number, resetsAt: number | null }

export class RateLimiter {
  private readonly windows = new Map<string, number[]>()
  private readonly loading = new Map<string, Promise<void>>()
  private readonly windowMs: number
  private readonly history: (keyId: string, since: Date) => Promise<number[]>
  private readonly now: () => number

  constructor (opts: { windowMs?: number, history?: (keyId: string, since: Date) => Promise<number[]>, now?: () => number } = {}) {
    this.windowMs = opts.windowMs ?? 3_600_000
    this.history = opts.history ?? (async () => [])
    this.now = opts.now ?? Date.now
  }

  private async ensureLoaded (keyId: string): Promise<void> {
    if (this.windows.has(keyId)) return
    let p = this.loading.get(keyId)
    if (!p) {
      p = this.history(keyId, new Date(this.now() - this.windowMs)).then((stamps) => {
        if (!this.windows.has(keyId)) this.windows.set(keyId, stamps.sort((a, b) => a - b))
      }).finally(() => this.loading.delete(keyId))
      this.loading.set(keyId, p)
    }
    await p
  }

  private prune (stamps: number[], now: number): void {
    const cutoff = now - this.windowMs
    let i = 0
    while (i < stamps.length && stamps[i]! <= cutoff) i++
    if (i > 0) stamps.splice(0, i)
  }

  /** Admit one request for `keyId` or throw RATE_LIMITED with the seconds until a slot frees. */
  async take (keyId: string, limit: number): Promise<LimitState> {
    await this.ensureLoaded(keyId)
    const now = this.now()
    const stamps = this.windows.get(keyId)!
    this.prune(stamps, now)
    if (stamps.length >= limit) {
      const retryAfterSeconds = Math.max(1, Math.ceil((stamps[stamps.length - limit]! + this.windowMs - now) / 1000))
      throw MeshError.RATE_LIMITED(`rate limit of ${limit} requests per hour reached; retry in ${retryAfterSeconds} s`, retryAfterSeconds, { limit })
    }
    stamps.push(now)
    return { limit, used: stamps.length, remaining: limit - stamps.length, resetsAt: stamps[0]! + this.windowMs }
  }

  async peek (keyId: string, limit: number): Promise<LimitState> {
    await this.ensureLoaded(keyId)
    const stamps = this.windows.get(keyId)!
    this.prune(stamps, this.now())
    return { limit, used: stamps.length, remaining: Math.max(0, limit - stamps.length), resetsAt: stamps.length ? stamps[0]! + this.windowMs : null }
  }

  /** Drop windows that have gone quiet, so memory follows active keys only. */
  sweep (): void {
    const now = this.now()
    for (const [k, stamps] of this.windows) {
      this.prune(stamps, now)
      if (stamps.length === 0) this.windows.delete(k)
    }
  }
}
