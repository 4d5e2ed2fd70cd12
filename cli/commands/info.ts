import fs from 'node:fs'
import path from 'node:path'
import { GatewayProtocol } from '../../shared/protocol/gateway.ts'
import type { SystemHealth } from '../../shared/protocol/metrics.ts'
import { readMeshFile } from '../../shared/meshfile.ts'
import { UsageError } from '../context.ts'
import { printJson, table } from '../output.ts'
import type { Command } from '../command.ts'
import { usd } from './account.ts'

export const status: Command = {
  usage: 'status [--metrics URL]',
  options: { metrics: { type: 'string' } },
  async run (ctx, { values }) {
    const gw = await ctx.gateway()
    // an admin's session gets each worker; anyone else the counts
    const h = await ctx.withSessionIfAny((req) => gw.call(GatewayProtocol.getServiceHealth, req, ctx.globals.timeout))
    // the metrics service answers mesh members only over RPC; its /health is the public view
    const metricsUrl = (values.metrics as string | undefined) || process.env.HYPERINFER_METRICS_URL || readMeshFile(ctx.home)?.metrics
    // a metrics service that does not answer (or fails) gives null: printed below as 'did not answer'
    const sys = metricsUrl
      ? await fetch(new URL('/health', metricsUrl), { signal: AbortSignal.timeout(ctx.globals.timeout) }).then((r) => r.ok || r.status === 503 ? r.json() as Promise<SystemHealth> : null, () => null)
      : null
    if (ctx.globals.json) return printJson({ ...h, mesh: sys })
    console.log(`gateway  ${h.publicKey}  ${h.status}  up ${h.uptimeSeconds} s  in flight ${h.inflight}`)
    console.log(`auth     ${h.auth}`)
    console.log(`database ${h.database}`)
    console.log(`models   ${h.models.join(', ') || '(none)'}`)
    console.log(`workers  ${h.workerCount}`)
    for (const w of h.workers ?? []) console.log(`  ${w.publicKey.slice(0, 16)}…  ${w.models.join(',')}  in flight ${w.inflight}  served ${w.served}  failures ${w.failures}`)
    if (sys) {
      console.log(`mesh     ${sys.status} (from ${metricsUrl})`)
      for (const m of sys.services) console.log(`  ${m.name.padEnd(12)} ${m.instance.padEnd(18)} ${m.up ? 'up  ' : 'DOWN'}  ${m.latencyMs + ' ms'}  ${m.version ?? '-'}${m.error ? '  ' + m.error : ''}`)
    } else if (metricsUrl) {
      console.log(`mesh     metrics service at ${metricsUrl} did not answer`)
    }
  }
}

export const quota: Command = {
  usage: 'quota [--key K]',
  options: { key: { type: 'string' } },
  async run (ctx, { values }) {
    const q = await (await ctx.sdk({ apiKey: ctx.apiKey(values.key as string | undefined) })).quota()
    if (ctx.globals.json) return printJson(q)
    console.log(`${q.used}/${q.limit} requests used this hour (${q.tier} tier), ${q.remaining} left${q.resetsAt ? `; resets at ${q.resetsAt}` : ''}`)
    const fmt = (l: typeof q.limits[number], v: number) => l.unit === 'usd' ? usd(v) : String(v)
    console.log(table([['LIMIT', 'USED', 'OF', 'LEFT', 'RESETS'], ...q.limits.map((l) => [l.description, fmt(l, l.used), fmt(l, l.cap), fmt(l, l.remaining), l.resetsAt ?? 'never'])]))
    console.log(`credits: ${usd(q.credits.availableUsd)} available${q.models ? `; this key may use: ${q.models.join(', ')}` : ''}`)
  }
}

export const workerToken: Command = {
  usage: 'worker-token | worker-token rotate [--quiet]',
  options: { quiet: { type: 'boolean', short: 'q' } },
  positionals: true,
  async run (ctx, { values, positionals }) {
    const [verb] = positionals
    if (verb === 'rotate') {
      const gw = await ctx.gateway()
      const res = await gw.call(GatewayProtocol.rotateWorkerToken, { token: ctx.sessionToken() }, ctx.globals.timeout)
      // on the mesh machine the local copy follows, so `hyperinfer worker-token` prints the live token
      const local = path.join(ctx.home, 'keys', 'worker-token.secret')
      if (fs.existsSync(local)) fs.writeFileSync(local, res.token + '\n', { mode: 0o600 })
      if (ctx.globals.json) return printJson(res)
      if (values.quiet) return console.log(res.token)
      return console.log(`new network worker token:\n\n  ${res.token}\n\nThis is the only time it is shown. The old token admits no new worker from now on; workers already approved stay approved.\nStart new workers with: HYPERINFER_WORKER_TOKEN=<token> npx hyperinfer worker --backend … --network …`)
    }
    if (verb !== undefined) throw new UsageError(`usage: hyperinfer ${this.usage}`)
    const file = path.join(ctx.home, 'keys', 'worker-token.secret')
    let token: string
    try { token = fs.readFileSync(file, 'utf8').trim() } catch { throw new UsageError(`no worker token in ${ctx.home}: run \`npm start\` here first`) }
    if (ctx.globals.json) return printJson({ token })
    console.log(token)
  }
}
