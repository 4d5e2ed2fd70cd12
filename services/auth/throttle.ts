import { MeshError } from '../../shared/errors.ts'

// Login and registration throttles. Each key (an account's email, a client) gets a free allowance of
// counted attempts; past it, every further one must wait twice as long as the one before, up to a cap.
// A key has at most `maxOpen` attempts in flight (attempts in flight count against the allowance too),
// so a burst of concurrent guesses is refused before more than one of them costs a password hash, and
// a flood on one account holds at most one of the few hashing slots. A key is forgotten once it has
// been quiet for `forgetMs`.

export interface BackoffPolicy {
  /** counted attempts allowed before backing off */
  free: number
  /** attempts in flight at once */
  maxOpen: number
  /** the first wait once the allowance is used up; it doubles with each further counted attempt */
  baseMs: number
  maxMs: number
  /** a key quiet this long starts afresh */
  forgetMs: number
}

/** How an attempt ended: `counted` against the key, `cleared` (the key starts afresh) or `void` (it never happened). */
export type Outcome = 'counted' | 'cleared' | 'void'

interface Entry { counted: number, open: number, blockedUntil: number, lastAt: number }

const MAX_KEYS = 50_000

export class Backoff {
  private readonly entries = new Map<string, Entry>()
  private readonly policy: BackoffPolicy
  private readonly refusal: string
  private readonly scope: 'account' | 'client'
  private readonly now: () => number

  /** `scope` travels with each refusal, so a relaying service knows the whole client is held back */
  constructor (policy: BackoffPolicy, refusal: string, scope: 'account' | 'client', now: () => number = Date.now) {
    this.policy = policy
    this.refusal = refusal
    this.scope = scope
    this.now = now
  }

  get size (): number { return this.entries.size }

  /** Start an attempt for `key`, or throw RATE_LIMITED (with retryAfterSeconds) if it must wait. */
  open (key: string): void {
    const now = this.now()
    let e = this.entries.get(key)
    if (e && e.open === 0 && now - e.lastAt > this.policy.forgetMs) {
      this.entries.delete(key)
      e = undefined
    }
    if (!e) {
      if (this.entries.size >= MAX_KEYS) this.evict(now)
      e = { counted: 0, open: 0, blockedUntil: 0, lastAt: now }
      this.entries.set(key, e)
    }
    const { free, maxOpen } = this.policy
    // backing off: the rest of the wait; busy: as long as one more counted attempt would cost
    const waitMs = e.blockedUntil > now
      ? e.blockedUntil - now
      : e.open >= maxOpen || (e.open > 0 && e.counted + e.open >= free) ? this.delay(Math.max(0, e.counted + e.open - free)) : 0
    if (waitMs > 0) throw MeshError.RATE_LIMITED(`${this.refusal}; retry in ${Math.ceil(waitMs / 1000)} s`, Math.ceil(waitMs / 1000), { scope: this.scope })
    e.open++
  }

  close (key: string, outcome: Outcome): void {
    const e = this.entries.get(key)
    if (!e) return
    e.open = Math.max(0, e.open - 1)
    if (outcome === 'cleared') {
      e.counted = 0
      e.blockedUntil = 0
    } else if (outcome === 'counted') {
      const now = this.now()
      e.counted++
      e.lastAt = now
      if (e.counted >= this.policy.free) e.blockedUntil = now + this.delay(e.counted - this.policy.free)
    }
    if (e.open === 0 && e.counted === 0) this.entries.delete(key)
  }

  private delay (step: number): number {
    return Math.min(this.policy.maxMs, this.policy.baseMs * 2 ** Math.min(step, 30))
  }

  /** Keys are chosen by strangers: past the cap, drop the quiet and forgotten ones, then the oldest idle. */
  private evict (now: number): void {
    for (const [key, e] of this.entries) {
      if (e.open === 0 && (e.counted === 0 || now - e.lastAt > this.policy.forgetMs)) this.entries.delete(key)
    }
    for (const [key, e] of this.entries) {
      if (this.entries.size < MAX_KEYS) break
      if (e.open === 0) this.entries.delete(key)
    }
  }
}

const MINUTE = 60_000

/** The client a mesh service relays a call for, named under that service (`source` is its word, not the client's). */
export function relayedClient (callerKey: string, source: string | undefined): string | null {
  return source === undefined ? null : `${callerKey}/${source}`
}

/**
 * The three throttles auth applies: failed logins per account and per client, registrations per
 * client. A client is named by the mesh service that relays the call (the gateway passes the caller's
 * public key, the web the client's address); a call that names none is held only by the account
 * throttle and the hashing gate.
 */
export class AuthThrottle {
  readonly accounts = new Backoff({ free: 5, maxOpen: 1, baseMs: 2000, maxMs: 15 * MINUTE, forgetMs: 15 * MINUTE }, 'too many login attempts for this account', 'account')
  readonly loginClients = new Backoff({ free: 10, maxOpen: 2, baseMs: 2000, maxMs: 15 * MINUTE, forgetMs: 15 * MINUTE }, 'too many login attempts from this client', 'client')
  readonly signupClients = new Backoff({ free: 5, maxOpen: 1, baseMs: 10_000, maxMs: 60 * MINUTE, forgetMs: 60 * MINUTE }, 'too many registrations from this client', 'client')

  /**
   * Run a credential check under the login throttles. `check` resolves to the user, or null for a wrong
   * password; a refusal from the hashing gate (or any other error) counts against nobody.
   */
  async login<T> (email: string, client: string | null, check: () => Promise<T | null>): Promise<T | null> {
    const account = email.trim().toLowerCase()
    this.accounts.open(account)
    try {
      if (client !== null) this.loginClients.open(client)
    } catch (err) {
      this.accounts.close(account, 'void')
      throw err
    }
    let outcome: Outcome = 'void'
    try {
      const user = await check()
      outcome = user === null ? 'counted' : 'cleared'
      return user
    } finally {
      this.accounts.close(account, outcome)
      // a success does not wipe the client's failures: owning one account must not reset guesses at others
      if (client !== null) this.loginClients.close(client, outcome === 'cleared' ? 'void' : outcome)
    }
  }

  /** Run a registration under the client's allowance; every attempt counts, whatever its outcome. */
  async register<T> (client: string | null, run: () => Promise<T>): Promise<T> {
    if (client === null) return run()
    this.signupClients.open(client)
    let outcome: Outcome = 'counted'
    try {
      return await run()
    } catch (err) {
      // refused by the hashing gate: the attempt never happened
      if ((err as MeshError).code === 'RATE_LIMITED') outcome = 'void'
      throw err
    } finally {
      this.signupClients.close(client, outcome)
    }
  }
}
