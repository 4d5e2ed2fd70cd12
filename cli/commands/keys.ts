import { GatewayProtocol } from '../../shared/protocol/gateway.ts'
import { SafetyProtocol, safetyPolicy } from '../../shared/protocol/safety.ts'
import type { ApiKeyInfo } from '../../shared/protocol/auth.ts'
import { UsageError } from '../context.ts'
import { printJson, table } from '../output.ts'
import { type Command, required } from '../command.ts'
import { usd } from './account.ts'

// `keys create|list|revoke|set|resume`: one command with a sub-verb as its first positional.
// `--safety off|flag|redact|block` sets a key's safety policy (`default`: the account's applies).
export const keys: Command = {
  usage: 'keys create --name N [--expires-in-days D] [--budget USD] [--models a,b] [--safety P] [--quiet] | keys list | keys revoke <id> | keys set <id> --safety off|flag|redact|block|default | keys resume <id>',
  options: { name: { type: 'string' }, 'expires-in-days': { type: 'string' }, budget: { type: 'string' }, models: { type: 'string' }, safety: { type: 'string' }, quiet: { type: 'boolean', short: 'q' } },
  positionals: true,
  async run (ctx, { values, positionals }) {
    const [verb, id] = positionals
    const token = ctx.sessionToken()
    if (verb === 'create') {
      const days = values['expires-in-days'] === undefined ? undefined : Number(values['expires-in-days'])
      if (days !== undefined && !Number.isInteger(days)) throw new UsageError('--expires-in-days must be a whole number')
      const budget = values.budget === undefined ? undefined : Number(values.budget)
      if (budget !== undefined && !(Number.isFinite(budget) && budget >= 0)) throw new UsageError('--budget must be an amount in USD, e.g. 5 or 0.25')
      const models = values.models === undefined ? undefined : String(values.models).split(',').map((m) => m.trim()).filter(Boolean)
      const safety = values.safety === undefined ? undefined : policyFlag(values.safety)
      const gw = await ctx.gateway()
      const res = await gw.call(GatewayProtocol.createKey, {
        token, name: required(values, 'name'), ...(days ? { expiresInDays: days } : {}), ...(budget !== undefined ? { budgetUsd: budget } : {}), ...(models ? { models } : {}),
        ...(safety ? { safety } : {})
      }, ctx.globals.timeout)
      if (ctx.globals.json) return printJson(res)
      if (values.quiet) return console.log(res.key)
      console.log(`created key '${res.name}' (${res.id})\n\n  ${res.key}\n\nThis is the only time the key is shown. Keep it somewhere safe, e.g.\n  export HYPERINFER_API_KEY=${res.key.slice(0, 6)}…`)
      return
    }
    if (verb === 'list') {
      const gw = await ctx.gateway()
      const res = await gw.call(GatewayProtocol.listKeys, { token }, ctx.globals.timeout)
      if (ctx.globals.json) return printJson(res)
      if (res.keys.length === 0) return console.log('no API keys yet: hyperinfer keys create --name N')
      console.log(table([['ID', 'NAME', 'PREFIX', 'STATUS', 'SAFETY', 'BUDGET', 'MODELS', 'CREATED', 'LAST USED'], ...res.keys.map(row)]))
      return
    }
    if (verb === 'revoke') {
      if (!id) throw new UsageError('usage: hyperinfer keys revoke <id>')
      const gw = await ctx.gateway()
      const res = await gw.call(GatewayProtocol.revokeKey, { token, id }, ctx.globals.timeout)
      if (ctx.globals.json) return printJson(res)
      console.log(`revoked key '${res.name}' (${res.id})`)
      return
    }
    if (verb === 'set') {
      if (!id || values.safety === undefined) throw new UsageError('usage: hyperinfer keys set <id> --safety off|flag|redact|block|default')
      const gw = await ctx.gateway()
      const res = await gw.call(SafetyProtocol.setKeySafety, { token, id, safety: policyFlag(values.safety) }, ctx.globals.timeout)
      if (ctx.globals.json) return printJson(res)
      console.log(`key '${res.name}' (${res.id}): safety ${res.safety ?? 'default (the account\'s or the operator\'s)'}`)
      return
    }
    if (verb === 'resume') {
      if (!id) throw new UsageError('usage: hyperinfer keys resume <id>')
      const gw = await ctx.gateway()
      const res = await gw.call(SafetyProtocol.resumeKey, { token, id }, ctx.globals.timeout)
      if (ctx.globals.json) return printJson(res)
      console.log(`resumed key '${res.name}' (${res.id}): it takes requests again`)
      return
    }
    throw new UsageError(`usage: hyperinfer ${this.usage}`)
  }
}

/** `safety [off|flag|redact|block|default]`: the account's own safety policy, shown or set. */
export const safety: Command = {
  usage: 'safety [off|flag|redact|block|default]',
  options: {},
  positionals: true,
  async run (ctx, { positionals }) {
    const [policy] = positionals
    const gw = await ctx.gateway()
    const res = await gw.call(SafetyProtocol.accountSafety, { token: ctx.sessionToken(), ...(policy === undefined ? {} : { safety: policyFlag(policy) }) }, ctx.globals.timeout)
    if (ctx.globals.json) return printJson(res)
    console.log(`account safety policy: ${res.safety ?? 'default (the operator\'s)'}; a key's own policy, where set, comes first`)
  }
}

/** A --safety value: a policy, or `default` (null: the account's or the operator's applies). */
function policyFlag (v: unknown): 'off' | 'flag' | 'redact' | 'block' | null {
  if (v === 'default') return null
  const p = safetyPolicy.safeParse(v)
  if (!p.success) throw new UsageError('a safety policy is off, flag, redact, block or default')
  return p.data
}

function row (k: ApiKeyInfo): string[] {
  return [k.id, k.name, k.prefix + '…', k.suspendedAt ? 'suspended' : k.status, k.safety ?? 'default', k.budgetUsd === null ? '-' : usd(k.budgetUsd), k.models ? k.models.join(',') : 'all', k.createdAt.slice(0, 19).replace('T', ' '), k.lastUsedAt ? k.lastUsedAt.slice(0, 19).replace('T', ' ') : '-']
}
