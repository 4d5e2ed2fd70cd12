import { z } from 'zod'

// The chat request every API surface translates onto, and every backend translates from: messages
// (with images, tool calls and tool results), tool definitions, the response format and the sampling
// parameters. The gateway's infer method and the worker's processPrompt carry it unchanged, so the
// OpenAI routes, the SDK and any other API (Responses, Anthropic Messages) meet here. Names are the
// mesh's (camelCase); `PARAM_WIRE_NAMES` gives the OpenAI name of each, for messages and headers.

const TEXT_MAX = 1_000_000
export const MAX_TOOLS = 128
/** the most tool calls one answer may make */
export const MAX_TOOL_CALLS = 128
export const MAX_IMAGES = 16
export const MAX_MESSAGES = 2048

/** a function name, as OpenAI allows them (a little more room: some servers allow dots and colons) */
export const toolName = z.string().regex(/^[A-Za-z0-9_.:-]{1,128}$/, 'must be 1 to 128 letters, digits, _ . : or -')
/** a tool call's id: printable ASCII without spaces */
export const toolCallId = z.string().regex(/^[\x21-\x7e]{1,128}$/, 'must be 1 to 128 printable ASCII characters without spaces')
/** a JSON Schema, as an object; its size counts against the prompt */
export const jsonSchema = z.record(z.string(), z.unknown())

export const toolDefinition = z.object({
  name: toolName,
  description: z.string().max(100_000).optional(),
  /** the arguments' JSON Schema; absent: no arguments */
  parameters: jsonSchema.optional(),
  strict: z.boolean().optional()
}).strict()
export type ToolDefinition = z.infer<typeof toolDefinition>

export const toolCall = z.object({ id: toolCallId, name: toolName, arguments: z.string().max(TEXT_MAX) }).strict()
export type ToolCall = z.infer<typeof toolCall>

/** an image: an https URL or a data: URL; `detail` as OpenAI defines it */
export const imageInput = z.object({
  url: z.string().max(20_000_000).regex(/^(https?:|data:image\/)/i, 'must be an http(s) URL or a data:image/… URL'),
  detail: z.enum(['auto', 'low', 'high']).optional()
}).strict()
export type ImageInput = z.infer<typeof imageInput>

export const chatMessage = z.object({
  role: z.enum(['system', 'user', 'assistant', 'tool']),
  /** the text; images, tool calls and tool results travel in their own fields */
  content: z.string().max(TEXT_MAX),
  /** the participant's name (OpenAI `name`) */
  name: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1 to 64 letters, digits, _ or -').optional(),
  /** a user message's images, after its text */
  images: z.array(imageInput).max(MAX_IMAGES).optional(),
  /** the calls an assistant message made */
  toolCalls: z.array(toolCall).max(MAX_TOOL_CALLS).optional(),
  /** a tool message: the call it answers */
  toolCallId: toolCallId.optional()
}).strict().superRefine((m, ctx) => {
  if (m.role === 'tool' && m.toolCallId === undefined) ctx.addIssue({ code: 'custom', path: ['toolCallId'], message: 'a tool message must name the tool call it answers' })
  if (m.role !== 'tool' && m.toolCallId !== undefined) ctx.addIssue({ code: 'custom', path: ['toolCallId'], message: 'only a tool message answers a tool call' })
  if (m.toolCalls !== undefined && m.role !== 'assistant') ctx.addIssue({ code: 'custom', path: ['toolCalls'], message: 'only an assistant message makes tool calls' })
  if (m.images !== undefined && m.role !== 'user') ctx.addIssue({ code: 'custom', path: ['images'], message: 'only a user message carries images' })
})
export type ChatMessage = z.infer<typeof chatMessage>

export const toolChoice = z.union([z.enum(['auto', 'none', 'required']), z.object({ name: toolName }).strict()])
export type ToolChoice = z.infer<typeof toolChoice>

