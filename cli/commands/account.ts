import fs from 'node:fs'
import { GatewayProtocol } from '../../shared/protocol/gateway.ts'
import type { CliContext } from '../context.ts'
import { UsageError } from '../context.ts'
import { printJson, table } from '../output.ts'
import { type Command, readPassword, required } from '../command.ts'

export const register: Command = {
  usage: 'register --username U --email E (--password P | --password-stdin) [--setup-code C]',
  options: { username: { type: 'string' }, email: { type: 'string' }, password: { type: 'string' }, 'password-stdin': { type: 'boolean' }, 'setup-code': { type: 'string' } },
  async run (ctx: CliContext, { values }) {
    // the one-time code auth keeps in its state dir while the mesh has no admin
    const setupCode = values['setup-code'] === undefined ? {} : { setupCode: required(values, 'setup-code') }
    const gw = await ctx.gateway()
    const res = await gw.call(GatewayProtocol.register, {
      username: required(values, 'username'), email: required(values, 'email'), password: await readPassword(values), ...setupCode
    }, ctx.globals.timeout)
    if (ctx.globals.json) printJson(res)
    else console.log(`registered ${res.user.username} <${res.user.email}>${res.user.role === 'admin' ? ' as an admin' : ''}; now run: hyperinfer login --email ${res.user.email} --password …`)
  }
}

export const login: Command = {
  usage: 'login --email E (--password P | --password-stdin)',
  options: { email: { type: 'string' }, password: { type: 'string' }, 'password-stdin': { type: 'boolean' } },
  async run (ctx, { values }) {
    const gw = await ctx.gateway()
    const res = await gw.call(GatewayProtocol.login, { email: required(values, 'email'), password: await readPassword(values) }, ctx.globals.timeout)
    ctx.saveSession({ token: res.token, expiresAt: res.expiresAt, username: res.user.username, gateway: ctx.gatewayKey() })
    // the token itself stays in the session file; it is never printed
    if (ctx.globals.json) printJson({ user: res.user, expiresAt: res.expiresAt, sessionFile: ctx.sessionFile() })
    else console.log(`logged in as ${res.user.username} (session valid until ${res.expiresAt})`)
  }
}

export const logout: Command = {
  usage: 'logout',
  options: {},
  async run (ctx) {
    const token = ctx.sessionToken()
    const gw = await ctx.gateway()
    await gw.call(GatewayProtocol.logout, { token }, ctx.globals.timeout)
    fs.rmSync(ctx.sessionFile(), { force: true })
    if (ctx.globals.json) return printJson({ loggedOut: true })
    console.log('logged out')
  }
}

export const usage: Command = {
  usage: 'usage [--since YYYY-MM-DD | --days N]',
  options: { days: { type: 'string' }, since: { type: 'string' } },
  async run (ctx, { values }) {
    const days = values.days === undefined ? undefined : Number(values.days)
    if (days !== undefined && !Number.isInteger(days)) throw new UsageError('--days must be a whole number')
    const since = values.since as string | undefined
    const gw = await ctx.gateway()
    const res = await gw.call(GatewayProtocol.usage, { token: ctx.sessionToken(), ...(days !== undefined ? { days } : {}), ...(since ? { since } : {}) }, ctx.globals.timeout)
    if (ctx.globals.json) return printJson(res)
    if (res.daily.length === 0) console.log(`no usage since ${res.since}`)
    else {
      console.log(table([['DATE', 'REQUESTS', 'ERRORS', 'TOKENS IN', 'TOKENS OUT', 'COST'],
        ...res.daily.map((d) => [d.date, String(d.requests), String(d.errors), String(d.tokensIn), String(d.tokensOut), usd(d.costUsd)]),
        ['total', String(res.totals.requests), String(res.totals.errors), String(res.totals.tokensIn), String(res.totals.tokensOut), usd(res.totals.costUsd)]]))
      console.log('')
      console.log(table([['MODEL', 'REQUESTS', 'TOKENS IN', 'TOKENS OUT', 'COST'],
        ...res.byModel.map((m) => [m.model, String(m.requests), String(m.tokensIn), String(m.tokensOut), usd(m.costUsd)])]))
    }
    console.log(`\ncredits: ${usd(res.credits.availableUsd)} available (${usd(res.credits.balanceUsd)} balance, ${usd(res.credits.reservedUsd)} held by running requests)`)
  }
}

export const credits: Command = {
  usage: 'credits [--limit N] | credits grant <username> <usd> [--note T] [--refund]',
  options: { limit: { type: 'string' }, note: { type: 'string' }, refund: { type: 'boolean' } },
  positionals: true,
  async run (ctx, { values, positionals }) {
    const [verb, username, amount] = positionals
    const token = ctx.sessionToken()
    const gw = await ctx.gateway()
    if (verb === 'grant') {
      const amountUsd = Number(amount)
      if (!username || !amount || !Number.isFinite(amountUsd) || amountUsd <= 0) throw new UsageError('usage: hyperinfer credits grant <username> <usd> (a positive amount)')
      const res = await gw.call(GatewayProtocol.grantCredits, {
        token, username, amountUsd, ...(values.refund ? { kind: 'refund' as const } : {}), ...(values.note ? { note: values.note as string } : {})
      }, ctx.globals.timeout)
      if (ctx.globals.json) return printJson(res)
      return console.log(`${res.entry.kind === 'refund' ? 'refunded' : 'granted'} ${usd(res.entry.amountUsd)} to ${res.username}; their balance is ${usd(res.balanceUsd)}`)
    }
    if (verb !== undefined) throw new UsageError(`usage: hyperinfer ${this.usage}`)
    const limit = values.limit === undefined ? undefined : Number(values.limit)
    if (limit !== undefined && !Number.isInteger(limit)) throw new UsageError('--limit must be a whole number')
    const res = await gw.call(GatewayProtocol.credits, { token, ...(limit ? { limit } : {}) }, ctx.globals.timeout)
    if (ctx.globals.json) return printJson(res)
    console.log(`${usd(res.availableUsd)} available (${usd(res.balanceUsd)} balance, ${usd(res.reservedUsd)} held by running requests)`)
    if (res.ledger.length > 0) {
      console.log('')
      console.log(table([['WHEN', 'KIND', 'AMOUNT', 'NOTE'], ...res.ledger.map((e) => [e.createdAt.slice(0, 19).replace('T', ' '), e.kind, usd(e.amountUsd), e.note ?? (e.requestId ?? '')])]))
    }
  }
}

/** Dollars with enough digits for per-token prices. */
export function usd (v: number): string {
  if (v === 0) return '$0'
  const abs = Math.abs(v)
  return (v < 0 ? '-$' : '$') + (abs >= 0.01 ? abs.toFixed(2) : abs.toPrecision(3).replace(/0+$/, ''))
}
