import { z } from 'zod'
import { modelName } from '../../../shared/protocol/common.ts'
import { MAX_MESSAGES, MAX_TOOLS, jsonSchema, toolCallId, toolName } from '../../../shared/protocol/chat.ts'

// The Anthropic Messages body, as Anthropic accepts it: user and assistant turns whose content is
// text or blocks (text, image, tool_use, tool_result), `system`, tools with an `input_schema`,
// `tool_choice`, `stop_sequences` and the sampling parameters. Extended thinking and server tools
// are refused by name; the few parameters nothing here acts on are listed in the ignored header.

const text = z.string().max(1_000_000)
const textBlock = z.object({ type: z.literal('text'), text }).passthrough()
const imageBlock = z.object({
  type: z.literal('image'),
  source: z.discriminatedUnion('type', [
    z.object({ type: z.literal('base64'), media_type: z.enum(['image/jpeg', 'image/png', 'image/gif', 'image/webp']), data: z.string().max(20_000_000) }).passthrough(),
    z.object({ type: z.literal('url'), url: z.string().max(20_000) }).passthrough()
  ], { error: 'source.type must be base64 or url' })
}).passthrough()
const toolUseBlock = z.object({ type: z.literal('tool_use'), id: toolCallId, name: toolName, input: z.record(z.string(), z.unknown()) }).passthrough()
const toolResultBlock = z.object({
  type: z.literal('tool_result'),
  tool_use_id: toolCallId,
  content: z.union([text, z.array(z.discriminatedUnion('type', [textBlock, imageBlock], { error: 'a tool result holds text or image blocks' })).max(256)]).optional(),
  is_error: z.boolean().optional()
}).passthrough()

const block = z.discriminatedUnion('type', [textBlock, imageBlock, toolUseBlock, toolResultBlock],
  { error: 'content blocks may be text, image, tool_use or tool_result' })
export type AnthropicBlock = z.infer<typeof block>

const message = z.object({
  role: z.enum(['user', 'assistant'], { error: 'role must be user or assistant (the system prompt goes in system)' }),
  content: z.union([text, z.array(block).max(256)])
}).passthrough()
export type AnthropicMessage = z.infer<typeof message>

const tool = z.object({
  // a server tool (web_search_…, bash_…) names its type; a client tool has none or 'custom'
  type: z.literal('custom', { error: 'only client tools (with input_schema) are supported, not server tools' }).optional(),
  name: toolName,
  description: z.string().max(100_000).optional(),
  input_schema: jsonSchema
}).passthrough()

const toolChoice = z.discriminatedUnion('type', [
  z.object({ type: z.literal('auto'), disable_parallel_tool_use: z.boolean().optional() }).passthrough(),
  z.object({ type: z.literal('any'), disable_parallel_tool_use: z.boolean().optional() }).passthrough(),
  z.object({ type: z.literal('tool'), name: toolName, disable_parallel_tool_use: z.boolean().optional() }).passthrough(),
  z.object({ type: z.literal('none') }).passthrough()
], { error: 'type must be auto, any, tool or none' })

export const messagesSchema = z.object({
  model: modelName,
  max_tokens: z.number({ error: 'is required: a number of tokens from 1 to 32768' }).int().min(1).max(32_768),
  messages: z.array(message).min(1, 'must hold at least one message').max(MAX_MESSAGES),
  system: z.union([text, z.array(textBlock).max(256)]).optional(),
  stop_sequences: z.array(z.string().min(1).max(100)).max(4).optional(),
  temperature: z.number().min(0).max(1).optional(),
  top_p: z.number().min(0).max(1).optional(),
  top_k: z.number().int().min(0).optional(),
  stream: z.boolean().optional(),
  tools: z.array(tool).max(MAX_TOOLS).optional(),
  tool_choice: toolChoice.optional(),
  metadata: z.object({ user_id: z.string().max(256).nullish() }).passthrough().optional(),
  thinking: z.object({ type: z.literal('disabled', { error: 'extended thinking is not supported' }) }).passthrough().optional()
}).passthrough()
export type MessagesBody = z.infer<typeof messagesSchema>

/** Anthropic parameters accepted for compatibility that nothing in the mesh acts on. */
const UNUSED = ['top_k', 'service_tier', 'container', 'mcp_servers']

export function unusedMessagesParams (body: Record<string, unknown>): string[] {
  return UNUSED.filter((k) => body[k] !== undefined && body[k] !== null)
}
