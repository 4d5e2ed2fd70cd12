import { MeshError } from '../../shared/errors.ts'
import type { Logger } from '../../shared/log.ts'

// Admission without a database round trip. For every counter a request is held against (and for
// its user's credits, named 'credit:<user id>'), this gateway leases a slice from PostgreSQL ahead
// of demand (lease-store.ts) and admits against it here: a request that fits every slice takes its
// worst case out of them synchronously. A request that does not fit waits for the next round: one
// database call for every request waiting then, asking per counter for what they lack plus about a
// second of demand. A slice keeps at least a few requests' worth ahead of demand (so a short database
// outage does not stop a key in use), and one running low is topped up in the background before it
// runs out.
//
// Exactness: the slices of all gateways together never exceed a limit, because the database grants
// them under the limit. Near a limit's end the database grants exactly what a batch needs ("exact":
// no slack in any slice) and recalls the other gateways' unused slices; a gateway in exact mode
// gives back what its requests leave unused with their records instead of keeping it. A request is
// refused only when the database has no room for it, this gateway's own finished requests have
// reached the database (`flush`), and no other live gateway still owes an answer to a recall; so
// two gateways sharing a limit admit exactly the limit, as one database would.
// A slice not used for `idleMs` goes back, so unused allowance returns within a lease period.

/** One counter (or the credits) a request holds its worst case on. */
export interface Hold { name: string, amount: number, cap: number | null, expires: string | null, code: string }

export interface LeaseAsk { name: string, cap: number, expires: string | null, need: number, want: number, unit: number }
export interface LeaseGrant { name: string, granted: number, cap: number, used: number, expires: string | null, exact: boolean, waiting: boolean }
export type AdmitResult = { ok: true } | { ok: false, code: string, counter: string, cap: number, used: number, need?: number, expires?: string | null }

export interface LeaseStore {
  lease (asks: LeaseAsk[]): Promise<LeaseGrant[]>
  giveBack (items: Array<{ name: string, amount: number }>, answer: boolean): Promise<void>
  renew (): Promise<Array<{ name: string, recalled: boolean }>>
}

interface Lease {
  avail: number
  exact: boolean
  lastUse: number
  /** amount taken in the current second, and in the last whole one (the demand estimate) */
  bucket: number
  bucketAt: number
  rate: number
  recalledAt: number
  grantedAt: number
  /** what the last request held on it: a top-up asks with these */
  cap: number
  expires: string | null
  unit: number
}

interface Waiter { holds: Hold[], resolve: (r: AdmitResult) => void, reject: (e: unknown) => void, deadline: number, flushed: boolean }

export interface LeasesOptions {
  log?: Logger
  /** a slice unused this long goes back */
  idleMs?: number
  /** how long a refusal may wait for other gateways to answer a recall */
  recallWaitMs?: number
  /** resolves when this gateway's finished requests so far are in the database; rejects, rather than waits, while it is out of reach */
  flush: () => Promise<void>
}

const OK: AdmitResult = { ok: true }
const OK_NOW = Promise.resolve(OK)
/** a gateway that could not renew its leases for this long stops admitting from them */
const RENEW_GRACE_MS = 15_000
/** how long a request waiting to be refused waits for this gateway's records to reach the database */
const FLUSH_WAIT_MS = 5000
/** a slice in use keeps at least this many requests (of the size last taken) ahead of demand */
const RESERVE_REQUESTS = 4
/** after a lease call failed, background top-ups wait this long (requests that need one still try) */
const TOP_UP_BACKOFF_MS = 1000

/** what a slice keeps ahead of demand: a second of it, and never less than a few requests */
const reserve = (l: Lease) => Math.max(l.rate, RESERVE_REQUESTS * l.unit)

function bounded (p: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<void>((_resolve, reject) => {
    timer = setTimeout(() => reject(MeshError.DATABASE_UNAVAILABLE('usage accounting cannot reach the database; try again shortly')), ms)
  })
  return Promise.race([p, late]).finally(() => clearTimeout(timer))
}

export class Leases {
  private readonly map = new Map<string, Lease>()
  private waiting: Waiter[] = []
  private readonly topUp = new Set<string>()
  private running = false
  private closed = false
  private lastRenew = Date.now()
  private leaseFailedAt = 0
  private readonly idleMs: number
  private readonly recallWaitMs: number

  constructor (private readonly store: LeaseStore, private readonly opts: LeasesOptions) {
    this.idleMs = opts.idleMs ?? 2000
    this.recallWaitMs = opts.recallWaitMs ?? 2000
  }

  /** Take `holds` (sorted: counters by name, then credits) from the slices, leasing more if needed. */
  admit (holds: Hold[]): Promise<AdmitResult> {
    if (this.closed) return Promise.reject(MeshError.SHUTTING_DOWN())
    if (this.waiting.length === 0 && this.fits(holds)) {
      this.take(holds)
      return OK_NOW
    }
    return new Promise((resolve, reject) => {
      this.waiting.push({ holds, resolve, reject, deadline: Date.now() + this.recallWaitMs, flushed: false })
      this.kick()
    })
  }

