import http from 'node:http'
import type { AddressInfo } from 'node:net'

// What the fake Ollama and OpenAI servers have in common: the reply they stream, their token
// counting, and the node:http plumbing. The reply is deterministic so tests can assert on it.

export const FAKE_DEFAULT_TOKENS = 8
/** Streams one token every 50 ms, for a long time (cancel tests). */
export const SLOW_MODEL = 'slow'
/** Always answers HTTP 500. */
export const FAIL_MODEL = 'fail-500'
/** Streams the last user message back, word by word (what a model repeating its prompt would send). */
export const ECHO_MODEL = 'echo'

const SLOW_TOKENS = 10_000
const SLOW_DELAY_MS = 50

/** The reply to any prompt: 'Hello', ' from', ' <model>', ' 3', ' 4', ... (`count` tokens). */
export function fakeTokens (model: string, count = FAKE_DEFAULT_TOKENS): string[] {
  return Array.from({ length: count }, (_, i) => i === 0 ? 'Hello' : i === 1 ? ' from' : i === 2 ? ` ${model}` : ` ${i}`)
}

/** The fakes' prompt "tokenizer": whitespace-separated words over all messages, at least 1. */
export function countWords (messages: Array<{ content?: unknown }>): number {
  return Math.max(1, messages.reduce((n, m) => n + String(m.content ?? '').split(/\s+/).filter(Boolean).length, 0))
}

export interface Plan { tokens: string[], delayMs: number, capped: boolean }

/** The echo model's reply: the last user message, a token per word (spaces kept). */
export function echoPlan (messages: Array<{ role?: unknown, content?: unknown }>): Plan {
  const last = [...messages].reverse().find((m) => m.role === 'user')
  return { tokens: String(last?.content ?? '').split(/(?=\s)/), delayMs: 5, capped: false }
}

/** What a fake model streams for a request with this token cap. */
export function plan (model: string, maxTokens: unknown): Plan {
  const cap = typeof maxTokens === 'number' && maxTokens > 0 ? maxTokens : undefined
  if (model === SLOW_MODEL) return { tokens: fakeTokens(model, cap ?? SLOW_TOKENS), delayMs: SLOW_DELAY_MS, capped: cap !== undefined }
  return { tokens: fakeTokens(model, cap ?? FAKE_DEFAULT_TOKENS), delayMs: 0, capped: cap !== undefined }
}

export abstract class FakeServer {
  url = ''
  /** HTTP requests received */
  requests = 0
  /** streaming responses whose client disconnected before the end */
  aborted = 0
  /** every JSON body received, in order: what the adapter sent, for tests to check field by field */
  readonly bodies: any[] = []
  protected models: string[]
  private readonly server: http.Server

  constructor (models: string[]) {
    this.models = models
    this.server = http.createServer((req, res) => {
      this.requests++
      this.handle(req, res).catch(() => { if (!res.headersSent) res.writeHead(500); res.end() })
    })
  }

  protected abstract handle (req: http.IncomingMessage, res: http.ServerResponse): Promise<void>

  setModels (models: string[]): void { this.models = [...models] }

  async listen (): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve))
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`
    return this
  }

  /** Stops listening and drops open connections (clients keep sockets alive). */
  async close (): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()))
    this.server.closeAllConnections()
    await closed
  }

  /** Writes `plan.tokens` via `emit`, paced, then `finish`; counts clients that leave early. */
  protected async stream (res: http.ServerResponse, p: Plan, emit: (text: string) => void, finish: () => void): Promise<void> {
    let gone = false
    res.on('close', () => { if (!res.writableEnded) { gone = true; this.aborted++ } })
    res.flushHeaders()
    for (const text of p.tokens) {
      if (p.delayMs) await new Promise((resolve) => setTimeout(resolve, p.delayMs))
      if (gone) return
      emit(text)
    }
    finish()
  }
}

export async function readJson (req: http.IncomingMessage): Promise<any> {
  const parts: Buffer[] = []
  for await (const chunk of req) parts.push(chunk as Buffer)
  try { return JSON.parse(Buffer.concat(parts).toString('utf8') || '{}') } catch { return null }
}

export function sendJson (res: http.ServerResponse, status: number, body: unknown): void {
  const data = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(data) })
  res.end(data)
}

/** The fakes' tool call: the first tool, with these arguments, streamed in two pieces. */
export const FAKE_TOOL_ARGUMENTS = '{"city":"Paris","days":3}'

/** Whether a fake answers this chat body with a call of its first tool: tools given, not refused, not just answered. */
export function wantsToolCall (body: any): string | null {
  const tools = Array.isArray(body?.tools) ? body.tools : []
  if (tools.length === 0 || body.tool_choice === 'none') return null
  const last = Array.isArray(body.messages) ? body.messages[body.messages.length - 1] : null
  if (last?.role === 'tool') return null
  return tools[0]?.function?.name ?? null
}

/** Deterministic 8-dimension vectors, so tests can check each input got its own. */
export function fakeEmbedding (text: string): number[] {
  return Array.from({ length: 8 }, (_, i) => ((text.charCodeAt(i % Math.max(1, text.length)) || 0) % 17) / 17 + i)
}
