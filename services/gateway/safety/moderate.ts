import crypto from 'node:crypto'
import type { RequestOf } from '../../../shared/mesh/method.ts'
import type { ModerationVerdict, SafetyProtocol } from '../../../shared/protocol/safety.ts'
import { CATEGORIES, categoriesIn, type Category } from './detectors.ts'
import type { ModerationModel } from './model-moderation.ts'
import type { CancelSignal } from '../../../shared/mesh/cancel.ts'

// Moderation of any text on request (/v1/moderations): each input goes through the built-in
// detectors and, when the mesh serves a moderation model, through the model as well. A category is
// true when either found it; its score is 1 when found and 0 when not (the detectors are rules, not
// probabilities; a model's verdict is a yes or no too). Any category found flags the input.

export async function moderate (req: RequestOf<typeof SafetyProtocol.moderate>, opts: { model: ModerationModel | null, signal: CancelSignal }): Promise<{ id: string, model: string, results: ModerationVerdict[] }> {
  const inputs = typeof req.input === 'string' ? [req.input] : req.input
  const model = opts.model?.model(req.model) ?? null
  const results = await Promise.all(inputs.map(async (text) => {
    const found = new Set<Category>(categoriesIn(text))
    const detectors = ['builtin']
    if (model && text.trim()) {
      const verdict = await opts.model!.classify(model, [{ role: 'user', content: text }], opts.signal)
      if (verdict) {
        detectors.push(model)
        for (const c of verdict.categories) found.add(c)
      }
    }
    const categories = Object.fromEntries(CATEGORIES.map((c) => [c, found.has(c)]))
    const categoryScores = Object.fromEntries(CATEGORIES.map((c) => [c, found.has(c) ? 1 : 0]))
    return { flagged: found.size > 0, categories, categoryScores, detectors }
  }))
  return { id: 'modr-' + crypto.randomUUID(), model: model ?? 'hyperinfer-builtin', results }
}