  /** What a finished request left unused goes back into the slice; false: give it back with the record. */
  returnUnused (name: string, amount: number): boolean {
    const l = this.map.get(name)
    if (!l || l.exact) return false
    l.avail += amount
    return true
  }

  /** The unused part of this gateway's slice (reads report it as free, not as held). */
  unused (name: string): number { return this.map.get(name)?.avail ?? 0 }

  /** Another gateway needs what is left of a limit: give back the unused slice and admit exactly from now on. */
  recall (name: string): void {
    const l = this.map.get(name)
    const amount = l?.avail ?? 0
    if (l) { l.avail = 0; l.exact = true; l.recalledAt = Date.now() }
    this.store.giveBack([{ name, amount }], true).catch((err) => {
      if (l) l.avail += amount // still ours: the database did not take it back
      this.opts.log?.warn({ err: (err as Error).message }, 'could not answer a lease recall')
    })
  }

  /** Every second: give back idle slices, renew the rest, and answer recalls a notification missed. */
  async tick (now = Date.now()): Promise<void> {
    const back: Array<{ name: string, amount: number }> = []
    for (const [name, l] of this.map) {
      if (l.avail > 0 && now - l.lastUse > this.idleMs) { back.push({ name, amount: l.avail }); l.avail = 0 }
      else if (l.avail === 0 && now - l.lastUse > 4 * this.idleMs) this.map.delete(name)
    }
    if (back.length > 0) await this.giveBack(back)
    const started = Date.now()
    const held = await this.store.renew()
    this.lastRenew = started
    const present = new Set(held.map((r) => r.name))
    for (const r of held) if (r.recalled) this.recall(r.name)
    for (const [name, l] of this.map) {
      // released by a sweeper while this gateway could not reach the database: it is no longer ours
      if (l.avail > 0 && !present.has(name) && l.grantedAt < started) {
        this.opts.log?.warn({ lease: name.split(':').slice(0, 2).join(':') }, 'a lease was released while unrenewed; dropping its slice')
        l.avail = 0
      }
    }
  }

  /** Give back every unused slice (the gateway is stopping). */
  async close (): Promise<void> {
    this.closed = true
    for (const w of this.waiting.splice(0)) w.reject(MeshError.SHUTTING_DOWN())
    const back = [...this.map].filter(([, l]) => l.avail > 0).map(([name, l]) => ({ name, amount: l.avail }))
    for (const l of this.map.values()) l.avail = 0
    if (back.length > 0) await this.giveBack(back)
  }

  private async giveBack (items: Array<{ name: string, amount: number }>): Promise<void> {
    try {
      await this.store.giveBack(items, false)
    } catch (err) {
      // not given back: keep it, it is still this gateway's in the database
      for (const i of items) { const l = this.map.get(i.name); if (l) l.avail += i.amount }
      this.opts.log?.warn({ err: (err as Error).message }, 'could not give back unused lease slices')
    }
  }

  private fits (holds: Hold[]): boolean {
    if (Date.now() - this.lastRenew > RENEW_GRACE_MS) return false
    for (const h of holds) {
      const l = this.map.get(h.name)
      if (!l || l.exact || l.avail < h.amount) return false
    }
    return true
  }

  private take (holds: Hold[]): void {
    const now = Date.now()
    for (const h of holds) {
      const l = this.map.get(h.name)!
      l.avail -= h.amount
      l.unit = h.amount
      this.use(l, h.amount, now)
      // top up before it runs out, so steady load never waits for the database
      if (!l.exact && l.avail < reserve(l) / 2 && !this.topUp.has(h.name) && now - this.leaseFailedAt > TOP_UP_BACKOFF_MS) { this.topUp.add(h.name); this.kick() }
    }
  }

  private use (l: Lease, amount: number, now: number): void {
    l.lastUse = now
    if (now - l.bucketAt >= 1000) { l.rate = now - l.bucketAt < 2000 ? l.bucket : 0; l.bucket = 0; l.bucketAt = now }
    l.bucket += amount
  }

  private lease (name: string): Lease {
    let l = this.map.get(name)
    if (!l) {
      const now = Date.now()
      l = { avail: 0, exact: false, lastUse: now, bucket: 0, bucketAt: now, rate: 0, recalledAt: 0, grantedAt: 0, cap: 0, expires: null, unit: 1 }
      this.map.set(name, l)
    }
    return l
  }

  private kick (): void {
    if (this.running || this.closed) return
    this.running = true
    queueMicrotask(() => { void this.rounds() })
  }

  private async rounds (): Promise<void> {
    try {
      while (!this.closed && (this.waiting.length > 0 || this.topUp.size > 0)) await this.round()
    } finally {
      this.running = false
    }
  }

