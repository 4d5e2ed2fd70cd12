import type { WorkerStatus } from '../../services/inference/status.ts'
import { printJson } from '../output.ts'

// What the user sees of a running worker: its status messages turned into terminal lines. The first
// registration is one line on stdout (or one JSON object with --json); later registrations, model
// changes and refusals follow as they come.

/** a public key as the terminal shows it: its first 16 hex characters */
export const short = (key: string) => `${key.slice(0, 16)}…`

export interface ReportOptions {
  name: string
  backend: string
  /** the models asked for with --models */
  models: string[]
  gateways: string[]
  json: boolean
  /** a line for stderr (secrets redacted) */
  say (line: string): void
}

export class WorkerReport {
  workerKey = ''
  /** the user asked it to stop: no more nagging about connections */
  stopping = false
  /** it said it drained and closed */
  stopped = false
  private draining = false
  private served: string[] = []
  private reported = false
  private readonly gateways: string[]
  private readonly registered = new Set<string>()
  private readonly reportedGateways = new Set<string>()
  private readonly refused = new Map<string, string>()
  // gateways that recorded this worker as pending (no token): no traffic until an operator approves it
  private readonly pending = new Set<string>()
  private readonly opts: ReportOptions

  constructor (opts: ReportOptions) {
    this.opts = opts
    this.gateways = [...opts.gateways]
  }

  get registeredAnywhere (): boolean { return this.registered.size > 0 }
  get quiet (): boolean { return this.stopping || this.draining }

  on (s: WorkerStatus): void {
    switch (s.type) {
      case 'ready': this.workerKey = s.publicKey; this.served = s.models; this.announce(); break
      // gateways found on the network topic join the list this report covers
      case 'joining': if (!this.gateways.includes(s.gateway)) this.gateways.push(s.gateway); break
      case 'registered':
        this.refused.delete(s.gateway)
        if (s.approval === 'pending') this.pending.add(s.gateway)
        else this.pending.delete(s.gateway)
        if (this.reportedGateways.has(s.gateway) && !this.quiet) this.opts.say(`hyperinfer: reconnected to gateway ${short(s.gateway)} and registered again`)
        this.registered.add(s.gateway)
        this.announce()
        break
      case 'registration-failed': {
        if (this.refused.get(s.gateway) === s.code) break
        this.refused.set(s.gateway, s.code)
        const hint = s.code === 'FORBIDDEN' ? ' — the worker token is missing or wrong (see `hyperinfer worker-token` on the mesh machine)' : ''
        this.opts.say(`hyperinfer: gateway ${short(s.gateway)} refused the registration [${s.code}]${hint}; retrying`)
        break
      }
      case 'models':
        this.served = s.models
        if (!this.opts.json) process.stdout.write(`worker ${short(this.workerKey)} now serves ${this.served.join(',') || '(no models)'}\n`)
        break
      // the worker's own log line says so; the next 'registered' reports the reconnect
      case 'gateway-lost': break
      case 'draining': this.draining = true; break
      case 'stopped': this.stopped = true; break
    }
  }

  private announce (): void {
    if (!this.workerKey) return
    const { json, say, backend, models: asked } = this.opts
    for (const gw of this.gateways) {
      if (!this.registered.has(gw) || this.reportedGateways.has(gw)) continue
      this.reportedGateways.add(gw)
      const models = this.served.length ? this.served.join(',') : '(no models yet)'
      const note = this.pending.has(gw) ? ' (pending approval: it gets no traffic until an operator approves it)' : ''
      if (!this.reported) {
        this.reported = true
        if (json) printJson({ worker: this.workerKey, name: this.opts.name, backend, models: this.served, gateway: gw, registered: true, ...(this.pending.has(gw) ? { approval: 'pending' } : {}) })
        else process.stdout.write(`worker ${short(this.workerKey)} serving ${models} via ${backend}; registered with gateway ${short(gw)}${note}\n`)
        if (this.served.length === 0) say(`hyperinfer: the ${backend} backend lists no models${asked.length ? ` named ${asked.join(',')}` : ''} yet; the worker checks again every 30 s`)
      } else if (!json) {
        process.stdout.write(`worker ${short(this.workerKey)} registered with gateway ${short(gw)}${note}\n`)
      }
    }
  }
}
