import { GatewayProtocol } from '../../shared/protocol/gateway.ts'
import type { CliContext } from '../context.ts'
import { printJson } from '../output.ts'
import { type Command, readPassword, required } from '../command.ts'

export const register: Command = {
  name: 'register',
  summary: 'create an account',
  usage: 'register --username U --email E (--password P | --password-stdin)',
  options: { username: { type: 'string' }, email: { type: 'string' }, password: { type: 'string' }, 'password-stdin': { type: 'boolean' } },
  async run (ctx: CliContext, { values }) {
    const gw = await ctx.gateway()
    const res = await gw.call(GatewayProtocol.register, {
      username: required(values, 'username'), email: required(values, 'email'), password: await readPassword(values)
    }, ctx.globals.timeout)
    if (ctx.globals.json) printJson(res)
    else console.log(`registered ${res.user.username} <${res.user.email}>; now run: hyperinfer login --email ${res.user.email} --password …`)
  }
}

export const login: Command = {
  name: 'login',
  summary: 'log in and keep the session token in the state dir',
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

export const usage: Command = {
  name: 'usage',
  summary: 'your requests and tokens per day',
  usage: 'usage [--days N]',
  options: { days: { type: 'string' } },
  async run (ctx, { values }) {
    const days = values.days === undefined ? undefined : Number(values.days)
    const gw = await ctx.gateway()
    const res = await gw.call(GatewayProtocol.usage, { token: ctx.sessionToken(), ...(days !== undefined ? { days } : {}) }, ctx.globals.timeout)
    if (ctx.globals.json) return printJson(res)
    if (res.daily.length === 0) return console.log('no usage yet')
    for (const d of res.daily) console.log(`${d.date}  ${d.requests} requests  ${d.tokensIn} tokens in  ${d.tokensOut} tokens out  ${d.errors} errors`)
    console.log(`total       ${res.totals.requests} requests  ${res.totals.tokensIn} tokens in  ${res.totals.tokensOut} tokens out`)
  }
}
