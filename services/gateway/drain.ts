import { MeshError } from '../../shared/errors.ts'
import type { Logger } from '../../shared/log.ts'

// The gateway's door for requests: shut until the gateway has started (a caller then tries another
// gateway, UNAVAILABLE; or, while the database is out of reach, DATABASE_UNAVAILABLE: a gateway that
// starts during an outage holds no allowance to admit anything with), open while it serves, and on
// shutdown shut again (SHUTTING_DOWN) while the requests already let in finish, for at most the
// drain time.

export class RequestDoor {
  private started = false
  private draining = false
  private running = 0
  private drained: (() => void) | null = null
  private readonly log: Logger
  private readonly databaseUp: () => Promise<boolean>

  /** `databaseUp`: whether PostgreSQL answers (none: requests do not need it) */
  constructor (log: Logger, databaseUp: () => Promise<boolean> = async () => true) {
    this.log = log
    this.databaseUp = databaseUp
  }

  /** Requests are served from now on. */
  open (): void { this.started = true }

  /** Run one request unless the gateway is starting or draining; a drain waits for the requests let in. */
  async run<T> (fn: () => Promise<T>): Promise<T> {
    if (this.draining) throw MeshError.SHUTTING_DOWN()
    if (!this.started) {
      const up = await this.databaseUp()
      if (!up) throw MeshError.DATABASE_UNAVAILABLE('the database is unavailable and this gateway is starting; try again shortly')
      if (!this.started) throw MeshError.UNAVAILABLE('the gateway is starting')
      if (this.draining) throw MeshError.SHUTTING_DOWN()
    }
    this.running++
    try { return await fn() } finally { if (--this.running === 0) this.drained?.() }
  }

  /** Refuse new requests and wait for the running ones (at most timeoutMs). */
  async drain (timeoutMs: number): Promise<void> {
    this.draining = true
    if (this.running === 0) return
    this.log.info({ running: this.running, limitMs: timeoutMs }, 'draining: waiting for running requests')
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs)
      this.drained = () => { clearTimeout(timer); resolve() }
    })
    if (this.running > 0) this.log.warn({ running: this.running }, 'drain time is up; stopping with requests still running')
  }
}
