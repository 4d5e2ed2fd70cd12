import { z } from 'zod'
import { MeshError } from './errors.ts'
import { modelName } from './protocol/common.ts'
import type { InferResult } from './protocol/gateway.ts'

// Comparing models: one prompt sent to several models at once, each as its own ordinary gateway
// request (its own request id, limits, hold and charge), run concurrently. One model failing does
// not stop the others: its entry carries the coded error instead. The web service's /v1/compare
// and the SDK's RPC transport both run a comparison with runCompare, so they time, total and
// report it the same way.

/** the most models one comparison may name: each is a full request on the caller's limits */
export const MAX_COMPARE_MODELS = 8

export const compareModels = z.array(modelName).min(1, 'name at least one model').max(MAX_COMPARE_MODELS, `at most ${MAX_COMPARE_MODELS} models`)
  .superRefine((models, ctx) => {
    const seen = new Set<string>()
    models.forEach((m, i) => {
      if (seen.has(m)) ctx.addIssue({ code: 'custom', path: [i], message: `${m} is listed twice` })
      seen.add(m)
    })
  })

/** What a comparison needs of a model's answer: the gateway's InferResult, or the SDK's result of it. */
export type CompareAnswer = Pick<InferResult, 'id' | 'model' | 'text' | 'usage' | 'finishReason'> & { ttftMs?: number | null, costUsd?: number, cached?: true }

/** One model's part of a comparison: its answer, or the error it failed with. */
export interface CompareOutcome<R extends CompareAnswer = InferResult> {
  index: number
  model: string
  /** the gateway's answer, with `text` the whole answer (streamed or not); null when the model failed */
  result: R | null
  error: MeshError | null
  /** from the start of the comparison to this model's answer (or failure), measured by whoever runs it */
  latencyMs: number
}

export interface CompareHooks<R extends CompareAnswer = InferResult> {
  /** each non-empty text delta of model `index`, as it arrives */
  onDelta?: (index: number, text: string) => void
  /** one model is done, answered or failed */
  onOutcome?: (outcome: CompareOutcome<R>) => void
}

/** USD as integer nano-USD (1 USD = 1e9): the gateway's own unit, exact for any charge it makes */
export function nanoUsd (usd: number): number {
  return Math.round(usd * 1e9)
}

function asMeshError (err: unknown): MeshError {
  return err instanceof MeshError ? err : MeshError.INTERNAL((err as Error)?.message ?? String(err))
}

/**
 * Run `one` for every model at once and wait for all of them. `one` streams the model's text
 * through `onText` (or answers whole: then the result's text is used). Never rejects: every
 * failure lands in its model's outcome. Outcomes come back in the order of `models`.
 */
export async function runCompare<R extends CompareAnswer> (models: string[], one: (model: string, index: number, onText: (text: string) => void) => Promise<R>, hooks: CompareHooks<R> = {}): Promise<Array<CompareOutcome<R>>> {
  const started = performance.now()
  return Promise.all(models.map(async (model, index): Promise<CompareOutcome<R>> => {
    let text = ''
    let outcome: CompareOutcome<R>
    try {
      const r = await one(model, index, (delta) => {
        if (!delta) return
        text += delta
        hooks.onDelta?.(index, delta)
      })
      outcome = { index, model, result: { ...r, text: text || r.text }, error: null, latencyMs: Math.round(performance.now() - started) }
    } catch (err) {
      outcome = { index, model, result: null, error: asMeshError(err), latencyMs: Math.round(performance.now() - started) }
    }
    hooks.onOutcome?.(outcome)
    return outcome
  }))
}

/** What the answered models used and cost together (failed ones count nothing here). */
export function compareTotals (outcomes: Array<CompareOutcome<CompareAnswer>>): { promptTokens: number, completionTokens: number, costNanoUsd: number } {
  let promptTokens = 0
  let completionTokens = 0
  let costNanoUsd = 0
  for (const o of outcomes) {
    if (!o.result) continue
    promptTokens += o.result.usage.promptTokens
    completionTokens += o.result.usage.completionTokens
    costNanoUsd += nanoUsd(o.result.costUsd ?? 0)
  }
  return { promptTokens, completionTokens, costNanoUsd }
}
