import test, { type Assertion } from 'brittle'
import { MeshError } from '../../../shared/errors.ts'
import type { ChatMessage } from '../../../shared/protocol/inference.ts'
import { FAKE_DEFAULT_TOKENS, FAIL_MODEL, SLOW_MODEL, countWords, fakeTokens, type FakeServer, fakeEmbedding } from '../../../test/fakes/fake-llm.ts'
import { startFakeOllama } from '../../../test/fakes/fake-ollama.ts'
import { FAKE_OPENAI_KEY, startFakeOpenAI } from '../../../test/fakes/fake-openai.ts'
import { OllamaBackend } from '../backends/ollama.ts'
import { OpenAIBackend } from '../backends/openai.ts'
import { SyntheticBackend, syntheticEmbedding, syntheticText } from '../backends/synthetic.ts'
import type { Backend, ChatChunk } from '../backends/types.ts'
import { BACKENDS } from '../backends/table.ts'
import { createBackends } from '../backends/index.ts'

// One contract, every adapter: what the worker (and so the user) sees must not depend on which
// backend serves. The HTTP adapters run through their official clients against fake servers that
// speak the real wire protocols.

interface Subject {
  backend: Backend
  /** every model listModels must report */
  models: string[]
  model: string
  expectedText (messages: ChatMessage[], maxTokens?: number): string
  defaultTokens: number
  /** a backend and model that stream slowly, for cancelling */
  slow: { backend: Backend, model: string }
  /** the HTTP fake behind the adapter */
  server?: FakeServer
}

const SYNTHETIC_DEFAULT = 12

const subjects: Record<string, (t: Assertion) => Promise<Subject>> = {
  async ollama (t) {
    const server = await startFakeOllama()
    t.teardown(() => server.close())
    const backend = new OllamaBackend({ url: server.url })
    return { backend, server, models: ['tiny', SLOW_MODEL, FAIL_MODEL], model: 'tiny', expectedText: (_, n) => fakeTokens('tiny', n).join(''), defaultTokens: FAKE_DEFAULT_TOKENS, slow: { backend, model: SLOW_MODEL } }
  },
  async openai (t) {
    const server = await startFakeOpenAI()
    t.teardown(() => server.close())
    const backend = new OpenAIBackend({ baseURL: server.baseURL, apiKey: FAKE_OPENAI_KEY })
    return { backend, server, models: ['gpt-fake', SLOW_MODEL, FAIL_MODEL], model: 'gpt-fake', expectedText: (_, n) => fakeTokens('gpt-fake', n).join(''), defaultTokens: FAKE_DEFAULT_TOKENS, slow: { backend, model: SLOW_MODEL } }
  },
  async synthetic () {
    return {
      backend: new SyntheticBackend({ models: ['synthetic', 'other'], defaultMaxTokens: SYNTHETIC_DEFAULT }),
      models: ['synthetic', 'other'],
      model: 'synthetic',
      expectedText: (messages, n) => syntheticText(messages, n ?? SYNTHETIC_DEFAULT),
      defaultTokens: SYNTHETIC_DEFAULT,
      slow: { backend: new SyntheticBackend({ models: ['synthetic'], tokensPerSecond: 20 }), model: 'synthetic' }
    }
  }
}

const messages: ChatMessage[] = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'say hello to the mesh' }
]

async function collect (it: AsyncIterable<ChatChunk>) {
  const tokens: string[] = []
  const chunks: ChatChunk[] = []
  for await (const c of it) {
    chunks.push(c)
    if (c.type === 'token') tokens.push(c.text)
  }
  const last = chunks[chunks.length - 1]
  return { tokens, text: tokens.join(''), usage: last?.type === 'usage' ? last : null, usageCount: chunks.filter((c) => c.type === 'usage').length }
}

const failure = (p: Promise<unknown>) => p.then(() => null, (e) => e)
const never = () => new AbortController().signal

async function until (cond: () => boolean, ms = 2000): Promise<boolean> {
  for (const end = Date.now() + ms; !cond() && Date.now() < end;) await new Promise((resolve) => setTimeout(resolve, 20))
  return cond()
}

