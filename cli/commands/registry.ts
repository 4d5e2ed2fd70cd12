import { GatewayProtocol, type ModelListing } from '../../shared/protocol/gateway.ts'
import type { ModelPatch, RegistryWrite } from '../../shared/registry/schema.ts'
import { UsageError } from '../context.ts'
import { printJson, table } from '../output.ts'
import type { Command } from '../command.ts'
import { usd } from './account.ts'
import { OperatorProtocol } from '../../shared/protocol/operators.ts'

// The model registry and worker admission: everyone may list models; changing the registry,
// reading its history and approving or revoking workers takes an admin session.

const MODEL_FLAGS = {
  provider: { type: 'string' }, 'backend-model': { type: 'string' }, tasks: { type: 'string' }, context: { type: 'string' },
  'price-in': { type: 'string' }, 'price-out': { type: 'string' }, quality: { type: 'string' }, safety: { type: 'string' }, all: { type: 'boolean' }
} as const

function num (values: Record<string, unknown>, flag: string, min: number, max: number): number | undefined {
  const v = values[flag]
  if (v === undefined) return undefined
  const n = Number(v)
  if (!Number.isFinite(n) || n < min || n > max) throw new UsageError(`--${flag} must be a number from ${min} to ${max}`)
  return n
}

function modelFields (values: Record<string, unknown>): ModelPatch {
  const out: ModelPatch = {}
  if (values.provider !== undefined) out.provider = String(values.provider)
  if (values['backend-model'] !== undefined) out.backendModel = String(values['backend-model'])
  if (values.tasks !== undefined) out.tasks = String(values.tasks).split(',').map((t) => t.trim()).filter(Boolean)
  const ctxLen = num(values, 'context', 1, 100_000_000)
  if (ctxLen !== undefined) out.contextLength = Math.round(ctxLen)
  const pin = num(values, 'price-in', 0, 10_000)
  if (pin !== undefined) out.pricePer1MInput = pin
  const pout = num(values, 'price-out', 0, 10_000)
  if (pout !== undefined) out.pricePer1MOutput = pout
  const q = num(values, 'quality', 0, 1)
  if (q !== undefined) out.quality = q
  const s = num(values, 'safety', 0, 1)
  if (s !== undefined) out.safety = s
  return out
}

function modelRow (m: ModelListing): string[] {
  return [
    m.id, m.backend ?? '-', String(m.workers ?? 0), m.tasks?.join(',') ?? '-',
    m.price ? `${usd(m.price.input)} / ${usd(m.price.output)}` : '-',
    m.quality === undefined ? '-' : m.quality.toFixed(2), m.safety === undefined ? '-' : m.safety.toFixed(2),
    m.latency ? `${Math.round(m.latency.ttftMs)} ms` : '-'
  ]
}

export const models: Command = {
  usage: 'models [--all] | models add <id> --provider P --backend-model B --tasks chat,code --context N --price-in USD --price-out USD --quality 0..1 --safety 0..1 | models set <id> [same flags] | models remove <id>',
  options: MODEL_FLAGS,
  positionals: true,
  async run (ctx, { values, positionals }) {
    const [verb, id] = positionals
    const gw = await ctx.gateway()
    if (verb === undefined) {
      // served now, or with --all every model the registry knows
      const res = values.all
        ? (await gw.call(GatewayProtocol.registry, {}, ctx.globals.timeout)).models
        : (await gw.call(GatewayProtocol.models, {}, ctx.globals.timeout)).models
      if (ctx.globals.json) return printJson({ models: res })
      if (res.length === 0) return console.log(values.all ? 'the registry has no models yet' : 'no models: no inference worker is connected')
      return console.log(table([['MODEL', 'BACKEND', 'WORKERS', 'TASKS', 'PRICE IN/OUT PER 1M', 'QUALITY', 'SAFETY', 'TTFT'], ...res.map(modelRow)]))
    }
    if (!id) throw new UsageError(`usage: hyperinfer ${this.usage}`)
    const token = ctx.sessionToken()
    let change: RegistryWrite
    if (verb === 'add') {
      const f = modelFields(values)
      change = {
        op: 'putModel',
        input: {
          id, provider: f.provider ?? 'openai-compatible', backendModel: f.backendModel ?? id, tasks: f.tasks ?? ['chat'],
          contextLength: f.contextLength ?? 8192, pricePer1MInput: f.pricePer1MInput ?? 0, pricePer1MOutput: f.pricePer1MOutput ?? 0,
          quality: f.quality ?? 0.5, safety: f.safety ?? 0.5
        }
      }
    } else if (verb === 'set') {
      const patch = modelFields(values)
      if (Object.keys(patch).length === 0) throw new UsageError('models set: give at least one field to change, e.g. --price-out 0.6')
      change = { op: 'setModel', id, patch }
    } else if (verb === 'remove') {
      change = { op: 'removeModel', id }
    } else throw new UsageError(`usage: hyperinfer ${this.usage}`)
    const res = await gw.call(GatewayProtocol.registryChange, { token, change }, ctx.globals.timeout)
    if (ctx.globals.json) return printJson(res.result)
    console.log(verb === 'remove' ? `removed model ${id}` : `${verb === 'add' ? 'added' : 'updated'} model ${id}`)
  }
}

