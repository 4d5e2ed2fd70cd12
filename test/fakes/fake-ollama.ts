import type http from 'node:http'
import { FAIL_MODEL, FAKE_TOOL_ARGUMENTS, FakeServer, SLOW_MODEL, countWords, fakeEmbedding, plan, readJson, sendJson, wantsToolCall } from './fake-llm.ts'

// A stand-in Ollama server speaking the real HTTP API: GET /api/tags, GET /api/version,
// POST /api/chat and /api/generate (NDJSON when streaming, one object otherwise).

export class FakeOllama extends FakeServer {
  protected async handle (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://x').pathname
    if (req.method === 'GET' && path === '/api/tags') return sendJson(res, 200, { models: this.models.map(tagEntry) })
    if (req.method === 'GET' && path === '/api/version') return sendJson(res, 200, { version: '0.12.6' })
    if (req.method === 'POST' && (path === '/api/chat' || path === '/api/generate')) return this.generate(req, res, path === '/api/chat')
    if (req.method === 'POST' && path === '/api/embed') return this.embed(req, res)
    sendJson(res, 404, { error: '404 page not found' })
  }

  private async embed (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const body = await readJson(req)
    this.bodies.push(body)
    if (!body || typeof body.model !== 'string') return sendJson(res, 400, { error: 'invalid request body' })
    if (!this.models.includes(body.model)) return sendJson(res, 404, { error: `model '${body.model}' not found` })
    if (body.model === FAIL_MODEL) return sendJson(res, 500, { error: 'llama runner process has terminated: exit status 2' })
    const input: string[] = typeof body.input === 'string' ? [body.input] : body.input
    sendJson(res, 200, { model: body.model, embeddings: input.map(fakeEmbedding), total_duration: 1000, load_duration: 100, prompt_eval_count: countWords(input.map((content) => ({ content }))) })
  }

  private async generate (req: http.IncomingMessage, res: http.ServerResponse, chat: boolean): Promise<void> {
    const body = await readJson(req)
    this.bodies.push(body)
    if (!body || typeof body.model !== 'string') return sendJson(res, 400, { error: 'invalid request body' })
    const model: string = body.model
    if (!this.models.includes(model)) return sendJson(res, 404, { error: `model '${model}' not found` })
    if (model === FAIL_MODEL) return sendJson(res, 500, { error: 'llama runner process has terminated: exit status 2' })

    const p = plan(model, body.options?.num_predict)
    const promptTokens = chat ? countWords(Array.isArray(body.messages) ? body.messages : []) : countWords([{ content: body.prompt }])
    const logprobs = (text: string) => body.logprobs ? { logprobs: [{ token: text, logprob: -0.25, top_logprobs: Array.from({ length: body.top_logprobs ?? 0 }, (_, i) => ({ token: `${text}#${i}`, logprob: -1 - i })) }] } : {}
    const part = (text: string) => chat
      ? { model, created_at: new Date().toISOString(), message: { role: 'assistant', content: text }, done: false, ...(text ? logprobs(text) : {}) }
      : { model, created_at: new Date().toISOString(), response: text, done: false }
    const final = () => ({
      ...part(''),
      done: true,
      done_reason: p.capped ? 'length' : 'stop',
      total_duration: 1_000_000,
      load_duration: 100_000,
      prompt_eval_count: promptTokens,
      prompt_eval_duration: 100_000,
      eval_count: p.tokens.length,
      eval_duration: 800_000
    })

    // a tool call comes whole, in one message, as Ollama sends it
    const tool = chat ? wantsToolCall(body) : null
    if (tool) {
      res.writeHead(200, { 'content-type': 'application/x-ndjson' })
      res.write(JSON.stringify({ ...part(''), message: { role: 'assistant', content: '', tool_calls: [{ function: { name: tool, arguments: JSON.parse(FAKE_TOOL_ARGUMENTS) } }] } }) + '\n')
      res.end(JSON.stringify({ ...final(), done_reason: 'stop', eval_count: 1 }) + '\n')
      return
    }
    if (body.stream === false) {
      const text = p.tokens.join('')
      return sendJson(res, 200, chat ? { ...final(), message: { role: 'assistant', content: text } } : { ...final(), response: text })
    }
    res.writeHead(200, { 'content-type': 'application/x-ndjson' })
    await this.stream(res, p,
      (text) => res.write(JSON.stringify(part(text)) + '\n'),
      () => res.end(JSON.stringify(final()) + '\n'))
  }
}

function tagEntry (name: string) {
  return {
    name,
    model: name,
    modified_at: '2025-01-01T00:00:00Z',
    size: 1_000_000,
    digest: 'sha256:' + '0'.repeat(64),
    details: { parent_model: '', format: 'gguf', family: 'llama', families: ['llama'], parameter_size: '1B', quantization_level: 'Q4_0' }
  }
}

/** Starts a fake Ollama on 127.0.0.1 (random port). Serves `models`, plus the `slow` and `fail-500` specials by default. */
export function startFakeOllama (opts: { models?: string[] } = {}): Promise<FakeOllama> {
  return new FakeOllama(opts.models ?? ['tiny', SLOW_MODEL, FAIL_MODEL]).listen()
}