function contract (name: string, make: (t: Assertion) => Promise<Subject>): void {
  test(`${name}: lists the served models`, async (t) => {
    const s = await make(t)
    const models = await s.backend.listModels()
    t.alike(models.map((m) => m.id).sort(), [...s.models].sort())
    t.ok(models.every((m) => m.backend === name), 'each model names its backend')
  })

  test(`${name}: streams the tokens in order, then the usage`, async (t) => {
    const s = await make(t)
    const r = await collect(s.backend.chat({ model: s.model, messages }, never()))
    t.is(r.text, s.expectedText(messages), 'the concatenated tokens are the answer')
    t.is(r.tokens.length, s.defaultTokens)
    t.is(r.usageCount, 1, 'one usage chunk, last')
    t.alike(r.usage?.usage, { promptTokens: countWords(messages), completionTokens: s.defaultTokens }, 'the backend\'s own counts')
    t.is(r.usage?.finishReason, 'stop')
  })

  test(`${name}: maxTokens caps the answer`, async (t) => {
    const s = await make(t)
    const r = await collect(s.backend.chat({ model: s.model, messages, maxTokens: 3, temperature: 0.2 }, never()))
    t.is(r.tokens.length, 3)
    t.is(r.text, s.expectedText(messages, 3))
    t.is(r.usage?.usage.completionTokens, 3)
    t.is(r.usage?.finishReason, 'length')
  })

  test(`${name}: aborting mid-stream ends it with CANCELLED and drops the upstream request`, async (t) => {
    const s = await make(t)
    const ac = new AbortController()
    let seen = 0
    let abortedAt = 0
    const err = await failure((async () => {
      for await (const c of s.slow.backend.chat({ model: s.slow.model, messages }, ac.signal)) {
        if (c.type === 'token' && ++seen === 2) { abortedAt = Date.now(); ac.abort() }
        if (seen > 20) break // the abort did not take: fail rather than stream for minutes
      }
    })())
    t.ok(err instanceof MeshError, 'a MeshError')
    t.is(err?.code, 'CANCELLED')
    t.ok(Date.now() - abortedAt < 500, 'promptly')
    t.is(seen, 2, 'no tokens after the abort')
    if (s.server) {
      const server = s.server
      t.ok(await until(() => server.aborted === 1), 'the backend saw its client disconnect')
    }
  })

  test(`${name}: unknown model -> BACKEND_ERROR 404`, async (t) => {
    const s = await make(t)
    const err = await failure(collect(s.backend.chat({ model: 'no-such-model', messages }, never())))
    t.is(err?.code, 'BACKEND_ERROR')
    t.is(err?.details?.status, 404)
  })

  test(`${name}: health`, async (t) => {
    const s = await make(t)
    t.is((await s.backend.health()).ok, true, 'ok while the backend answers')
    if (!s.server) return
    await s.server.close()
    const h = await s.backend.health()
    t.is(h.ok, false, 'not ok once it is gone')
    t.ok(h.detail, h.detail)
    const err = await failure(collect(s.backend.chat({ model: s.model, messages }, never())))
    t.is(err?.code, 'BACKEND_ERROR', 'chat with the backend down -> BACKEND_ERROR')
    t.absent(err?.details?.status, 'with no HTTP status')
  })

  test(`${name}: embed returns one vector per input, in order, with usage`, async (t) => {
    const s = await make(t)
    const expected = name === 'synthetic' ? syntheticEmbedding : fakeEmbedding
    const r = await s.backend.embed!({ model: s.model, input: ['alpha beta', 'gamma'] }, never())
    const round = (v: number[]) => v.map((x) => Math.round(x * 1e4))
    t.alike(r.embeddings.map(round), [expected('alpha beta'), expected('gamma')].map(round), 'each input its own vector, in input order')
    t.is(r.promptTokens, 3, 'usage counted')
    const err = await s.backend.embed!({ model: 'no-such-model', input: ['x'] }, never()).then(() => null, (e) => e)
    t.is(err?.code, 'BACKEND_ERROR')
    t.is(err?.details?.status, 404)
  })

  test(`${name}: backend HTTP 500 -> BACKEND_ERROR 500`, async (t) => {
    const s = await make(t)
    if (!s.server) return t.pass('no HTTP behind this backend')
    const err = await failure(collect(s.backend.chat({ model: FAIL_MODEL, messages }, never())))
    t.is(err?.code, 'BACKEND_ERROR')
    t.is(err?.details?.status, 500)
  })

  test(`${name}: its row in the backend table says what it can do`, async (t) => {
    const s = await make(t)
    const row = BACKENDS.find((b) => b.id === name)
    t.ok(row, 'a row in backends/table.ts')
    t.is(row?.capabilities.chat, true)
    t.is(row?.capabilities.embed, typeof s.backend.embed === 'function', 'embed as the adapter has it')
  })
}

for (const [name, make] of Object.entries(subjects)) contract(name, make)

test('backend table: every row has its subject in this contract suite', async (t) => {
  t.alike(BACKENDS.map((b) => b.id).sort(), Object.keys(subjects).sort())
})

