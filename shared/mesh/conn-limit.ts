import { z } from 'zod'
import type ProtomuxRPC from 'protomux-rpc'
import { loadConfig, positiveInt } from '../config.ts'
import type { Logger } from '../log.ts'
import type { StrikeLimits } from './strikes.ts'

// Caps on the connections an RPC server holds: per remote public key and in all. Anyone on the DHT can
// dial a public service, and each idle connection costs memory, so a stranger who opens hundreds must
// be turned away while other peers still get in. Mesh members are not counted and never refused.

export interface ConnectionLimits {
  /** connections one remote public key may hold at once */
  perPeer: number
  /** connections from non-members, all keys together */
  total: number
  /** a stranger presenting bad credentials over and over is refused for a while (strikes.ts) */
  authFailures: StrikeLimits
}

const schema = z.object({
  HYPERINFER_MAX_CONNECTIONS_PER_PEER: positiveInt.default(16),
  HYPERINFER_MAX_CONNECTIONS: positiveInt.default(1024),
  HYPERINFER_MAX_AUTH_FAILURES_PER_MINUTE: positiveInt.default(30),
  HYPERINFER_AUTH_FAILURE_BAN_SECONDS: positiveInt.default(60)
})

export function connectionLimits (env: NodeJS.ProcessEnv = process.env): ConnectionLimits {
  const cfg = loadConfig(schema, env)
  return {
    perPeer: cfg.HYPERINFER_MAX_CONNECTIONS_PER_PEER,
    total: cfg.HYPERINFER_MAX_CONNECTIONS,
    authFailures: { max: cfg.HYPERINFER_MAX_AUTH_FAILURES_PER_MINUTE, windowMs: 60_000, banMs: cfg.HYPERINFER_AUTH_FAILURE_BAN_SECONDS * 1000 }
  }
}

const WARN_EVERY_MS = 60_000

export class ConnectionLimiter {
  private readonly limits: ConnectionLimits
  private readonly exempt: (remoteKey: string) => boolean
  private readonly log?: Logger
  private readonly byKey = new Map<string, number>()
  private total = 0
  private refused = 0
  private warnedAt = 0

  constructor (limits: ConnectionLimits, exempt: (remoteKey: string) => boolean, log?: Logger) {
    this.limits = limits
    this.exempt = exempt
    this.log = log
  }

  /** Connections counted now, for one key or in all. */
  count (remoteKey?: string): number {
    return remoteKey === undefined ? this.total : this.byKey.get(remoteKey) ?? 0
  }

  /** The server's firewall: refuse a handshake that would go over a cap before any stream is built. */
  refuse (remoteKey: string): boolean {
    if (this.exempt(remoteKey) || !this.full(remoteKey)) return false
    this.noteRefusal(remoteKey)
    return true
  }

  /**
   * A connection the server accepted: counted until it closes, or destroyed at once when a cap is
   * reached (handshakes that passed the firewall together can overshoot it). Returns whether it stays.
   */
  admit (channel: ProtomuxRPC): boolean {
    const key = channel.stream?.remotePublicKey?.toString('hex') ?? ''
    if (this.exempt(key)) return true
    if (this.full(key)) {
      this.noteRefusal(key)
      channel.destroy()
      return false
    }
    this.byKey.set(key, (this.byKey.get(key) ?? 0) + 1)
    this.total++
    channel.once('close', () => {
      this.total--
      const n = (this.byKey.get(key) ?? 1) - 1
      if (n > 0) this.byKey.set(key, n)
      else this.byKey.delete(key)
    })
    return true
  }

  private full (key: string): boolean {
    return this.total >= this.limits.total || (this.byKey.get(key) ?? 0) >= this.limits.perPeer
  }

  private noteRefusal (key: string): void {
    this.refused++
    const now = Date.now()
    if (now - this.warnedAt < WARN_EVERY_MS) return // one line a minute, however hard the flood
    this.warnedAt = now
    this.log?.warn({ peer: key.slice(0, 16), refused: this.refused, total: this.total, limits: this.limits }, 'refused connections over the cap')
    this.refused = 0
  }
}