export const responseFormat = z.discriminatedUnion('type', [
  z.object({ type: z.literal('text') }).strict(),
  z.object({ type: z.literal('json_object') }).strict(),
  z.object({ type: z.literal('json_schema'), name: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1 to 64 letters, digits, _ or -'), description: z.string().max(10_000).optional(), schema: jsonSchema, strict: z.boolean().optional() }).strict()
])
export type ResponseFormat = z.infer<typeof responseFormat>

export const generationParams = {
  maxTokens: z.number().int().min(1).max(32_768).optional(),
  temperature: z.number().min(0).max(2).optional(),
  /** generation ends before the first of these; the text never contains it */
  stop: z.array(z.string().min(1).max(100)).max(4).optional(),
  topP: z.number().min(0).max(1).optional(),
  seed: z.number().int().min(-(2 ** 53) + 1).max(2 ** 53 - 1).optional(),
  presencePenalty: z.number().min(-2).max(2).optional(),
  frequencyPenalty: z.number().min(-2).max(2).optional(),
  /** token id (as a decimal string) → bias, -100 to 100 */
  logitBias: z.record(z.string().regex(/^\d{1,10}$/, 'keys must be token ids'), z.number().min(-100).max(100))
    .refine((b) => Object.keys(b).length <= 1024, 'at most 1024 tokens').optional(),
  logprobs: z.boolean().optional(),
  topLogprobs: z.number().int().min(0).max(20).optional(),
  /** the end user, for the backend's abuse monitoring */
  user: z.string().max(256).optional(),
  tools: z.array(toolDefinition).max(MAX_TOOLS).optional(),
  toolChoice: toolChoice.optional(),
  parallelToolCalls: z.boolean().optional(),
  responseFormat: responseFormat.optional()
}

/** The request fields a backend may or may not honour (backends/table.ts declares which it does). */
export type GenerationParam = Exclude<keyof typeof generationParams, 'maxTokens' | 'stop' | 'tools'> | 'messageName'

/** Each parameter's OpenAI name. */
export const PARAM_WIRE_NAMES: Record<GenerationParam, string> = {
  temperature: 'temperature',
  topP: 'top_p',
  seed: 'seed',
  presencePenalty: 'presence_penalty',
  frequencyPenalty: 'frequency_penalty',
  logitBias: 'logit_bias',
  logprobs: 'logprobs',
  topLogprobs: 'top_logprobs',
  user: 'user',
  toolChoice: 'tool_choice',
  parallelToolCalls: 'parallel_tool_calls',
  responseFormat: 'response_format',
  messageName: 'messages[].name'
}

export type GenerationRequest = { messages: ChatMessage[] } & { [K in keyof typeof generationParams]?: z.infer<typeof generationParams[K]> }

/** The parameters a request gives, by name (toolChoice 'auto' and a text format are the defaults, so not given). */
export function givenParams (req: GenerationRequest): GenerationParam[] {
  const given: GenerationParam[] = []
  for (const k of Object.keys(PARAM_WIRE_NAMES) as GenerationParam[]) {
    if (k === 'messageName') { if (req.messages.some((m) => m.name !== undefined)) given.push(k); continue }
    const v = req[k]
    if (v === undefined) continue
    if (k === 'toolChoice' && v === 'auto') continue
    if (k === 'responseFormat' && (v as ResponseFormat).type === 'text') continue
    if (k === 'logprobs' && v === false) continue
    given.push(k)
  }
  return given
}

/** Tool choices that name a tool the request does not define, or need tools it lacks: a field and why. */
export function toolProblem (req: Pick<GenerationRequest, 'tools' | 'toolChoice'>): { field: 'toolChoice', message: string } | null {
  const c = req.toolChoice
  if (c === undefined || c === 'auto' || c === 'none') return null
  const names = new Set((req.tools ?? []).map((t) => t.name))
  if (c === 'required' && names.size === 0) return { field: 'toolChoice', message: '"required" needs at least one tool in tools' }
  if (typeof c === 'object' && !names.has(c.name)) return { field: 'toolChoice', message: `names the function '${c.name}', which tools does not define` }
  return null
}

/** Every text of a request that reaches the model: what its prompt is counted (and bounded) by. */
export function promptTexts (req: GenerationRequest): string[] {
  const out: string[] = []
  for (const m of req.messages) {
    out.push(m.content)
    if (m.name) out.push(m.name)
    for (const c of m.toolCalls ?? []) out.push(c.name, c.arguments)
  }
  for (const t of req.tools ?? []) out.push(JSON.stringify(t))
  if (req.responseFormat?.type === 'json_schema') out.push(JSON.stringify(req.responseFormat.schema))
  return out
}

/** How many images a request carries. */
export function imageCount (req: Pick<GenerationRequest, 'messages'>): number {
  return req.messages.reduce((n, m) => n + (m.images?.length ?? 0), 0)
}

/** One token's log probability, and the most likely alternatives when asked. */
export interface TokenLogprob { token: string, logprob: number, topLogprobs?: Array<{ token: string, logprob: number }> }

/** A piece of a tool call as it streams: the first piece of an index carries id and name, later ones more arguments. */
export interface ToolCallDelta { index: number, id?: string, name?: string, arguments?: string }

export type FinishReason = 'stop' | 'length' | 'tool_calls' | 'cancelled' | 'content_filter'
