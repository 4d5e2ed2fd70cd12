import fs from 'node:fs'
import { OperatorProtocol, type EarningsRow } from '../../shared/protocol/operators.ts'
import { UsageError } from '../context.ts'
import { printJson, table } from '../output.ts'
import type { Command } from '../command.ts'

// Operators: the prices their workers charge (nano-USD per token, within an admin's bounds) and what
// they earned; admins set the bounds and export every account's payouts as CSV.

/** nano-USD, shown exactly and in USD */
export function nusd (n: number): string {
  return `${n} nUSD ($${(n / 1e9).toFixed(n % 1000 === 0 ? 6 : 9).replace(/\.?0+$/, '') || '0'})`
}

function int (values: Record<string, unknown>, flag: string): number | undefined {
  const v = values[flag]
  if (v === undefined) return undefined
  const n = Number(v)
  if (!Number.isInteger(n) || n < 0 || n > 10_000_000) throw new UsageError(`--${flag} must be a whole number of nano-USD per token, 0 to 10000000`)
  return n
}

const DAY = /^\d{4}-\d{2}-\d{2}$/
function day (values: Record<string, unknown>, flag: string): string | undefined {
  const v = values[flag]
  if (v === undefined) return undefined
  if (typeof v !== 'string' || !DAY.test(v)) throw new UsageError(`--${flag} must be a day as YYYY-MM-DD`)
  return v
}

export const prices: Command = {
  usage: 'prices | prices set <model> --input N --output N | prices bounds <model> --min N --max N [--min-output N --max-output N]  (nano-USD per token)',
  options: { input: { type: 'string' }, output: { type: 'string' }, min: { type: 'string' }, max: { type: 'string' }, 'min-output': { type: 'string' }, 'max-output': { type: 'string' } },
  positionals: true,
  async run (ctx, { values, positionals }) {
    const [verb, model] = positionals
    const token = ctx.sessionToken()
    const gw = await ctx.gateway()
    if (verb === undefined || verb === 'list') {
      const res = await gw.call(OperatorProtocol.prices, { token }, ctx.globals.timeout)
      if (ctx.globals.json) return printJson(res)
      const lines = [`network fee: ${res.feePct}% of each charge; your workers' owner account earns the rest`]
      lines.push(res.mine.length === 0 ? 'you set no prices: your workers charge the registry\'s model prices' : table([['MODEL', 'INPUT nUSD/TOKEN', 'OUTPUT nUSD/TOKEN', 'CHARGED (WITHIN BOUNDS)'],
        ...res.mine.map((p) => [p.model, String(p.input), String(p.output), `${p.effective.input} / ${p.effective.output}`])]))
      if (res.bounds.length > 0) {
        lines.push('', table([['MODEL', 'INPUT MIN..MAX', 'OUTPUT MIN..MAX'], ...res.bounds.map((b) => [b.model, `${b.minInput}..${b.maxInput}`, `${b.minOutput}..${b.maxOutput}`])]))
      }
      return console.log(lines.join('\n'))
    }
    if (!model) throw new UsageError(`usage: hyperinfer ${this.usage}`)
    if (verb === 'set') {
      const input = int(values, 'input')
      const output = int(values, 'output')
      if (input === undefined || output === undefined) throw new UsageError('prices set: give --input and --output, nano-USD per token (e.g. --input 100 --output 400 is $0.10 / $0.40 per 1M tokens)')
      const res = await gw.call(OperatorProtocol.setPrice, { token, model, input, output }, ctx.globals.timeout)
      if (ctx.globals.json) return printJson(res)
      return console.log(`your workers now charge ${res.effective.input} nUSD per input token and ${res.effective.output} per output token for ${model}`)
    }
    if (verb === 'bounds') {
      const min = int(values, 'min')
      const max = int(values, 'max')
      if (min === undefined || max === undefined) throw new UsageError('prices bounds: give --min and --max (nano-USD per token; --min-output/--max-output for output tokens if they differ)')
      const minOutput = int(values, 'min-output') ?? min
      const maxOutput = int(values, 'max-output') ?? max
      if (min > max || minOutput > maxOutput) throw new UsageError('prices bounds: a minimum is above its maximum')
      const res = await gw.call(OperatorProtocol.setPriceBounds, { token, model, minInput: min, maxInput: max, minOutput, maxOutput }, ctx.globals.timeout)
      if (ctx.globals.json) return printJson(res)
      return console.log(`operators may price ${model} at ${res.minInput}..${res.maxInput} nUSD per input token and ${res.minOutput}..${res.maxOutput} per output token`)
    }
    throw new UsageError(`usage: hyperinfer ${this.usage}`)
  }
}

function earningsTable (rows: EarningsRow[], all: boolean): string {
  return table([[...(all ? ['ACCOUNT'] : []), 'DAY', 'WORKER', 'MODEL', 'REQUESTS', 'TOKENS IN', 'TOKENS OUT', 'CHARGED nUSD', 'FEES nUSD', 'EARNED nUSD'],
    ...rows.map((r) => [...(all ? [r.account] : []), r.day, r.worker.slice(0, 16) + '…', r.model, String(r.requests), String(r.tokensIn), String(r.tokensOut), String(r.charged), String(r.fees), String(r.earned)])])
}

export const earnings: Command = {
  usage: 'earnings [--since YYYY-MM-DD] [--until YYYY-MM-DD] [--all] | earnings export --csv [--since D] [--until D] [--out FILE]  (admins)',
  options: { since: { type: 'string' }, until: { type: 'string' }, all: { type: 'boolean' }, csv: { type: 'boolean' }, out: { type: 'string' } },
  positionals: true,
  async run (ctx, { values, positionals }) {
    const [verb] = positionals
    const token = ctx.sessionToken()
    const gw = await ctx.gateway()
    const range = { ...(day(values, 'since') ? { since: day(values, 'since') } : {}), ...(day(values, 'until') ? { until: day(values, 'until') } : {}) }
    if (verb === 'export') {
      if (!values.csv && !ctx.globals.json) throw new UsageError('earnings export: give --csv (or --json)')
      const res = await gw.call(OperatorProtocol.payoutExport, { token, ...range }, ctx.globals.timeout)
      if (ctx.globals.json) return printJson(res)
      if (typeof values.out === 'string') {
        fs.writeFileSync(values.out, res.csv, { mode: 0o600 })
        return console.log(`wrote ${res.rows.length} account(s) to ${values.out}`)
      }
      process.stdout.write(res.csv)
      return
    }
    if (verb !== undefined) throw new UsageError(`usage: hyperinfer ${this.usage}`)
    const res = await gw.call(OperatorProtocol.earnings, { token, ...range, ...(values.all ? { all: true } : {}) }, ctx.globals.timeout)
    if (ctx.globals.json) return printJson(res)
    if (res.rows.length === 0) return console.log('no earnings in this period: your workers served no paid request')
    console.log(earningsTable(res.rows, values.all === true))
    console.log(`\ncharged ${nusd(res.total.charged)}, network fee (${res.feePct}%) ${nusd(res.total.fees)}, earned ${nusd(res.total.earned)}`)
  }
}
