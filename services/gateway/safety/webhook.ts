import crypto from 'node:crypto'
import type { Logger } from '../../../shared/log.ts'

// The operator's webhook for anomaly alerts: each alert is POSTed as JSON (the key's id, its
// owner's id, the score and the signals that made it; never a key, a hash or a prompt). With a
// secret configured, the body is signed: `x-hyperinfer-timestamp` (unix seconds) and
// `x-hyperinfer-signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`, so the receiver can
// check where it came from and refuse replays. Delivery is bounded: each attempt times out, a
// failed one (network error, 429 or 5xx) is retried a few times with a doubling pause, and at most
// MAX_PENDING alerts are in delivery at once (more are dropped, and said so in the log).

const MAX_PENDING = 16

/** the receiver as logs name it: its origin only (a path or query may carry a token) */
function origin (url: string): string {
  try { return new URL(url).origin } catch { return '[unparseable url]' }
}

export interface WebhookOptions {
  url: string
  /** signs each body when given */
  secret: string | null
  timeoutMs: number
  attempts: number
  /** the pause before the first retry, doubled for each next one */
  backoffMs?: number
  log: Logger
}

export function signature (secret: string, timestamp: string, body: string): string {
  return 'sha256=' + crypto.createHmac('sha256', secret).update(timestamp + '.' + body).digest('hex')
}

export class AlertWebhook {
  private readonly opts: WebhookOptions
  private pending = 0

  constructor (opts: WebhookOptions) {
    this.opts = opts
  }

  /** Deliver one alert; resolves whether the receiver took it (never rejects). */
  async send (payload: Record<string, unknown>): Promise<boolean> {
    if (this.pending >= MAX_PENDING) {
      this.opts.log.warn({ pending: this.pending }, 'anomaly webhook is not keeping up; alert not delivered')
      return false
    }
    this.pending++
    try {
      return await this.deliver(JSON.stringify(payload))
    } finally {
      this.pending--
    }
  }

  private async deliver (body: string): Promise<boolean> {
    const { url, secret, timeoutMs, attempts, log } = this.opts
    let pause = this.opts.backoffMs ?? 1000
    for (let attempt = 1; attempt <= attempts; attempt++) {
      const timestamp = String(Math.floor(Date.now() / 1000))
      const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': 'hyperinfer-gateway' }
      if (secret) Object.assign(headers, { 'x-hyperinfer-timestamp': timestamp, 'x-hyperinfer-signature': signature(secret, timestamp, body) })
      let retry = true
      try {
        const res = await fetch(url, { method: 'POST', headers, body, signal: AbortSignal.timeout(timeoutMs), redirect: 'manual' })
        await res.body?.cancel()
        if (res.ok) return true
        retry = res.status === 429 || res.status >= 500
        log.warn({ url: origin(url), status: res.status, attempt }, 'anomaly webhook refused the alert')
      } catch (err) {
        log.warn({ url: origin(url), err: (err as Error).message, attempt }, 'anomaly webhook unreachable')
      }
      if (!retry || attempt === attempts) break
      await new Promise((resolve) => setTimeout(resolve, pause))
      pause *= 2
    }
    return false
  }
}
