import crypto from 'node:crypto'
import type http from 'node:http'
import { ECHO_MODEL, FAIL_MODEL, FAKE_TOOL_ARGUMENTS, FakeServer, SLOW_MODEL, countWords, echoPlan, fakeEmbedding, plan, readJson, sendJson, wantsToolCall } from './fake-llm.ts'

// A stand-in OpenAI-compatible server speaking the real wire protocol: GET /v1/models and
// POST /v1/chat/completions (SSE chunks, optional usage chunk, `data: [DONE]`), bearer auth,
// OpenAI-shaped error objects.

export const FAKE_OPENAI_KEY = 'sk-fake-0123456789abcdef'

export class FakeOpenAI extends FakeServer {
  private readonly apiKey: string

  constructor (models: string[], apiKey: string) {
    super(models)
    this.apiKey = apiKey
  }

  /** What to pass to an OpenAI client as `baseURL`. */
  get baseURL (): string { return `${this.url}/v1` }

  protected async handle (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://x').pathname
    const auth = req.headers.authorization ?? ''
    if (!auth.startsWith('Bearer ')) {
      return apiError(res, 401, "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth.", 'invalid_request_error', null)
    }
    const key = auth.slice('Bearer '.length)
    if (key !== this.apiKey) {
      // Echoes the key in full, as some OpenAI-compatible servers do: adapters must redact it.
      return apiError(res, 401, `Incorrect API key provided: ${key}. You can find your API key at https://platform.openai.com/account/api-keys.`, 'invalid_request_error', 'invalid_api_key')
    }
    if (req.method === 'GET' && path === '/v1/models') {
      return sendJson(res, 200, { object: 'list', data: this.models.map((id) => ({ id, object: 'model', created: 1_700_000_000, owned_by: 'fake' })) })
    }
    if (req.method === 'POST' && path === '/v1/chat/completions') return this.completions(req, res)
    if (req.method === 'POST' && path === '/v1/embeddings') return this.embeddings(req, res)
    apiError(res, 404, `Invalid URL (${req.method} ${path})`, 'invalid_request_error', null)
  }

  private async embeddings (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const body = await readJson(req)
    this.bodies.push(body)
    if (!body || typeof body.model !== 'string') return apiError(res, 400, 'model is required', 'invalid_request_error', null)
    if (!this.models.includes(body.model)) return apiError(res, 404, `The model \`${body.model}\` does not exist or you do not have access to it.`, 'invalid_request_error', 'model_not_found')
    if (body.model === FAIL_MODEL) return apiError(res, 500, 'The server had an error while processing your request. Sorry about that!', 'server_error', null)
    const input: string[] = typeof body.input === 'string' ? [body.input] : body.input
    const encode = (v: number[]) => body.encoding_format === 'base64' ? Buffer.from(new Float32Array(v).buffer).toString('base64') : v
    const tokens = countWords(input.map((content) => ({ content })))
    // the real API may list data out of order only in theory; reversed here so adapters must sort by index
    const data = input.map((text, index) => ({ object: 'embedding', index, embedding: encode(fakeEmbedding(text)) })).reverse()
    sendJson(res, 200, { object: 'list', data, model: body.model, usage: { prompt_tokens: tokens, total_tokens: tokens } })
  }

  private async completions (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const body = await readJson(req)
    this.bodies.push(body)
    if (!body || typeof body.model !== 'string' || !Array.isArray(body.messages)) {
      return apiError(res, 400, "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly.)", 'invalid_request_error', null)
    }
    const model: string = body.model
    if (!this.models.includes(model)) {
      return apiError(res, 404, `The model \`${model}\` does not exist or you do not have access to it.`, 'invalid_request_error', 'model_not_found')
    }
    if (model === FAIL_MODEL) return apiError(res, 500, 'The server had an error while processing your request. Sorry about that!', 'server_error', null)

    const p = model === ECHO_MODEL ? echoPlan(body.messages) : plan(model, body.max_completion_tokens ?? body.max_tokens)
    const id = 'chatcmpl-' + crypto.randomBytes(12).toString('hex')
    const created = Math.floor(Date.now() / 1000)
    const finishReason = p.capped ? 'length' : 'stop'
    const promptTokens = countWords(body.messages)
    const usage = { prompt_tokens: promptTokens, completion_tokens: p.tokens.length, total_tokens: promptTokens + p.tokens.length }

    if (!body.stream) {
      return sendJson(res, 200, {
        id,
        object: 'chat.completion',
        created,
        model,
        choices: [{ index: 0, message: { role: 'assistant', content: p.tokens.join(''), refusal: null }, logprobs: null, finish_reason: finishReason }],
        usage
      })
    }
    const includeUsage = body.stream_options?.include_usage === true
    const chunk = (choices: unknown[], extra: object = {}) => ({
      id, object: 'chat.completion.chunk', created, model, system_fingerprint: null, choices, ...(includeUsage ? { usage: null } : {}), ...extra
    })
    const send = (data: unknown) => res.write(`data: ${JSON.stringify(data)}\n\n`)
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' })
    const tool = wantsToolCall(body)
    if (tool) {
      // as OpenAI streams a call: id, type and name first, then the arguments in pieces
      const half = Math.floor(FAKE_TOOL_ARGUMENTS.length / 2)
      send(chunk([{ index: 0, delta: { role: 'assistant', content: null, tool_calls: [{ index: 0, id: 'call_fake_1', type: 'function', function: { name: tool, arguments: '' } }] }, logprobs: null, finish_reason: null }]))
      for (const piece of [FAKE_TOOL_ARGUMENTS.slice(0, half), FAKE_TOOL_ARGUMENTS.slice(half)]) {
        send(chunk([{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: piece } }] }, logprobs: null, finish_reason: null }]))
      }
      send(chunk([{ index: 0, delta: {}, logprobs: null, finish_reason: 'tool_calls' }]))
      if (includeUsage) send(chunk([], { usage: { ...usage, completion_tokens: 3, total_tokens: promptTokens + 3 } }))
      res.end('data: [DONE]\n\n')
      return
    }
    const logprobs = (text: string) => body.logprobs
      ? { content: [{ token: text, logprob: -0.25, bytes: [...Buffer.from(text)], top_logprobs: Array.from({ length: body.top_logprobs ?? 0 }, (_, i) => ({ token: `${text}#${i}`, logprob: -1 - i, bytes: null })) }], refusal: null }
      : null
    send(chunk([{ index: 0, delta: { role: 'assistant', content: '', refusal: null }, logprobs: null, finish_reason: null }]))
    await this.stream(res, p,
      (text) => send(chunk([{ index: 0, delta: { content: text }, logprobs: logprobs(text), finish_reason: null }])),
      () => {
        send(chunk([{ index: 0, delta: {}, logprobs: null, finish_reason: finishReason }]))
        if (includeUsage) send(chunk([], { usage }))
        res.end('data: [DONE]\n\n')
      })
  }
}

function apiError (res: http.ServerResponse, status: number, message: string, type: string, code: string | null): void {
  sendJson(res, status, { error: { message, type, param: null, code } })
}

/** Starts a fake OpenAI API on 127.0.0.1 (random port). Serves `models`, plus the `slow` and `fail-500` specials by default. */
export function startFakeOpenAI (opts: { models?: string[], apiKey?: string } = {}): Promise<FakeOpenAI> {
  return new FakeOpenAI(opts.models ?? ['gpt-fake', SLOW_MODEL, FAIL_MODEL], opts.apiKey ?? FAKE_OPENAI_KEY).listen()
}
