import { parseArgs, type ParseArgsConfig } from 'node:util'
import { CliContext, UsageError } from './context.ts'
import { reportError } from './output.ts'
import { CATALOG } from './catalog.ts'

const GLOBAL: NonNullable<ParseArgsConfig['options']> = {
  json: { type: 'boolean' },
  gateway: { type: 'string' },
  bootstrap: { type: 'string' },
  timeout: { type: 'string' },
  help: { type: 'boolean', short: 'h' }
}

const GLOBAL_HELP = `global options:
  --gateway HEX     gateway public key (default: $HYPERINFER_GATEWAY, else the local mesh file)
  --bootstrap H:P   DHT bootstrap list (default: $HYPERINFER_BOOTSTRAP, else the local mesh file)
  --timeout MS      connect/call timeout (default 10000)
  --json            print one JSON object on stdout
  -h, --help        help`

function mainHelp (): string {
  const w = Math.max(...CATALOG.map((c) => c.name.length))
  return `hyperinfer — AI inference over a peer-to-peer mesh

usage: hyperinfer <command> [options]

commands:
${CATALOG.map((c) => `  ${c.name.padEnd(w)}  ${c.summary}`).join('\n')}

${GLOBAL_HELP}

Run 'hyperinfer <command> --help' for a command's options.`
}

async function main (argv: string[]): Promise<number> {
  // the command is the first word that is not an option or the value of a global option (--gateway K models)
  const takesValue = new Set(Object.entries(GLOBAL).filter(([, o]) => o.type === 'string').map(([n]) => '--' + n))
  let idx = -1
  for (let i = 0; i < argv.length; i++) {
    if (takesValue.has(argv[i]!)) { i++; continue }
    if (!argv[i]!.startsWith('-')) { idx = i; break }
  }
  const name = idx >= 0 ? argv[idx] : undefined
  const entry = CATALOG.find((c) => c.name === name)
  const wantsJson = argv.includes('--json')
  if (!entry) {
    if (name === undefined || argv.includes('--help') || argv.includes('-h') || name === 'help') {
      console.log(mainHelp())
      return name === undefined && !argv.includes('--help') && !argv.includes('-h') ? 2 : 0
    }
    return reportError(new UsageError(`unknown command '${name}'; run 'hyperinfer --help'`), wantsJson)
  }
  const cmd = await entry.load()
  const rest = [...argv.slice(0, idx), ...argv.slice(idx + 1)]
  let parsed
  try {
    parsed = parseArgs({ args: rest, options: { ...GLOBAL, ...cmd.options }, allowPositionals: cmd.positionals ?? false, strict: true })
  } catch (err) {
    return reportError(new UsageError(`${(err as Error).message.split('\n')[0]}\nusage: hyperinfer ${cmd.usage}`), wantsJson)
  }
  const values = parsed.values as Record<string, string | boolean | undefined>
  if (values.help) {
    console.log(`usage: hyperinfer ${cmd.usage}\n\n${entry.summary}\n\n${GLOBAL_HELP}`)
    return 0
  }
  const timeout = values.timeout === undefined ? 10_000 : Number(values.timeout)
  if (!Number.isFinite(timeout) || timeout <= 0) return reportError(new UsageError('--timeout must be a positive number of milliseconds'), wantsJson)
  const ctx = new CliContext({ json: values.json === true, gateway: values.gateway as string | undefined, bootstrap: values.bootstrap as string | undefined, timeout })
  try {
    return (await cmd.run(ctx, { values, positionals: parsed.positionals })) ?? 0
  } catch (err) {
    return reportError(err, ctx.globals.json)
  } finally {
    await ctx.close()
  }
}

// `hyperinfer status | head -1`: a reader that stops early is not an error
process.stdout.on('error', (err: NodeJS.ErrnoException) => { if (err.code === 'EPIPE') process.exit(0); throw err })

const code = await main(process.argv.slice(2))
process.exit(code)