export const registry: Command = {
  usage: 'registry [history [--limit N]]',
  options: { limit: { type: 'string' } },
  positionals: true,
  async run (ctx, { values, positionals }) {
    const [verb] = positionals
    const gw = await ctx.gateway()
    if (verb === undefined) {
      // the key is the network key: the gateway gives it to an admin's session only
      const r = await ctx.withSessionIfAny((req) => gw.call(GatewayProtocol.registry, req, ctx.globals.timeout))
      if (ctx.globals.json) return printJson({ key: r.key ?? null, writable: r.writable, models: r.models.length })
      return console.log(`registry ${r.key ?? '(key shown to admins only)'} (${r.writable ? 'written by this gateway' : 'a replica on this gateway'}), ${r.models.length} model(s)`)
    }
    if (verb !== 'history') throw new UsageError(`usage: hyperinfer ${this.usage}`)
    const limit = num(values, 'limit', 1, 1000)
    const res = await gw.call(GatewayProtocol.registryHistory, { token: ctx.sessionToken(), ...(limit ? { limit: Math.round(limit) } : {}) }, ctx.globals.timeout)
    if (ctx.globals.json) return printJson(res)
    if (res.entries.length === 0) return console.log('no changes yet')
    const who = (v: unknown) => (v as { updatedBy?: string, approval?: { by: string } } | null)?.updatedBy ?? (v as { approval?: { by: string } } | null)?.approval?.by ?? '-'
    console.log(table([['SEQ', 'CHANGE', 'KEY', 'BY'], ...res.entries.map((e) => [String(e.seq), e.type, e.key, who(e.value)])]))
  }
}