test('backend table: the worker env turns backends on, in the table\'s order', async (t) => {
  t.alike((await createBackends({})).map((b) => b.name), ['synthetic'], 'nothing set: synthetic alone')
  const all = await createBackends({ OLLAMA_URL: 'http://127.0.0.1:9', OPENAI_BASE_URL: 'http://127.0.0.1:9/v1', SYNTHETIC_MODELS: 'a,b' })
  t.alike(all.map((b) => b.name), ['synthetic', 'ollama', 'openai'])
  t.alike((await all[0]!.listModels()).map((m) => m.id), ['a', 'b'], 'each backend from its own settings')
  t.alike((await createBackends({ SYNTHETIC: 'false', OPENAI_API_KEY: 'sk-x' })).map((b) => b.name), ['openai'], 'SYNTHETIC=false turns it off; a key alone turns openai on')
  const bad = await createBackends({ OLLAMA_URL: 'not a url' }).then(() => null, (e: Error) => e)
  t.is(bad?.name, 'ConfigError', `a malformed setting is a ConfigError: ${bad?.message}`)
})

test('openai: the provider key never appears in an error', async (t) => {
  const server = await startFakeOpenAI()
  t.teardown(() => server.close())
  const wrongKey = 'sk-wrong-key-must-not-leak-42'
  const backend = new OpenAIBackend({ baseURL: server.baseURL, apiKey: wrongKey })
  const err = await failure(collect(backend.chat({ model: 'gpt-fake', messages }, never())))
  t.is(err?.code, 'BACKEND_ERROR')
  t.is(err?.details?.status, 401)
  t.absent(String(err?.message).includes(wrongKey), err?.message)
  t.absent(JSON.stringify(err?.toWire()).includes(wrongKey), 'nor in what crosses the wire')
  const h = await backend.health()
  t.is(h.ok, false)
  t.absent(String(h.detail).includes(wrongKey), 'nor in the health detail')
})

test('openai: a static model list stands in when /models is unavailable', async (t) => {
  const server = await startFakeOpenAI()
  await server.close()
  const backend = new OpenAIBackend({ baseURL: server.baseURL, apiKey: FAKE_OPENAI_KEY, models: ['gpt-a', 'gpt-b'], name: 'vllm' })
  t.alike(await backend.listModels(), [{ id: 'gpt-a', backend: 'vllm' }, { id: 'gpt-b', backend: 'vllm' }])
})

test('ollama: URL credentials are sent as auth and never shown in errors', async (t) => {
  const server = await startFakeOllama()
  const url = new URL(server.url)
  url.username = 'me'
  url.password = 's3cret-pw'
  const backend = new OllamaBackend({ url: url.href })
  t.alike((await backend.listModels()).map((m) => m.id), ['tiny', SLOW_MODEL, FAIL_MODEL], 'works with credentials in the URL')
  await server.close()
  const err = await failure(collect(backend.chat({ model: 'tiny', messages }, never())))
  t.is(err?.code, 'BACKEND_ERROR')
  t.ok(/cannot reach http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)/.test(err?.message), err?.message)
  t.absent(String(err?.message).includes('s3cret-pw'))
  t.absent(String((await backend.health()).detail).includes('s3cret-pw'))
})

test('synthetic: deterministic, and exactly syntheticText', async (t) => {
  const backend = new SyntheticBackend()
  const a = await collect(backend.chat({ model: 'synthetic', messages, maxTokens: 20 }, never()))
  const b = await collect(backend.chat({ model: 'synthetic', messages, maxTokens: 20 }, never()))
  t.is(a.text, b.text, 'same messages, same text')
  t.is(a.text, syntheticText(messages, 20))
  t.ok(a.tokens.slice(1).every((w) => w.startsWith(' ')) && !a.tokens[0]!.startsWith(' '), 'a word per token, space-led after the first')
  const other = await collect(backend.chat({ model: 'synthetic', messages: [{ role: 'user', content: 'another prompt' }], maxTokens: 20 }, never()))
  t.not(other.text, a.text, 'a different prompt gives a different text')
  const dflt = await collect(backend.chat({ model: 'synthetic', messages }, never()))
  t.is(dflt.tokens.length, 32, 'default length')
  t.is(dflt.usage?.finishReason, 'stop')
})

test('synthetic: 1000 concurrent streams each get their own complete, correct answer', async (t) => {
  // speed is measured by `npm run bench`, not here
  const backend = new SyntheticBackend()
  const results = await Promise.all(Array.from({ length: 1000 }, (_, i) =>
    collect(backend.chat({ model: 'synthetic', messages: [{ role: 'user', content: `prompt ${i}` }], maxTokens: 128 }, never()))))
  t.ok(results.every((r) => r.tokens.length === 128), 'every stream is complete')
  t.ok(results.every((r, i) => r.tokens.join('') === syntheticText([{ role: 'user', content: `prompt ${i}` }], 128)), 'and none got another stream\'s tokens')
})
