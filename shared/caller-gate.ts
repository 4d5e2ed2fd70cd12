import { MeshError } from './errors.ts'

// Logins and registrations relayed to auth, gated per caller by the service relaying them (the
// gateway per public key, the web per address): a caller has at most `maxOpen` in flight, and once
// auth has held the whole caller back (a RATE_LIMITED refusal with scope 'client') the relaying
// service refuses that caller itself until the wait is over. A flood from one caller then costs auth,
// and the real logins waiting on its password hashing, nothing.

interface Entry { open: number, until: number }

/** callers remembered at once; callers are chosen by strangers, so the map is bounded */
const MAX_CALLERS = 50_000

export class CallerGate {
  private readonly entries = new Map<string, Entry>()
  private readonly maxOpen: number
  private readonly refusal: string
  private readonly now: () => number

  constructor (maxOpen: number, refusal: string, now: () => number = Date.now) {
    this.maxOpen = maxOpen
    this.refusal = refusal
    this.now = now
  }

  get size (): number { return this.entries.size }

  async run<T> (caller: string, task: () => Promise<T>): Promise<T> {
    const now = this.now()
    let e = this.entries.get(caller)
    if (!e) {
      if (this.entries.size >= MAX_CALLERS) this.evict(now)
      e = { open: 0, until: 0 }
      this.entries.set(caller, e)
    }
    if (e.until > now) {
      const seconds = Math.ceil((e.until - now) / 1000)
      throw MeshError.RATE_LIMITED(`${this.refusal}; retry in ${seconds} s`, seconds, { scope: 'client' })
    }
    if (e.open >= this.maxOpen) throw MeshError.RATE_LIMITED(`${this.refusal}: ${this.maxOpen} already in progress`, 1, { scope: 'client' })
    e.open++
    try {
      return await task()
    } catch (err) {
      const d = (err as MeshError).details
      if ((err as MeshError).code === 'RATE_LIMITED' && d?.scope === 'client' && typeof d.retryAfterSeconds === 'number') {
        e.until = Math.max(e.until, this.now() + Math.min(d.retryAfterSeconds, 3600) * 1000)
      }
      throw err
    } finally {
      e.open--
      if (e.open === 0 && e.until <= this.now()) this.entries.delete(caller)
    }
  }

  private evict (now: number): void {
    for (const [caller, e] of this.entries) {
      if (this.entries.size < MAX_CALLERS) break
      if (e.open === 0 && e.until <= now) this.entries.delete(caller)
    }
    // every entry busy or held back: drop the oldest held-back ones rather than grow
    for (const [caller, e] of this.entries) {
      if (this.entries.size < MAX_CALLERS) break
      if (e.open === 0) this.entries.delete(caller)
    }
  }
}