export const workers: Command = {
  usage: 'workers [list] | workers drain <key> | workers resume <key> | workers approve <key> | workers revoke <key> | workers reject <key> | workers clear-pending | workers token create --label L [--owner USER] [--expires-in-hours H] [--quiet] | workers token list | workers token revoke <id>',
  options: { label: { type: 'string' }, owner: { type: 'string' }, 'expires-in-hours': { type: 'string' }, quiet: { type: 'boolean', short: 'q' } },
  positionals: true,
  async run (ctx, { values, positionals }) {
    const [verb = 'list', key, third] = positionals
    const token = ctx.sessionToken()
    const gw = await ctx.gateway()
    if (verb === 'token') {
      const sub = key ?? 'list'
      let req
      if (sub === 'create') {
        const hours = num(values, 'expires-in-hours', 1, 24 * 365)
        const label = values.label as string | undefined
        if (!label) throw new UsageError('workers token create: give --label, e.g. --label gpu-box-1')
        const owner = values.owner as string | undefined
        req = { token, op: 'create' as const, label, ...(hours ? { expiresInHours: Math.round(hours) } : {}), ...(owner ? { owner } : {}) }
      } else if (sub === 'revoke') {
        if (!third) throw new UsageError('usage: hyperinfer workers token revoke <id>')
        req = { token, op: 'revoke' as const, id: third }
      } else if (sub === 'list') req = { token, op: 'list' as const }
      else throw new UsageError(`usage: hyperinfer ${this.usage}`)
      const res = await gw.call(GatewayProtocol.joinTokens, req, ctx.globals.timeout)
      if (ctx.globals.json) return printJson(res)
      if (res.created) {
        if (values.quiet) return console.log(res.created.token)
        return console.log(`created join token '${res.created.label}' (${res.created.id}) for account ${res.created.owner ?? '-'}\n\n  ${res.created.token}\n\nThis is the only time it is shown. A worker started with it is approved at once:\n  HYPERINFER_WORKER_TOKEN=<token> npx hyperinfer worker --backend … --network …`)
      }
      if (sub === 'revoke') return console.log(`revoked join token ${third}`)
      if (res.tokens.length === 0) return console.log('no join tokens yet: hyperinfer workers token create --label L')
      return console.log(table([['ID', 'LABEL', 'OWNER', 'PREFIX', 'STATUS', 'USES', 'CREATED', 'EXPIRES'],
        ...res.tokens.map((t) => [t.id, t.label, t.owner ?? '-', t.prefix + '…', t.status, String(t.uses), t.createdAt.slice(0, 19).replace('T', ' '), t.expiresAt ? t.expiresAt.slice(0, 19).replace('T', ' ') : 'never'])]))
    }
    if (verb === 'list') {
      const res = await gw.call(GatewayProtocol.workers, { token }, ctx.globals.timeout)
      if (ctx.globals.json) return printJson(res)
      if (res.workers.length === 0) return console.log('no workers here: none has joined yet, or (for an operator) none belongs to your account')
      return console.log(table([['KEY', 'OWNER', 'STATE', 'BY', 'CONNECTED', 'MODELS', 'IN FLIGHT', 'SERVED', 'BREAKER', 'LABEL'],
        ...res.workers.map((w) => [w.key, w.owner ?? '-', w.drained ? 'drained' : w.approval.state, w.approval.by, w.connected ? 'yes' : 'no', w.models.join(','), String(w.inflight), String(w.served), w.breaker ?? '-', w.label || '-'])]))
    }
    if (verb === 'drain' || verb === 'resume') {
      if (!key || !/^[0-9a-fA-F]{64}$/.test(key)) throw new UsageError(`workers ${verb}: give the worker's 64-character hex key (see: hyperinfer workers list)`)
      const res = await gw.call(OperatorProtocol.drainWorker, { token, key, drain: verb === 'drain' }, ctx.globals.timeout)
      if (ctx.globals.json) return printJson(res)
      return console.log(res.drained ? `drained worker ${key.slice(0, 16)}…: it gets no new requests (those in flight finish)` : `resumed worker ${key.slice(0, 16)}…: it gets requests again`)
    }
    if (verb === 'clear-pending') {
      const res = await gw.call(GatewayProtocol.pendingWorkers, { token, op: 'clear' }, ctx.globals.timeout)
      if (ctx.globals.json) return printJson(res)
      return console.log(`cleared ${res.cleared} pending worker(s)`)
    }
    if (verb !== 'approve' && verb !== 'revoke' && verb !== 'reject') throw new UsageError(`usage: hyperinfer ${this.usage}`)
    if (!key || !/^[0-9a-fA-F]{64}$/.test(key)) throw new UsageError(`workers ${verb}: give the worker's 64-character hex key (see: hyperinfer workers list)`)
    if (verb === 'reject') {
      const res = await gw.call(GatewayProtocol.pendingWorkers, { token, op: 'reject', key }, ctx.globals.timeout)
      if (ctx.globals.json) return printJson(res)
      return console.log(`rejected pending worker ${key.slice(0, 16)}… (disconnected; its key is refused for an hour)`)
    }
    const res = await gw.call(GatewayProtocol.registryChange, { token, change: { op: verb === 'approve' ? 'approveWorker' : 'revokeWorker', key } }, ctx.globals.timeout)
    if (ctx.globals.json) return printJson(res.result)
    console.log(`${verb === 'approve' ? 'approved' : 'revoked'} worker ${key.slice(0, 16)}…`)
  }
}

export const gateways: Command = {
  usage: 'gateways [list] | gateways add <key> [--label L] | gateways remove <key>',
  options: { label: { type: 'string' } },
  positionals: true,
  async run (ctx, { values, positionals }) {
    const [verb = 'list', key] = positionals
    const gw = await ctx.gateway()
    if (verb === 'list') {
      // the list of gateways is part of the registry's full answer, which needs an admin's session
      const r = await gw.call(GatewayProtocol.registry, { token: ctx.sessionToken() }, ctx.globals.timeout)
      const gateways = r.gateways ?? []
      if (ctx.globals.json) return printJson({ gateways })
      if (gateways.length === 0) return console.log('the registry vouches for no gateway')
      return console.log(table([['KEY', 'LABEL', 'BY', 'SINCE'], ...gateways.map((g) => [g.key, g.label || '-', g.by, new Date(g.at).toISOString().slice(0, 19).replace('T', ' ')])]))
    }
    if (verb !== 'add' && verb !== 'remove') throw new UsageError(`usage: hyperinfer ${this.usage}`)
    if (!key || !/^[0-9a-fA-F]{64}$/.test(key)) throw new UsageError(`gateways ${verb}: give the gateway's 64-character hex key`)
    const change: RegistryWrite = verb === 'add'
      ? { op: 'putGateway', input: { key, label: (values.label as string | undefined) ?? '' } }
      : { op: 'removeGateway', key }
    const res = await gw.call(GatewayProtocol.registryChange, { token: ctx.sessionToken(), change }, ctx.globals.timeout)
    if (ctx.globals.json) return printJson(res.result)
    console.log(verb === 'add' ? `the registry now vouches for gateway ${key.slice(0, 16)}…` : `removed gateway ${key.slice(0, 16)}…: workers that found it by the network key leave it`)
  }
}
