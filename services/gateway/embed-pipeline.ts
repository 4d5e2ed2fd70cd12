import crypto from 'node:crypto'
import { MeshError } from '../../shared/errors.ts'
import { sha256Hex } from '../../shared/apikey.ts'
import type { RequestOf, ResponseOf } from '../../shared/mesh/method.ts'
import type { GatewayProtocol } from '../../shared/protocol/gateway.ts'
import type { EmbedInput } from '../../shared/protocol/inference.ts'
import { BACKENDS } from '../inference/backends/table.ts'
import { chargedPrompt, count, measurePrompt, plus, toUsd } from './limits.ts'
import type { RequestTrace } from './request-trace.ts'
import type { Caller, PipelineDeps } from './pipeline.ts'

// One embedding request, the same steps as a chat request's (pipeline.ts) without a stream: validate
// its size → authenticate and permit → count the text (token ids count one each) and hold it →
// dispatch → settle on the worker's count, bounded by what was held.

export type EmbedRequest = RequestOf<typeof GatewayProtocol.embed>
export type EmbedResponse = ResponseOf<typeof GatewayProtocol.embed>

export async function runEmbed (deps: PipelineDeps, req: EmbedRequest, caller: Pick<Caller, 'signal'>, trace: RequestTrace | null): Promise<EmbedResponse> {
  const started = Date.now()
  const input: EmbedInput[] = typeof req.input === 'string' || req.input.every((x) => typeof x === 'number') ? [req.input as EmbedInput] : req.input as EmbedInput[]
  const texts = input.filter((x): x is string => typeof x === 'string')
  const ids = input.reduce((n, x) => n + (typeof x === 'string' ? 0 : x.length), 0)
  checkEmbedSize(texts, ids, deps.maxPromptChars ?? 100_000)
  const { admission } = deps
  trace?.next('admission.authenticate')
  const identity = await admission.authenticate(req.apiKey)
  deps.safety?.checkKey(identity)
  trace?.next('admission.hold', { 'hyperinfer.model': req.model })
  admission.permit(identity, req.model)
  if (ids > 0) {
    const backend = deps.listings.describe(req.model)?.backend
    const caps = BACKENDS.find((b) => b.id === backend)?.capabilities
    if (caps && !caps.tokenInput) throw MeshError.BAD_REQUEST(`model '${req.model}' (${backend}) does not take token-id input; send text`, { param: 'input' })
  }
  // token ids are tokens already: each holds and counts as one
  const prompt = plus(await measurePrompt(texts), ids)
  if (caller.signal.aborted) throw MeshError.CANCELLED('the caller cancelled the request')
  const id = crypto.randomUUID()
  trace?.set('hyperinfer.request_id', id)
  await admission.hold(identity, req.model, { id, kind: 'embed', promptHold: prompt.hold, completionTokens: 0, trace: req.traceId ?? trace?.traceId ?? null, promptHash: sha256Hex(JSON.stringify(input)) })
  trace?.next('dispatch', undefined, 'client')
  const out = await deps.dispatch.embed({ requestId: id, model: req.model, input, ...(req.dimensions !== undefined ? { dimensions: req.dimensions } : {}) }, caller.signal, trace?.traceparent)
  trace?.note({ 'hyperinfer.worker': out.worker?.slice(0, 16), 'hyperinfer.attempts': out.attempts })
  trace?.next('settlement')
  if (!out.ok) {
    const err = out.err instanceof MeshError ? out.err : MeshError.INTERNAL()
    await deps.settler.settle({
      id, model: req.model, status: caller.signal.aborted ? 'cancelled' : 'failed', worker: out.worker, tokensIn: 0, tokensOut: 0, started, ttftMs: null,
      error: { code: err.code, message: err.message }
    })
    throw err
  }
  const tokensIn = await chargedPrompt(count(out.value?.usage?.promptTokens), prompt)
  const cost = await deps.settler.settle({ id, model: req.model, status: 'success', worker: out.worker, tokensIn, tokensOut: 0, started, ttftMs: null, error: null })
  deps.metrics.countTokens(req.model, tokensIn, 0)
  deps.metrics.observeInference(req.model, (Date.now() - started) / 1000)
  return { ...out.value, usage: { ...out.value.usage, promptTokens: tokensIn }, id, worker: out.worker, costUsd: toUsd(cost) }
}

/** Embedding inputs: each within the prompt limit, all together within ten times it. */
function checkEmbedSize (texts: string[], ids: number, max: number): void {
  const long = texts.findIndex((t) => t.length > max)
  if (long >= 0) throw MeshError.PROMPT_TOO_LARGE(`input ${long} is ${texts[long]!.length} characters; the limit per input is ${max}`)
  const chars = texts.reduce((n, t) => n + t.length, 0) + ids
  if (chars > max * 10) throw MeshError.PROMPT_TOO_LARGE(`the inputs are ${chars} characters (token ids count one each); the limit is ${max * 10}`)
}
