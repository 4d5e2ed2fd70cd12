import http from 'node:http'
import type { AddressInfo } from 'node:net'

// Stand-ins for AI backends that speak the real wire protocols over HTTP on 127.0.0.1, so the
// adapters are driven through the official `ollama` and `openai` clients exactly as in production.
// Model 'fail-500' answers HTTP 500; model 'slow' streams one token every 50 ms for a long time.
// Text: 'Hello from <model> token 3 …' one word per token, `max tokens` of them (default 8).

export interface FakeBackend {
  url: string
  /** streamed responses whose client went away before the end */
  aborted: number
  requests: number
  close (): Promise<void>
}

export function fakeTokens (model: string, n: number): string[] {
  const words = ['Hello', ' from', ` ${model}`]
  return Array.from({ length: n }, (_, i) => words[i] ?? ` token${i}`)
}

async function listen (server: http.Server, state: FakeBackend): Promise<FakeBackend> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()))
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  state.close = () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) })
  return state
}

async function body (req: http.IncomingMessage): Promise<any> {
  let data = ''
  for await (const chunk of req) data += chunk
  try { return JSON.parse(data || '{}') } catch { return null }
}

/** Stream `tokens` with `write`, `delay` ms apart, stopping (and counting) if the client leaves. */
async function streamTokens (res: http.ServerResponse, state: FakeBackend, count: number, delay: number, write: (i: number) => void): Promise<boolean> {
  let gone = false
  res.on('close', () => { if (!res.writableFinished) gone = true })
  for (let i = 0; i < count; i++) {
    if (gone) { state.aborted++; return false }
    write(i)
    if (delay) await new Promise((r) => setTimeout(r, delay))
  }
  return !gone
}

export async function startFakeOllama (models = ['llama3.2', 'fail-500', 'slow']): Promise<FakeBackend> {
  const state: FakeBackend = { url: '', aborted: 0, requests: 0, close: async () => {} }
  const server = http.createServer(async (req, res) => {
    state.requests++
    const json = (status: number, obj: unknown) => { res.writeHead(status, { 'content-type': 'application/json' }); res.end(JSON.stringify(obj)) }
    if (req.method === 'GET' && req.url === '/api/tags') {
      return json(200, { models: models.map((name) => ({ name, model: name, modified_at: '2026-01-01T00:00:00Z', size: 1, digest: 'x', details: {} })) })
    }
    if (req.method === 'GET' && req.url === '/api/version') return json(200, { version: '0.0.0-fake' })
    if (req.method === 'POST' && req.url === '/api/chat') {
      const b = await body(req)
      if (!b || !Array.isArray(b.messages)) return json(400, { error: 'invalid request' })
      if (!models.includes(b.model)) return json(404, { error: `model '${b.model}' not found` })
      if (b.model === 'fail-500') return json(500, { error: 'the model runner crashed' })
      const slow = b.model === 'slow'
      const n = slow ? 10_000 : (b.options?.num_predict ?? 8)
      const tokens = fakeTokens(b.model, Math.min(n, 10_000))
      const promptWords = b.messages.map((m: { content: string }) => m.content).join(' ').split(/\s+/).filter(Boolean).length
      const line = (o: unknown) => res.write(JSON.stringify(o) + '\n')
      if (b.stream === false) {
        return json(200, { model: b.model, created_at: new Date().toISOString(), message: { role: 'assistant', content: tokens.join('') }, done: true, done_reason: b.options?.num_predict ? 'length' : 'stop', prompt_eval_count: promptWords, eval_count: tokens.length })
      }
      res.writeHead(200, { 'content-type': 'application/x-ndjson' })
      const finished = await streamTokens(res, state, tokens.length, slow ? 50 : 0, (i) =>
        line({ model: b.model, created_at: new Date().toISOString(), message: { role: 'assistant', content: tokens[i] }, done: false }))
      if (!finished) return
      line({ model: b.model, created_at: new Date().toISOString(), message: { role: 'assistant', content: '' }, done: true, done_reason: b.options?.num_predict ? 'length' : 'stop', prompt_eval_count: promptWords, eval_count: tokens.length })
      return res.end()
    }
    json(404, { error: 'not found' })
  })
  return listen(server, state)
}

export async function startFakeOpenAI (opts: { apiKey: string, models?: string[] }): Promise<FakeBackend> {
  const models = opts.models ?? ['gpt-fake', 'fail-500', 'slow']
  const state: FakeBackend = { url: '', aborted: 0, requests: 0, close: async () => {} }
  const server = http.createServer(async (req, res) => {
    state.requests++
    const json = (status: number, obj: unknown) => { res.writeHead(status, { 'content-type': 'application/json' }); res.end(JSON.stringify(obj)) }
    const error = (status: number, message: string, type: string, code: string | null) => json(status, { error: { message, type, param: null, code } })
    if (req.headers.authorization !== `Bearer ${opts.apiKey}`) {
      // like the real API, the message quotes part of the key it was given
      const given = String(req.headers.authorization ?? '').replace(/^Bearer /, '')
      return error(401, `Incorrect API key provided: ${given}. You can find your API key at https://platform.openai.com/account/api-keys.`, 'invalid_request_error', 'invalid_api_key')
    }
    if (req.method === 'GET' && req.url === '/v1/models') {
      return json(200, { object: 'list', data: models.map((id) => ({ id, object: 'model', created: 1700000000, owned_by: 'fake' })) })
    }
    if (req.method === 'POST' && req.url === '/v1/chat/completions') {
      const b = await body(req)
      if (!b || !Array.isArray(b.messages)) return error(400, 'messages is required', 'invalid_request_error', null)
      if (!models.includes(b.model)) return error(404, `The model '${b.model}' does not exist`, 'invalid_request_error', 'model_not_found')
      if (b.model === 'fail-500') return error(500, 'The server had an error while processing your request.', 'server_error', null)
      const slow = b.model === 'slow'
      const n = slow ? 10_000 : (b.max_tokens ?? 8)
      const tokens = fakeTokens(b.model, Math.min(n, 10_000))
      const usage = { prompt_tokens: b.messages.map((m: { content: string }) => m.content).join(' ').split(/\s+/).filter(Boolean).length, completion_tokens: tokens.length, total_tokens: 0 }
      usage.total_tokens = usage.prompt_tokens + usage.completion_tokens
      const finish = b.max_tokens ? 'length' : 'stop'
      const base = { id: 'chatcmpl-fake', object: 'chat.completion.chunk', created: Math.floor(Date.now() / 1000), model: b.model }
      if (!b.stream) {
        return json(200, { id: 'chatcmpl-fake', object: 'chat.completion', created: base.created, model: b.model, choices: [{ index: 0, message: { role: 'assistant', content: tokens.join('') }, finish_reason: finish }], usage })
      }
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
      const send = (o: unknown) => res.write(`data: ${JSON.stringify(o)}\n\n`)
      send({ ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] })
      const finished = await streamTokens(res, state, tokens.length, slow ? 50 : 0, (i) =>
        send({ ...base, choices: [{ index: 0, delta: { content: tokens[i] }, finish_reason: null }] }))
      if (!finished) return
      send({ ...base, choices: [{ index: 0, delta: {}, finish_reason: finish }] })
      if (b.stream_options?.include_usage) send({ ...base, choices: [], usage })
      res.write('data: [DONE]\n\n')
      return res.end()
    }
    error(404, 'not found', 'invalid_request_error', null)
  })
  return listen(server, state)
}
