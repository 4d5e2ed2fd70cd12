import type { ParseArgsConfig } from 'node:util'
import type { CliContext } from './context.ts'
import { UsageError } from './context.ts'

export interface Parsed { values: Record<string, string | boolean | undefined>, positionals: string[] }

/** A command's options and code; its name and one-line summary live in ./catalog.ts. */
export interface Command {
  usage: string
  options: NonNullable<ParseArgsConfig['options']>
  positionals?: boolean
  /** resolves with the exit code (none: 0) */
  run (ctx: CliContext, args: Parsed): Promise<void | number>
}

export function required (values: Parsed['values'], name: string): string {
  const v = values[name]
  if (typeof v !== 'string' || v === '') throw new UsageError(`--${name} is required`)
  return v
}

export async function readStdin (): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

export async function readPassword (values: Parsed['values']): Promise<string> {
  if (values['password-stdin']) return (await readStdin()).replace(/\r?\n$/, '')
  const pw = values.password ?? process.env.HYPERINFER_PASSWORD
  if (typeof pw !== 'string' || !pw) throw new UsageError('--password (or --password-stdin, or HYPERINFER_PASSWORD) is required')
  return pw
}

/** A generation's prompt (the arguments, else stdin) and its --max-tokens and --temperature, checked. */
export async function promptOptions (values: Parsed['values'], positionals: string[]): Promise<{ prompt: string, maxTokens?: number, temperature?: number }> {
  let prompt = positionals.join(' ')
  if (!prompt) {
    if (process.stdin.isTTY) throw new UsageError('give a prompt as an argument or on stdin')
    prompt = (await readStdin()).trim()
  }
  if (!prompt) throw new UsageError('the prompt is empty')
  const maxTokens = values['max-tokens'] === undefined ? undefined : Number(values['max-tokens'])
  const temperature = values.temperature === undefined ? undefined : Number(values.temperature)
  if (maxTokens !== undefined && !Number.isInteger(maxTokens)) throw new UsageError('--max-tokens must be a whole number')
  if (temperature !== undefined && Number.isNaN(temperature)) throw new UsageError('--temperature must be a number')
  return { prompt, ...(maxTokens !== undefined ? { maxTokens } : {}), ...(temperature !== undefined ? { temperature } : {}) }
}
