import { GatewayProtocol } from '../../shared/protocol/gateway.ts'
import { UsageError } from '../context.ts'
import { printJson, table } from '../output.ts'
import type { Command } from '../command.ts'

// `cache stats|purge|semantic` (a session) and `feedback <request id> <score>` (an API key).

const bytes = (n: number) => n < 1024 ? `${n} B` : n < 1024 ** 2 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1024 ** 2).toFixed(1)} MiB`

export const cache: Command = {
  usage: 'cache stats [--all] | cache purge [--all] [--model M] | cache semantic <key id> on|off [--threshold 0..1]',
  options: { all: { type: 'boolean' }, model: { type: 'string' }, threshold: { type: 'string' } },
  positionals: true,
  async run (ctx, { values, positionals }) {
    const [verb, keyId, onOff] = positionals
    const token = ctx.sessionToken()
    const gw = await ctx.gateway()
    if (verb === 'stats') {
      const s = await gw.call(GatewayProtocol.cacheStats, { token, ...(values.all ? { all: true } : {}) }, ctx.globals.timeout)
      if (ctx.globals.json) return printJson(s)
      console.log(`${s.scope === 'mesh' ? 'whole mesh' : 'your account'}, last ${s.window}: ${s.hits.total} of ${s.requests} chat requests answered from the cache (${(s.hitRate * 100).toFixed(1)}%), $${s.savedUsd.toFixed(6)} saved`)
      console.log(table([['TIER', 'HITS'], ['local', String(s.hits.local)], ['shared', String(s.hits.shared)], ['semantic', String(s.hits.semantic)]]))
      console.log(`shared tier: ${s.entries} entries (${s.warmEntries} warmed), ${bytes(s.bytes)}; this gateway's local tier: ${s.local.entries} entries, ${bytes(s.local.bytes)}; TTL ${s.ttlSeconds} s; semantic model: ${s.semanticModel ?? 'none'}`)
      return
    }
    if (verb === 'purge') {
      const r = await gw.call(GatewayProtocol.cachePurge, { token, ...(values.all ? { all: true } : {}), ...(values.model ? { model: values.model as string } : {}) }, ctx.globals.timeout)
      if (ctx.globals.json) return printJson(r)
      console.log(`purged ${r.shared} shared entries (every gateway drops its local copies)`)
      return
    }
    if (verb === 'semantic') {
      if (!keyId || (onOff !== 'on' && onOff !== 'off')) throw new UsageError('usage: hyperinfer cache semantic <key id> on|off [--threshold 0..1]')
      const threshold = values.threshold === undefined ? undefined : Number(values.threshold)
      if (threshold !== undefined && !(threshold > 0 && threshold <= 1)) throw new UsageError('--threshold must be a number in (0, 1]')
      const r = await gw.call(GatewayProtocol.cacheSettings, { token, keyId, semantic: onOff === 'on', ...(threshold !== undefined ? { threshold } : {}) }, ctx.globals.timeout)
      if (ctx.globals.json) return printJson(r)
      console.log(`semantic cache ${r.semantic ? 'on' : 'off'} for key ${r.keyId}${r.semantic ? ` (threshold ${r.threshold ?? 'the gateway\'s default'})` : ''}`)
      return
    }
    throw new UsageError(`usage: hyperinfer ${this.usage}`)
  }
}

export const feedback: Command = {
  usage: 'feedback [--key K] [--comment TEXT] <request id> <score>',
  options: { key: { type: 'string' }, comment: { type: 'string' } },
  positionals: true,
  async run (ctx, { values, positionals }) {
    const [requestId, raw] = positionals
    const score = Number(raw)
    if (!requestId || raw === undefined || !(score >= 0 && score <= 1)) throw new UsageError('usage: hyperinfer feedback <request id> <score 0..1>')
    const apiKey = ctx.apiKey(values.key as string | undefined)
    const gw = await ctx.gateway()
    const r = await gw.call(GatewayProtocol.feedback, { apiKey, requestId, score, ...(values.comment ? { comment: values.comment as string } : {}) }, ctx.globals.timeout)
    if (ctx.globals.json) return printJson(r)
    console.log(`scored request ${r.requestId} (${r.model}): ${r.score}`)
  }
}
