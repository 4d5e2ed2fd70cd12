import crypto from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { MeshError } from '../../../shared/errors.ts'
import type { TokenLogprob } from '../../../shared/protocol/chat.ts'
import type { InferResult } from '../../../shared/protocol/gateway.ts'
import { MAX_CHOICES, completionSchema, unusedGiven } from './chat-schema.ts'
import { chatRequest, usageOf } from './chat.ts'
import { generateStream, generateWhole, type EventShape, type Generation } from './generate.ts'
import { apiKeyOf, idempotencyKeyOf, parseBody } from './request.ts'

// POST /v1/completions: each prompt (a string, or an array of them) becomes one user message, `n`
// choices each; choice i*n+j is prompt i's j-th. `echo` puts the prompt before the answer; `logprobs`
// (0 to 5) is the number of alternatives per token, in the legacy shape.

function legacyLogprobs (l: TokenLogprob[] | undefined, offset: number) {
  if (!l) return null
  let at = offset
  const textOffset = l.map((e) => { const o = at; at += e.token.length; return o })
  return {
    tokens: l.map((e) => e.token),
    token_logprobs: l.map((e) => e.logprob),
    top_logprobs: l.map((e) => Object.fromEntries((e.topLogprobs ?? []).map((a) => [a.token, a.logprob]))),
    text_offset: textOffset
  }
}

export async function completions (req: FastifyRequest, reply: FastifyReply, deps: Pick<Generation, 'gateway' | 'rpcTimeoutMs'>): Promise<void> {
  const apiKey = apiKeyOf(req)
  const body = parseBody(completionSchema, req.body)
  const p = body.prompt
  if (Array.isArray(p) && p.some((x) => typeof x !== 'string')) throw MeshError.BAD_REQUEST('prompt: token-id prompts are not supported; send the text', { param: 'prompt' })
  const prompts = typeof p === 'string' ? [p] : p as string[]
  const n = body.n ?? 1
  if (prompts.length * n > 64) throw MeshError.BAD_REQUEST(`prompt: ${prompts.length} prompts × n=${n} is more than 64 choices`, { param: 'prompt' })
  if (n > MAX_CHOICES) throw MeshError.BAD_REQUEST(`n: at most ${MAX_CHOICES}`, { param: 'n' })
  const asked = body.logprobs ?? undefined
  const choices = prompts.flatMap((prompt) => {
    const one = chatRequest({ ...body, messages: [{ role: 'user', content: prompt }], logprobs: asked !== undefined, top_logprobs: asked, tools: undefined, tool_choice: undefined, response_format: undefined } as never)
    if (asked === undefined) { delete one.logprobs; delete one.topLogprobs }
    return Array.from({ length: n }, () => one)
  })
  const echo = (i: number) => body.echo ? prompts[Math.floor(i / n)]! : ''
  const g: Generation = { ...deps, apiKey, choices, unused: unusedGiven(body) , idempotencyKey: idempotencyKeyOf(req) }
  const id = 'cmpl-' + crypto.randomUUID()
  const created = Math.floor(Date.now() / 1000)
  const obj = (model: string, choices: unknown[], extra: object = {}) => ({ id, object: 'text_completion', created, model, choices, ...extra })
  const finish = (r: InferResult) => r.finishReason === 'cancelled' || r.finishReason === 'tool_calls' ? 'stop' : r.finishReason
  if (body.stream !== true) {
    await generateWhole(req, reply, g, (results) => obj(results[0]!.model,
      results.map((r, index) => ({ index, text: echo(index) + r.text, logprobs: legacyLogprobs(r.logprobs, echo(index).length), finish_reason: finish(r) })),
      { usage: usageOf(results) }))
    return
  }
  const events: EventShape = {
    frame: (index, c, first) => c.text || first ? obj(body.model, [{ index, text: (first ? echo(index) : '') + c.text, logprobs: legacyLogprobs(c.logprobs, 0), finish_reason: null }]) : null,
    finish: (index, r) => obj(r.model, [{ index, text: '', logprobs: null, finish_reason: finish(r) }]),
    usage: (results) => obj(results[0]!.model, [], { usage: usageOf(results) })
  }
  await generateStream(req, reply, g, events, body.stream_options?.include_usage === true)
}