  /**
   * One database call for every request waiting now and every slice running low. What the waiting
   * requests need is set aside from the slices before the call, so requests admitted meanwhile
   * (from what is left) cannot take it.
   */
  private async round (): Promise<void> {
    const batch = this.waiting
    this.waiting = []
    const started = Date.now()
    const need = new Map<string, { total: number, unit: number, hold: Hold }>()
    for (const w of batch) {
      for (const h of w.holds) {
        const n = need.get(h.name)
        if (n) { n.total += h.amount; n.unit = Math.max(n.unit, h.amount) } else need.set(h.name, { total: h.amount, unit: h.amount, hold: h })
      }
    }
    const pool = new Map<string, number>()
    const asks: LeaseAsk[] = []
    for (const [name, n] of need) {
      const l = this.lease(name)
      l.cap = n.hold.cap ?? 0
      l.expires = n.hold.expires
      l.unit = n.unit
      const have = Math.min(l.avail, n.total)
      l.avail -= have
      pool.set(name, have)
      const short = n.total - have
      if (short > 0) asks.push({ name, cap: n.hold.cap ?? 0, expires: n.hold.expires, need: short, want: short + Math.max(short, reserve(l)), unit: n.unit })
    }
    for (const name of this.topUp) {
      const l = this.map.get(name)
      if (l && !need.has(name) && !l.exact && l.avail < reserve(l)) asks.push({ name, cap: l.cap, expires: l.expires, need: 0, want: reserve(l), unit: l.unit })
    }
    this.topUp.clear()
    const grants = new Map<string, LeaseGrant>()
    if (asks.length > 0) {
      asks.sort(lockOrder)
      try {
        for (const g of await this.store.lease(asks)) grants.set(g.name, g)
      } catch (err) {
        this.leaseFailedAt = Date.now()
        for (const [name, have] of pool) this.lease(name).avail += have
        this.opts.log?.error({ err: (err as Error).message, requests: batch.length }, 'could not lease from the database')
        for (const w of batch) w.reject(MeshError.DATABASE_UNAVAILABLE('usage accounting cannot reach the database, and this gateway holds no allowance for this request; try again shortly'))
        return
      }
      for (const g of grants.values()) {
        const l = this.lease(g.name)
        l.exact = g.exact || l.recalledAt >= started
        l.grantedAt = Date.now()
        if (pool.has(g.name)) pool.set(g.name, pool.get(g.name)! + g.granted)
        else l.avail += g.granted // a top-up
      }
    }
    const retry: Waiter[] = []
    const now = Date.now()
    for (const w of batch) {
      const short = w.holds.find((h) => pool.get(h.name)! < h.amount)
      if (!short) {
        for (const h of w.holds) { pool.set(h.name, pool.get(h.name)! - h.amount); this.use(this.lease(h.name), h.amount, now) }
        w.resolve(OK)
        continue
      }
      const g = grants.get(short.name)
      if ((!w.flushed || g?.waiting) && now < w.deadline) retry.push(w)
      else w.resolve(refusal(short, g))
    }
    // what the batch left: back into the slice, or near the end straight back to the database
    const back: Array<{ name: string, amount: number }> = []
    for (const [name, left] of pool) {
      const l = this.lease(name)
      if (l.exact && left > 0) back.push({ name, amount: left })
      else l.avail += left
    }
    if (back.length > 0) await this.giveBack(back)
    if (retry.length > 0) this.retryLater(retry)
  }

  /** Before a refusal: once after this gateway's own records reached the database, then while others owe a recall. */
  private retryLater (retry: Waiter[]): void {
    const flush = retry.some((w) => !w.flushed)
    for (const w of retry) w.flushed = true
    // a flush that cannot finish (the database went out since the lease call) refuses rather than hangs
    const wait = flush ? bounded(this.opts.flush(), FLUSH_WAIT_MS) : new Promise((resolve) => setTimeout(resolve, 25))
    wait.then(() => {
      this.waiting.unshift(...retry)
      this.kick()
    }, (err) => {
      const refusal = err instanceof MeshError ? err : MeshError.DATABASE_UNAVAILABLE('usage accounting cannot reach the database; try again shortly')
      for (const w of retry) w.reject(refusal)
    })
  }
}

/** counters by name (C collation), then credits: the database's lock order */
function lockOrder (a: { name: string }, b: { name: string }): number {
  const ca = a.name.startsWith('credit:')
  const cb = b.name.startsWith('credit:')
  if (ca !== cb) return ca ? 1 : -1
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0
}

export function sortHolds (holds: Hold[]): Hold[] {
  return holds.sort(lockOrder)
}

function refusal (h: Hold, g: LeaseGrant | undefined): AdmitResult {
  const cap = g?.cap ?? h.cap ?? 0
  const used = g?.used ?? cap
  if (h.name.startsWith('credit:')) return { ok: false, code: 'INSUFFICIENT_CREDITS', counter: 'credits', cap, used, need: h.amount }
  return { ok: false, code: h.code, counter: h.name, cap, used, expires: g?.expires ?? h.expires }
}
