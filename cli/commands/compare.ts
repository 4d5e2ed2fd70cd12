import { UsageError } from '../context.ts'
import { printJson } from '../output.ts'
import { type Command, promptOptions, required } from '../command.ts'
import { ColumnsView, LinesView, fitsColumns, type CompareView, type Screen } from '../compare-view.ts'

// `hyperinfer compare --models a,b,c "prompt"`: the prompt to every model at once (each its own
// request, billed on its own), the answers streamed side by side, then tokens, latency and cost per
// model. Exits 1 when any model failed (the others' answers are still shown).

const LAYOUTS = ['auto', 'columns', 'lines'] as const

export const compare: Command = {
  usage: 'compare --models A,B[,…] [--key K] [--max-tokens N] [--temperature T] [--layout auto|columns|lines] ["prompt"]',
  options: {
    models: { type: 'string' }, key: { type: 'string' }, 'max-tokens': { type: 'string' }, temperature: { type: 'string' }, layout: { type: 'string' }
  },
  positionals: true,
  async run (ctx, { values, positionals }) {
    const apiKey = ctx.apiKey(values.key as string | undefined)
    const models = required(values, 'models').split(',').map((m) => m.trim()).filter(Boolean)
    if (models.length === 0) throw new UsageError('--models needs at least one model, e.g. --models synthetic,llama3.2')
    const layout = (values.layout ?? 'auto') as string
    if (!(LAYOUTS as readonly string[]).includes(layout)) throw new UsageError(`--layout must be one of ${LAYOUTS.join(', ')}`)
    const { prompt, maxTokens, temperature } = await promptOptions(values, positionals)

    const client = await ctx.sdk({ apiKey, timeoutMs: Math.max(ctx.globals.timeout, 60_000) })
    const ac = new AbortController()
    const onSigint = () => ac.abort()
    process.once('SIGINT', onSigint)
    const request = { models, prompt, ...(maxTokens !== undefined ? { maxTokens } : {}), ...(temperature !== undefined ? { temperature } : {}) }
    try {
      if (ctx.globals.json) {
        const result = await client.compare(request, { signal: ac.signal })
        printJson(result)
        return result.results.some((e) => e.error) ? 1 : 0
      }
      const out = process.stdout
      const screen: Screen = {
        write: (text) => { out.write(text) },
        live: out.isTTY === true,
        columns: out.columns || Number(process.env.COLUMNS) || 100,
        rows: out.rows || Number(process.env.LINES) || 24
      }
      const columns = layout === 'columns' || (layout === 'auto' && screen.live && fitsColumns(models.length, screen.columns))
      if (columns && !fitsColumns(models.length, screen.columns)) throw new UsageError(`${models.length} columns do not fit in ${screen.columns} characters; use --layout lines`)
      const view: CompareView = columns ? new ColumnsView(models, screen) : new LinesView(models, screen)
      const result = await client.compare(request, { signal: ac.signal, onDelta: (i, text) => view.delta(i, text), onResult: (e) => view.result(e) })
      view.finish(result)
      return result.results.some((e) => e.error) ? 1 : 0
    } finally {
      process.off('SIGINT', onSigint)
    }
  }
}
