import { z } from 'zod'
import { modelName } from '../../../shared/protocol/common.ts'
import { MAX_MESSAGES, MAX_TOOLS, jsonSchema, toolCallId, toolName } from '../../../shared/protocol/chat.ts'

// The OpenAI Responses body, as OpenAI accepts it: `input` as a string or a list of items (messages
// with input_text / input_image parts, function calls and their outputs), `instructions`, function
// tools in the Responses' flat shape, `tool_choice`, `text.format` and the sampling parameters.
// Nothing is stored: `previous_response_id` and `conversation` are refused (./responses.ts).

const text = z.string().max(1_000_000)
const inputText = z.object({ type: z.literal('input_text'), text }).passthrough()
const outputText = z.object({ type: z.literal('output_text'), text }).passthrough()
const refusal = z.object({ type: z.literal('refusal'), refusal: text }).passthrough()
const inputImage = z.object({
  type: z.literal('input_image'),
  image_url: z.string().max(20_000_000).nullish(),
  file_id: z.string().nullish(),
  detail: z.enum(['auto', 'low', 'high']).nullish()
}).passthrough()
const part = z.discriminatedUnion('type', [inputText, outputText, refusal, inputImage],
  { error: 'content parts may be input_text, input_image, output_text or refusal' })
export type ResponsesPart = z.infer<typeof part>
const parts = z.array(part).max(256)

const message = z.object({
  type: z.literal('message'),
  role: z.enum(['user', 'system', 'developer', 'assistant'], { error: 'role must be user, system, developer or assistant' }),
  content: z.union([text, parts])
}).passthrough()

const functionCall = z.object({
  type: z.literal('function_call'),
  call_id: toolCallId,
  name: toolName,
  arguments: z.string().max(1_000_000)
}).passthrough()

const functionCallOutput = z.object({
  type: z.literal('function_call_output'),
  call_id: toolCallId,
  output: z.union([text, z.array(z.discriminatedUnion('type', [inputText, inputImage])).max(256)])
}).passthrough()

/** one input item: a typed item, or a message (whose `type` may be left out) */
const inputItem = z.preprocess(
  (v) => v && typeof v === 'object' && !Array.isArray(v) && (v as { type?: unknown }).type === undefined ? { ...v, type: 'message' } : v,
  z.discriminatedUnion('type', [message, functionCall, functionCallOutput], { error: 'type must be message, function_call or function_call_output (no other item type is supported)' })
)

const functionTool = z.object({
  type: z.literal('function', { error: 'only function tools are supported (hosted tools such as web_search are not)' }),
  name: toolName,
  description: z.string().max(100_000).nullish(),
  parameters: jsonSchema.nullish(),
  strict: z.boolean().nullish()
}).passthrough()

const toolChoice = z.union([
  z.enum(['none', 'auto', 'required']),
  z.object({ type: z.literal('function'), name: toolName }).passthrough()
], { error: 'tool_choice must be none, auto, required or { type: "function", name }' })

const format = z.discriminatedUnion('type', [
  z.object({ type: z.literal('text') }).passthrough(),
  z.object({ type: z.literal('json_object') }).passthrough(),
  z.object({
    type: z.literal('json_schema'),
    name: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1 to 64 letters, digits, _ or -'),
    description: z.string().max(10_000).nullish(),
    schema: jsonSchema,
    strict: z.boolean().nullish()
  }).passthrough()
], { error: 'type must be text, json_object or json_schema' })

export const responsesSchema = z.object({
  model: modelName,
  input: z.union([text, z.array(inputItem).min(1, 'must hold at least one item').max(MAX_MESSAGES)]),
  instructions: text.nullish(),
  stream: z.boolean().nullish(),
  max_output_tokens: z.number().int().min(1).max(32_768).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  top_logprobs: z.number().int().min(0).max(20).nullish(),
  user: z.string().max(256).nullish(),
  tools: z.array(functionTool).max(MAX_TOOLS).nullish(),
  tool_choice: toolChoice.nullish(),
  parallel_tool_calls: z.boolean().nullish(),
  text: z.object({ format: format.nullish() }).passthrough().nullish(),
  store: z.boolean().nullish(),
  previous_response_id: z.string().nullish(),
  conversation: z.unknown().optional(),
  background: z.boolean().nullish(),
  metadata: z.record(z.string(), z.string()).nullish()
}).passthrough()
export type ResponsesBody = z.infer<typeof responsesSchema>

/** Responses parameters accepted for compatibility that nothing in the mesh acts on (store: nothing is kept). */
const UNUSED = ['store', 'top_logprobs', 'metadata', 'reasoning', 'include', 'service_tier', 'truncation', 'prompt_cache_key', 'safety_identifier', 'max_tool_calls']

export function unusedResponsesParams (body: Record<string, unknown>): string[] {
  return UNUSED.filter((k) => body[k] !== undefined && body[k] !== null && !(k === 'store' && body[k] === false) && !(k === 'truncation' && body[k] === 'disabled'))
}
