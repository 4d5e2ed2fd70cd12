import type { FastifyRequest } from 'fastify'
import { z } from 'zod'
import { MeshError } from '../../../shared/errors.ts'
import { modelName } from '../../../shared/protocol/common.ts'
import { GatewayProtocol } from '../../../shared/protocol/gateway.ts'
import { MAX_EMBED_INPUTS, type EmbedInput } from '../../../shared/protocol/inference.ts'
import type { Generation } from './generate.ts'
import { apiKeyOf, idempotencyKeyOf, parseBody, partKey } from './request.ts'
import { traceparentOf } from '../tracing.ts'

// POST /v1/embeddings: up to 2,048 inputs, as texts or token ids (an array of integers, or an array
// of such arrays), `dimensions`, float or base64 vectors. A batch goes to the gateway in parts of
// BATCH inputs, a few at a time: one RPC message stays well under the transport's 16 MB even for
// 3,072-dimension vectors, and each part is a request of its own (its own usage row and rate-limit
// count). The vectors come back in input order.

/** inputs per gateway request */
export const BATCH = 128
const PARALLEL = 4

const text = z.string().min(1, 'an input must not be empty').max(100_000)
const tokens = z.array(z.number().int().min(0).max(2 ** 31 - 1)).min(1, 'a token-id input must not be empty').max(100_000)
export const embeddingSchema = z.object({
  model: modelName,
  input: z.union([
    text,
    z.array(text).min(1, 'must hold at least one input').max(MAX_EMBED_INPUTS),
    tokens,
    z.array(tokens).min(1, 'must hold at least one input').max(MAX_EMBED_INPUTS)
  ]),
  encoding_format: z.enum(['float', 'base64']).nullish(),
  dimensions: z.number().int().min(1).max(65_536).nullish(),
  user: z.string().max(256).nullish()
}).passthrough()

export async function embeddings (req: FastifyRequest, deps: Pick<Generation, 'gateway'>) {
  const apiKey = apiKeyOf(req)
  const body = parseBody(embeddingSchema, req.body)
  const idem = idempotencyKeyOf(req)
  const inputs: EmbedInput[] = typeof body.input === 'string' || typeof body.input[0] === 'number' ? [body.input as EmbedInput] : body.input as EmbedInput[]
  const parts: EmbedInput[][] = []
  for (let i = 0; i < inputs.length; i += BATCH) parts.push(inputs.slice(i, i + BATCH))
  const results: Array<{ model: string, embeddings: number[][], usage: { promptTokens: number } }> = new Array(parts.length)
  let next = 0
  const run = async () => {
    while (next < parts.length) {
      const i = next++
      results[i] = await deps.gateway().call(GatewayProtocol.embed, {
        apiKey, model: body.model, input: parts[i]!, traceId: String(req.id), ...partKey(idem, i), ...(body.dimensions ? { dimensions: body.dimensions } : {})
      }, 60_000, traceparentOf(req))
    }
  }
  await Promise.all(Array.from({ length: Math.min(PARALLEL, parts.length) }, run))
  const vectors = results.flatMap((r) => r.embeddings)
  if (vectors.length !== inputs.length) throw MeshError.INTERNAL()
  // the official SDK asks for base64 (little-endian float32) and decodes it itself
  const encode = body.encoding_format === 'base64'
    ? (v: number[]) => Buffer.from(new Float32Array(v).buffer).toString('base64')
    : (v: number[]) => v
  const promptTokens = results.reduce((n, r) => n + r.usage.promptTokens, 0)
  return {
    object: 'list',
    data: vectors.map((embedding, index) => ({ object: 'embedding', index, embedding: encode(embedding) })),
    model: results[0]!.model,
    usage: { prompt_tokens: promptTokens, total_tokens: promptTokens }
  }
}
