import test from 'brittle'
import { MeshError } from '../../../shared/errors.ts'
import { fakeTokens, startFakeOllama, startFakeOpenAI, type FakeBackend } from '../../../shared/testing/fake-backends.ts'
import type { Backend, ChatChunk } from '../backends/types.ts'
import { OllamaBackend } from '../backends/ollama.ts'
import { OpenAIBackend } from '../backends/openai.ts'
import { SyntheticBackend, syntheticText } from '../backends/synthetic.ts'

// One contract, every adapter: what the worker (and so the user) sees must not depend on which
// backend serves. The HTTP backends run against servers speaking their real wire protocol.

interface Subject {
  backend: Backend
  model: string
  expected: (n: number) => string
  server: FakeBackend | null
  /** the adapter's own closing, e.g. the fake server */
  close: () => Promise<void>
}

const OPENAI_KEY = 'sk-test-0123456789abcdef'

const subjects: Record<string, () => Promise<Subject>> = {
  ollama: async () => {
    const server = await startFakeOllama()
    return { backend: new OllamaBackend({ url: server.url }), model: 'llama3.2', expected: (n) => fakeTokens('llama3.2', n).join(''), server, close: () => server.close() }
  },
  openai: async () => {
    const server = await startFakeOpenAI({ apiKey: OPENAI_KEY })
    return { backend: new OpenAIBackend({ baseURL: server.url + '/v1', apiKey: OPENAI_KEY }), model: 'gpt-fake', expected: (n) => fakeTokens('gpt-fake', n).join(''), server, close: () => server.close() }
  },
  synthetic: async () => ({
    backend: new SyntheticBackend({ models: ['synthetic', 'slow'], defaultMaxTokens: 8 }),
    model: 'synthetic',
    expected: (n) => syntheticText([{ role: 'user', content: 'say hello' }], n),
    server: null,
    close: async () => {}
  })
}

async function collect (it: AsyncIterable<ChatChunk>): Promise<{ text: string, tokens: number, usage: ChatChunk | null }> {
  let text = ''
  let tokens = 0
  let usage: ChatChunk | null = null
  for await (const c of it) {
    if (c.type === 'token') { text += c.text; tokens++ } else usage = c
  }
  return { text, tokens, usage }
}

for (const [name, make] of Object.entries(subjects)) {
  test(`backend contract: ${name}`, async (t) => {
    const s = await make()
    t.teardown(() => s.close())
    const b = s.backend

    const models = await b.listModels()
    t.ok(models.some((m) => m.id === s.model), 'lists the model it serves')
    t.ok(models.every((m) => m.backend === b.name), 'each model names its backend')

    const r = await collect(b.chat({ model: s.model, messages: [{ role: 'user', content: 'say hello' }], maxTokens: 6 }, new AbortController().signal))
    t.is(r.text, s.expected(6), 'streams the tokens in order; their concatenation is the answer')
    t.is(r.tokens, 6, 'maxTokens is honoured')
    t.ok(r.usage?.type === 'usage' && r.usage.usage.completionTokens === 6 && r.usage.usage.promptTokens === 2, 'reports usage')
    t.is(r.usage?.type === 'usage' ? r.usage.finishReason : null, 'length', 'a capped answer finishes with length')

    const ac = new AbortController()
    let got = 0
    const cancelled = await (async () => {
      for await (const c of b.chat({ model: name === 'synthetic' ? 'slow' : 'slow', messages: [{ role: 'user', content: 'go on' }], maxTokens: name === 'synthetic' ? 10_000 : undefined }, ac.signal)) {
        if (c.type === 'token' && ++got === 3) ac.abort()
      }
    })().then(() => null, (e) => e)
    t.is(cancelled?.code, 'CANCELLED', 'aborting mid-stream ends it with CANCELLED')
    if (s.server) {
      const server = s.server
      for (let i = 0; i < 40 && server.aborted === 0; i++) await new Promise((r) => setTimeout(r, 50))
      t.is(server.aborted, 1, 'and the backend saw its HTTP request go away')
    }

    const unknown = await collect(b.chat({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] }, new AbortController().signal)).catch((e) => e)
    t.ok(unknown instanceof MeshError && unknown.code === 'BACKEND_ERROR', 'unknown model → BACKEND_ERROR')
    t.is(unknown.details?.status, 404, 'with the backend status 404')

    if (s.server) {
      const failed = await collect(b.chat({ model: 'fail-500', messages: [{ role: 'user', content: 'x' }] }, new AbortController().signal)).catch((e) => e)
      t.is(failed.code, 'BACKEND_ERROR', 'backend 500 → BACKEND_ERROR')
      t.is(failed.details?.status, 500)
    }

    t.alike(await b.health(), { ok: true }, 'healthy while the backend answers')
    if (s.server) {
      await s.server.close()
      const h = await b.health()
      t.is(h.ok, false, 'unhealthy once it is gone')
      const down = await collect(b.chat({ model: s.model, messages: [{ role: 'user', content: 'x' }] }, new AbortController().signal)).catch((e) => e)
      t.is(down.code, 'BACKEND_ERROR', 'a backend that is down → BACKEND_ERROR')
    }
  })
}

test('openai: the provider key never appears in an error', async (t) => {
  const server = await startFakeOpenAI({ apiKey: OPENAI_KEY })
  t.teardown(() => server.close())
  const wrongKey = 'sk-wrong-key-must-not-leak-42'
  const b = new OpenAIBackend({ baseURL: server.url + '/v1', apiKey: wrongKey })
  const err = await collect(b.chat({ model: 'gpt-fake', messages: [{ role: 'user', content: 'x' }] }, new AbortController().signal)).catch((e) => e)
  t.is(err.code, 'BACKEND_ERROR')
  t.is(err.details?.status, 401)
  t.absent(err.message.includes(wrongKey), 'the key is redacted from the provider message: ' + err.message)
  t.absent(JSON.stringify(err.toWire()).includes(wrongKey), 'and from what crosses the wire')
})

test('synthetic: deterministic, and exactly syntheticText', async (t) => {
  const b = new SyntheticBackend()
  const msgs = [{ role: 'user' as const, content: 'the same prompt' }]
  const a = await collect(b.chat({ model: 'synthetic', messages: msgs, maxTokens: 20 }, new AbortController().signal))
  const c = await collect(b.chat({ model: 'synthetic', messages: msgs, maxTokens: 20 }, new AbortController().signal))
  t.is(a.text, c.text, 'same prompt, same text')
  t.is(a.text, syntheticText(msgs, 20))
  const other = await collect(b.chat({ model: 'synthetic', messages: [{ role: 'user', content: 'another prompt' }], maxTokens: 20 }, new AbortController().signal))
  t.not(other.text, a.text, 'a different prompt gives different text')
  const dflt = await collect(b.chat({ model: 'synthetic', messages: msgs }, new AbortController().signal))
  t.is(dflt.tokens, 32, 'default length')
  t.is(dflt.usage?.type === 'usage' ? dflt.usage.finishReason : null, 'stop')
})
