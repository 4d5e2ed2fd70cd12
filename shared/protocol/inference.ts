import { z } from 'zod'
import { method, streamMethod } from '../mesh/method.ts'
import { modelName } from './common.ts'

// The inference worker. Gateways call these over the channel the worker opened to them (or over the
// worker's own server, for mesh members).

export const chatMessage = z.object({
  role: z.enum(['system', 'user', 'assistant']),
  content: z.string().max(1_000_000)
}).strict()
export type ChatMessage = z.infer<typeof chatMessage>

export const generationParams = {
  maxTokens: z.number().int().min(1).max(32_768).optional(),
  temperature: z.number().min(0).max(2).optional(),
  /** generation ends before the first of these; the text never contains it */
  stop: z.array(z.string().min(1).max(100)).max(4).optional()
}

export const processPromptRequest = z.object({
  requestId: z.string().min(1).max(100),
  model: modelName,
  messages: z.array(chatMessage).min(1).max(256),
  ...generationParams
}).strict()

/** one streamed frame; `cached` marks the first frame of an answer replayed from the response cache */
export interface TokenChunk { text: string, cached?: true }
export interface Usage { promptTokens: number, completionTokens: number }
export interface PromptResult { model: string, backend: string, usage: Usage, finishReason: 'stop' | 'length' | 'cancelled', ttftMs: number | null }

export interface ModelInfo { id: string, backend: string, contextLength?: number }
export interface ModelStatus { model: string, available: boolean, backend: string | null, inflight: number, served: number, errors: number }

export const embedRequest = z.object({
  requestId: z.string().min(1).max(100),
  model: modelName,
  input: z.array(z.string().min(1).max(100_000)).min(1).max(256)
}).strict()
export interface EmbedResult { model: string, embeddings: number[][], usage: { promptTokens: number } }

export const InferenceProtocol = {
  embed: method<z.infer<typeof embedRequest>, EmbedResult>('embed', { from: ['gateway', 'operator'] }, embedRequest),
  processPrompt: streamMethod<z.infer<typeof processPromptRequest>, PromptResult, TokenChunk>('processPrompt', { from: ['gateway', 'operator'] }, processPromptRequest),
  listAvailableModels: method<Record<string, never>, { models: ModelInfo[] }>('listAvailableModels', { from: ['gateway', 'operator'] }, z.object({}).strict()),
  getModelStatus: method<{ model: string }, ModelStatus>('getModelStatus', { from: ['gateway', 'operator'] }, z.object({ model: modelName }).strict())
}
