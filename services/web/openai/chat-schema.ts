import { z } from 'zod'
import { modelName } from '../../../shared/protocol/common.ts'
import { MAX_MESSAGES, MAX_TOOLS, jsonSchema, toolCallId, toolName } from '../../../shared/protocol/chat.ts'

// The OpenAI chat-completions and completions bodies, as OpenAI accepts them. Every parameter is
// either acted on (translated onto the mesh's request: ./chat.ts) or, for the few OpenAI-only
// ones, accepted and reported in the x-hyperinfer-ignored-params header (UNUSED_PARAMS).

const text = z.string().max(1_000_000)
const textPart = z.object({ type: z.literal('text'), text }).passthrough()
const imagePart = z.object({
  type: z.literal('image_url'),
  image_url: z.object({ url: z.string().max(20_000_000), detail: z.enum(['auto', 'low', 'high']).optional() }).passthrough()
}).passthrough()
const refusalPart = z.object({ type: z.literal('refusal'), refusal: text }).passthrough()
const name = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1 to 64 letters, digits, _ or -').optional()
const textContent = z.union([text, z.array(textPart).max(256)])

const toolCallIn = z.object({
  id: toolCallId,
  type: z.literal('function').optional(),
  function: z.object({ name: toolName, arguments: z.string().max(1_000_000) }).passthrough()
}).passthrough()

export const openAIMessage = z.discriminatedUnion('role', [
  z.object({ role: z.enum(['system', 'developer']), content: textContent, name }).passthrough(),
  z.object({
    role: z.literal('user'),
    content: z.union([text, z.array(z.discriminatedUnion('type', [textPart, imagePart], { error: 'content parts may be text or image_url' })).max(256)]),
    name
  }).passthrough(),
  z.object({
    role: z.literal('assistant'),
    content: z.union([text, z.array(z.union([textPart, refusalPart])).max(256)]).nullish(),
    name,
    tool_calls: z.array(toolCallIn).max(128).nullish(),
    refusal: text.nullish()
  }).passthrough(),
  z.object({ role: z.literal('tool'), content: textContent, tool_call_id: toolCallId }).passthrough()
], { error: 'role must be system, developer, user, assistant or tool' })
export type OpenAIMessage = z.infer<typeof openAIMessage>

const tool = z.object({
  type: z.literal('function'),
  function: z.object({ name: toolName, description: z.string().max(100_000).optional(), parameters: jsonSchema.optional(), strict: z.boolean().nullish() }).passthrough()
}).passthrough()

const toolChoice = z.union([
  z.enum(['none', 'auto', 'required']),
  z.object({ type: z.literal('function'), function: z.object({ name: toolName }).passthrough() }).passthrough()
])

const responseFormat = z.discriminatedUnion('type', [
  z.object({ type: z.literal('text') }).passthrough(),
  z.object({ type: z.literal('json_object') }).passthrough(),
  z.object({
    type: z.literal('json_schema'),
    json_schema: z.object({
      name: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1 to 64 letters, digits, _ or -'),
      description: z.string().max(10_000).optional(),
      schema: jsonSchema.optional(),
      strict: z.boolean().nullish()
    }).passthrough()
  }).passthrough()
], { error: 'type must be text, json_object or json_schema' })

/** the most choices one request may ask for (each runs, and is billed, as its own request) */
export const MAX_CHOICES = 16

const stop = z.union([z.string().min(1).max(100), z.array(z.string().min(1).max(100)).max(4)]).nullish()
export const sampling = {
  model: modelName,
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().nullish() }).passthrough().nullish(),
  max_tokens: z.number().int().min(1).max(32_768).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  n: z.number().int().min(1).max(MAX_CHOICES).nullish(),
  stop,
  seed: z.number().int().nullish(),
  presence_penalty: z.number().min(-2).max(2).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  logit_bias: z.record(z.string().regex(/^\d{1,10}$/, 'keys must be token ids'), z.number().min(-100).max(100)).nullish(),
  user: z.string().max(256).nullish()
}

export const chatCompletionSchema = z.object({
  ...sampling,
  messages: z.array(openAIMessage).min(1, 'must hold at least one message').max(MAX_MESSAGES),
  max_completion_tokens: z.number().int().min(1).max(32_768).nullish(),
  logprobs: z.boolean().nullish(),
  top_logprobs: z.number().int().min(0).max(20).nullish(),
  tools: z.array(tool).max(MAX_TOOLS).nullish(),
  tool_choice: toolChoice.nullish(),
  parallel_tool_calls: z.boolean().nullish(),
  response_format: responseFormat.nullish()
}).passthrough()
export type ChatBody = z.infer<typeof chatCompletionSchema>

export const completionSchema = z.object({
  ...sampling,
  prompt: z.union([
    z.string().max(1_000_000),
    z.array(z.string().max(1_000_000)).min(1).max(64),
    z.array(z.number().int()).min(1),
    z.array(z.array(z.number().int())).min(1)
  ]),
  echo: z.boolean().nullish(),
  /** the completions API's logprobs: how many alternatives per token (0 to 5) */
  logprobs: z.number().int().min(0).max(5).nullish(),
  best_of: z.number().int().min(1).max(MAX_CHOICES).nullish(),
  suffix: z.string().max(100_000).nullish()
}).passthrough()
export type CompletionBody = z.infer<typeof completionSchema>

/** OpenAI parameters accepted for compatibility that nothing in the mesh acts on. */
export const UNUSED_PARAMS = ['service_tier', 'store', 'metadata', 'reasoning_effort', 'modalities', 'audio', 'prediction', 'web_search_options', 'functions', 'function_call', 'suffix', 'best_of', 'verbosity', 'prompt_cache_key', 'safety_identifier']

/** The unused parameters a body gives. */
export function unusedGiven (body: Record<string, unknown>): string[] {
  return UNUSED_PARAMS.filter((k) => body[k] !== undefined && body[k] !== null && !(k === 'best_of' && body[k] === 1))
}
