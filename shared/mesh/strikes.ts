import type { Logger } from '../log.ts'

// Peers that keep presenting bad credentials. Every call carrying a made-up API key or session token
// still costs the server its decoding (a large prompt: milliseconds of CPU), so a stranger whose
// credentials fail `max` times within `windowMs` is cut off: its connections are closed and its
// public key is refused at the handshake for `banMs`. Mesh members are never counted: the web relays
// many users' keys over one connection.

export interface StrikeLimits {
  /** failed credentials a peer may present within the window */
  max: number
  windowMs: number
  /** how long a peer over the limit is refused */
  banMs: number
}

interface Entry { count: number, windowEnds: number, bannedUntil: number }

/** peers remembered at once: keys are chosen by strangers, so the map is bounded */
const MAX_PEERS = 50_000

export class PeerStrikes {
  private readonly entries = new Map<string, Entry>()
  private readonly limits: StrikeLimits
  private readonly exempt: (remoteKey: string) => boolean
  private readonly log?: Logger
  private readonly now: () => number

  constructor (limits: StrikeLimits, exempt: (remoteKey: string) => boolean, log?: Logger, now: () => number = Date.now) {
    this.limits = limits
    this.exempt = exempt
    this.log = log
    this.now = now
  }

  get size (): number { return this.entries.size }

  /** Count one failed credential; true when the peer is now over the limit (and refused until the ban ends). */
  strike (remoteKey: string): boolean {
    if (this.exempt(remoteKey)) return false
    const now = this.now()
    let e = this.entries.get(remoteKey)
    // a new window once the last one has passed, or once a ban has run out: a peer let back in starts afresh
    if (!e || (e.bannedUntil === 0 ? e.windowEnds <= now : e.bannedUntil <= now)) {
      if (!e && this.entries.size >= MAX_PEERS) this.evict(now)
      e = { count: 0, windowEnds: now + this.limits.windowMs, bannedUntil: 0 }
      this.entries.set(remoteKey, e)
    }
    e.count++
    if (e.count < this.limits.max || e.bannedUntil > now) return e.bannedUntil > now
    e.bannedUntil = now + this.limits.banMs
    this.log?.warn({ peer: remoteKey.slice(0, 16), failures: e.count, banSeconds: Math.round(this.limits.banMs / 1000) }, 'peer refused: too many failed credentials')
    return true
  }

  /** Whether a peer is refused now. */
  banned (remoteKey: string): boolean {
    return this.secondsLeft(remoteKey) > 0
  }

  /** Whole seconds until a peer's ban ends (0: not banned). */
  secondsLeft (remoteKey: string): number {
    const e = this.entries.get(remoteKey)
    const left = e ? e.bannedUntil - this.now() : 0
    return left > 0 ? Math.ceil(left / 1000) : 0
  }

  /** Make room: peers whose window and ban are over go, then the oldest, a tenth of the map at a time. */
  private evict (now: number): void {
    for (const [k, e] of this.entries) if (e.windowEnds <= now && e.bannedUntil <= now) this.entries.delete(k)
    const keep = MAX_PEERS - MAX_PEERS / 10
    for (const k of this.entries.keys()) {
      if (this.entries.size <= keep) break
      this.entries.delete(k)
    }
  }
}
