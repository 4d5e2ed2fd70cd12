import { printJson } from '../output.ts'
import { type Command, promptOptions } from '../command.ts'

export const infer: Command = {
  usage: 'infer [--key K] [--model M] [--max-tokens N] [--temperature T] [--cache | --no-store] [--stats] ["prompt"]',
  options: { key: { type: 'string' }, model: { type: 'string' }, 'max-tokens': { type: 'string' }, temperature: { type: 'string' }, stats: { type: 'boolean' }, cache: { type: 'boolean' }, 'no-store': { type: 'boolean' } },
  positionals: true,
  async run (ctx, { values, positionals }) {
    const apiKey = ctx.apiKey(values.key as string | undefined)
    const { prompt, maxTokens, temperature } = await promptOptions(values, positionals)

    // a generation may pause longer than a connect may take: the per-token timeout is at least 60 s
    const client = await ctx.sdk({ apiKey, timeoutMs: Math.max(ctx.globals.timeout, 60_000) })
    const ac = new AbortController()
    const onSigint = () => ac.abort()
    process.once('SIGINT', onSigint)
    const request = {
      prompt, ...(values.model ? { model: values.model as string } : {}),
      ...(maxTokens !== undefined ? { maxTokens } : {}), ...(temperature !== undefined ? { temperature } : {}),
      ...(values['no-store'] ? { cache: 'no-store' as const } : values.cache ? { cache: true } : {})
    }
    let wrote = false
    try {
      if (ctx.globals.json) return printJson(await client.inference(request, { signal: ac.signal }))
      const stream = client.stream(request, { signal: ac.signal })
      for await (const text of stream) { wrote = true; process.stdout.write(text) }
      const res = await stream.result
      if (wrote) process.stdout.write('\n')
      if (values.stats) process.stderr.write(`[${res.model} · ${res.usage.promptTokens}→${res.usage.completionTokens} tokens · ttft ${res.ttftMs ?? '-'} ms · ${res.durationMs ?? '-'} ms · ${res.cached ? 'cached' : `worker ${res.worker?.slice(0, 8) ?? '-'}`} · id ${res.id}]\n`)
    } finally {
      process.off('SIGINT', onSigint)
      if (wrote && ac.signal.aborted) process.stdout.write('\n')
    }
  }
}
