import { MeshError } from '../../shared/errors.ts'
import type { RequestOf } from '../../shared/mesh/method.ts'
import type { AiResponse, GatewayProtocol } from '../../shared/protocol/gateway.ts'
import type { Caller, RequestPipeline } from './pipeline.ts'
import { route, type Weights } from './router.ts'

// The task-level request: the caller names a task and preferences, the router picks the model, and
// the request runs through the pipeline as an inference or an embedding. Embedding tasks try
// embedding-named models first and move on from models that cannot embed.

const EMBED_TASK = /^embed(ding)?s?$/i

export async function aiRequest (pipeline: RequestPipeline, req: RequestOf<typeof GatewayProtocol.aiRequest>, caller: Pick<Caller, 'signal' | 'span'>): Promise<AiResponse> {
  const { admission, listings } = pipeline.deps
  await admission.authenticate(req.apiKey) // a bad key is refused before anything is routed
  const weights: Weights | undefined = req.preferences ? { latency: req.preferences.speed ?? 0, cost: req.preferences.cost ?? 0, quality: req.preferences.quality ?? 0 } : undefined
  const candidates = listings.candidates()
  if (candidates.length === 0) throw MeshError.NO_WORKER('no inference worker is connected')
  // a task no served model is tagged with routes over all of them (the reason says so)
  const task = req.task.toLowerCase()
  const tagged = !EMBED_TASK.test(task) && candidates.some((c) => c.tasks.includes(task))
  const routing = route(candidates, { strategy: 'hybrid', ...(weights ? { weights } : {}), ...(tagged ? { task } : {}) })

  if (EMBED_TASK.test(req.task)) {
    const input = typeof req.input === 'string' ? req.input : req.input.map((m) => m.content).join('\n')
    const order = [...routing.ranked].sort((a, b) => Number(/embed/i.test(b.id)) - Number(/embed/i.test(a.id)))
    let last: unknown = null
    for (const choice of order.slice(0, 3)) {
      try {
        const r = await pipeline.embed({ apiKey: req.apiKey, model: choice.id, input }, caller)
        const reason = choice.id === routing.ranked[0]!.id ? routing.reason : `${choice.id}: the first model that makes embeddings, in order of score`
        return { id: r.id, model: r.model, worker: r.worker, response: r.embeddings, usage: { tokens: r.usage.promptTokens, promptTokens: r.usage.promptTokens, completionTokens: 0, cost: r.costUsd }, routing: { ...routing, reason } }
      } catch (err) {
        last = err
        const code = err instanceof MeshError ? err.code : undefined
        if (code !== 'BAD_REQUEST' && code !== 'BACKEND_ERROR') throw err
      }
    }
    throw last instanceof MeshError ? last : MeshError.NO_WORKER('no model could make embeddings')
  }

  const model = routing.ranked[0]!.id
  // not streamed: the answer comes whole, so no frame is ever emitted
  const r = await pipeline.infer({
    apiKey: req.apiKey, model, stream: false,
    ...(typeof req.input === 'string' ? { prompt: req.input } : { messages: req.input }),
    ...(req.maxTokens !== undefined ? { maxTokens: req.maxTokens } : {})
  }, { signal: caller.signal, emit: () => {}, span: caller.span })
  return {
    id: r.id, model: r.model, worker: r.worker, response: r.text,
    usage: { tokens: r.usage.promptTokens + r.usage.completionTokens, promptTokens: r.usage.promptTokens, completionTokens: r.usage.completionTokens, cost: r.costUsd },
    routing
  }
}
