import fs from 'node:fs'
import path from 'node:path'
import { GatewayProtocol } from '../../shared/protocol/gateway.ts'
import { UsageError } from '../context.ts'
import { printJson, table } from '../output.ts'
import type { Command } from '../command.ts'

export const models: Command = {
  name: 'models',
  summary: 'models the gateway can route to',
  usage: 'models',
  options: {},
  async run (ctx) {
    const models = await ctx.sdk().models()
    if (ctx.globals.json) return printJson({ models })
    if (models.length === 0) return console.log('no models: no inference worker is connected')
    console.log(table([['MODEL', 'BACKEND', 'WORKERS'], ...models.map((m) => [m.id, m.backend ?? '-', String(m.workers ?? '-')])]))
  }
}

export const status: Command = {
  name: 'status',
  summary: 'gateway health: auth, database, workers, models',
  usage: 'status',
  options: {},
  async run (ctx) {
    const gw = await ctx.gateway()
    const h = await gw.call(GatewayProtocol.getServiceHealth, {}, ctx.globals.timeout)
    if (ctx.globals.json) return printJson(h)
    console.log(`gateway  ${h.publicKey}  ${h.status}  up ${h.uptimeSeconds} s  in flight ${h.inflight}`)
    console.log(`auth     ${h.auth}`)
    console.log(`database ${h.database}`)
    console.log(`models   ${h.models.join(', ') || '(none)'}`)
    console.log(`workers  ${h.workers.length}`)
    for (const w of h.workers) console.log(`  ${w.publicKey.slice(0, 16)}…  ${w.models.join(',')}  in flight ${w.inflight}  served ${w.served}  failures ${w.failures}`)
  }
}

export const quota: Command = {
  name: 'quota',
  summary: "your API key's hourly limit and what is left",
  usage: 'quota [--key K]',
  options: { key: { type: 'string' } },
  async run (ctx, { values }) {
    const q = await ctx.sdk({ apiKey: ctx.apiKey(values.key as string | undefined) }).quota()
    if (ctx.globals.json) return printJson(q)
    console.log(`${q.used}/${q.limit} requests used this hour (${q.tier} tier), ${q.remaining} left${q.resetsAt ? `; oldest frees at ${q.resetsAt}` : ''}`)
  }
}

export const workerToken: Command = {
  name: 'worker-token',
  summary: "print this machine's network worker token (for adding workers elsewhere)",
  usage: 'worker-token',
  options: {},
  async run (ctx) {
    const file = path.join(ctx.home, 'keys', 'worker-token.secret')
    let token: string
    try { token = fs.readFileSync(file, 'utf8').trim() } catch { throw new UsageError(`no worker token in ${ctx.home}: run \`npm start\` here first`) }
    if (ctx.globals.json) return printJson({ token })
    console.log(token)
  }
}
