import test from 'brittle'
import crypto from 'node:crypto'
import { localTestnet } from '../../../test/support/testnet.ts'
import { FakeGateway } from '../../../test/fakes/fake-gateway.ts'
import { keyPairFromSeed } from '../../../shared/keys.ts'
import { createLogger } from '../../../shared/log.ts'
import { MeshError } from '../../../shared/errors.ts'
import { WebService } from '../service.ts'

// Streamed answers as an OpenAI client reads them off the wire, against a gateway that speaks the
// real RPC protocol and whose tokens, pauses and failures the test scripts.

async function setup (t: any) {
  const { testnet, bootstrap } = await localTestnet(3)
  const gateway = new FakeGateway(bootstrap)
  await gateway.open()
  const web = new WebService({
    keyPair: keyPairFromSeed(crypto.randomBytes(32)),
    log: createLogger('test', 'silent'),
    bootstrap,
    authKey: crypto.randomBytes(32).toString('hex'),
    gatewayKey: gateway.publicKey,
    port: 0,
    rpcTimeoutMs: 10_000
  })
  await web.open()
  t.teardown(async () => { await web.close(); await gateway.close(); await testnet.destroy() })
  const chat = (apiKey: string, stream = true) => fetch(`${web.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'synthetic', messages: [{ role: 'user', content: 'hi' }], stream })
  })
  return { gateway, chat }
}

/** The events of a finished SSE body: each `data:` payload, parsed unless it is [DONE]. */
function events (body: string): unknown[] {
  return body.split('\n\n').filter((e) => e.startsWith('data: ')).map((e) => e.slice(6) === '[DONE]' ? '[DONE]' : JSON.parse(e.slice(6)))
}

test('web stream: a burst of tokens arrives as one delta each, in order, then the finish chunk and [DONE]', async (t) => {
  const { gateway, chat } = await setup(t)
  const tokens = Array.from({ length: 40 }, (_, i) => `t${i} "quoted" \n`)
  gateway.script = async (_req, ctx) => { for (const text of tokens) ctx.emit({ text }); return { text: tokens.join(''), completionTokens: tokens.length } }
  const res = await chat(gateway.apiKey)
  t.is(res.status, 200)
  t.ok(res.headers.get('content-type')?.startsWith('text/event-stream'))
  t.ok(res.headers.get('x-request-id'), 'the request id is on the stream too')
  const all = events(await res.text()) as any[]
  t.is(all.at(-1), '[DONE]', 'ends with [DONE]')
  const chunks = all.slice(0, -1)
  t.is(chunks.length, tokens.length + 1, 'one chunk per token and the finish chunk')
  t.is(chunks[0].choices[0].delta.role, 'assistant', 'the first delta carries the role')
  t.alike(chunks.slice(0, -1).map((c) => c.choices[0].delta.content), tokens, 'every token, in order, intact')
  t.ok(chunks.every((c) => c.id === chunks[0].id && c.object === 'chat.completion.chunk'), 'one id for the whole answer')
  t.is(chunks.at(-1).choices[0].finish_reason, 'stop')

  const whole = await (await chat(gateway.apiKey, false)).json() as any
  t.is(whole.choices[0].message.content, tokens.join(''), 'the same answer whole')
})

test('web stream: the first token reaches the client while the answer is still being generated', async (t) => {
  const { gateway, chat } = await setup(t)
  let clientSawFirst: () => void = () => {}
  const seen = new Promise<void>((resolve) => { clientSawFirst = resolve })
  gateway.script = async (_req, ctx) => {
    ctx.emit({ text: 'first' })
    // the rest only once the client has read the first token: an edge that held tokens back would stall here
    const held = await Promise.race([seen.then(() => false), new Promise<boolean>((resolve) => setTimeout(resolve, 15_000, true))])
    if (held) throw MeshError.BACKEND_ERROR('the first token never reached the client')
    ctx.emit({ text: ' second' })
    return { text: 'first second', completionTokens: 2 }
  }
  const res = await chat(gateway.apiKey)
  t.is(res.status, 200)
  const reader = res.body!.getReader()
  let text = ''
  while (!text.includes('first')) {
    const { value, done } = await reader.read()
    if (done) break
    text += Buffer.from(value).toString()
  }
  t.ok(text.includes('"content":"first"'), 'the first token, alone')
  clientSawFirst()
  for (;;) {
    const { value, done } = await reader.read()
    if (done) break
    text += Buffer.from(value).toString()
  }
  t.ok(text.includes('"content":" second"'), 'then the rest')
  t.ok(text.endsWith('data: [DONE]\n\n'), 'and a normal end')
})

test('web stream: a failure after the first token ends the stream with an error event and no [DONE]', async (t) => {
  const { gateway, chat } = await setup(t)
  gateway.script = async (_req, ctx) => {
    ctx.emit({ text: 'Hel' })
    await new Promise((resolve) => setTimeout(resolve, 50))
    throw MeshError.BACKEND_ERROR('the model crashed')
  }
  const res = await chat(gateway.apiKey)
  t.is(res.status, 200, 'the stream had started')
  const body = await res.text()
  const all = events(body) as any[]
  t.is(all[0].choices[0].delta.content, 'Hel', 'the token sent before the failure')
  t.is(all.at(-1).error?.code, 'BACKEND_ERROR', 'an error event last')
  t.is(all.at(-1).error?.type, 'server_error')
  t.absent(body.includes('[DONE]'), 'no [DONE]: the client knows the answer is incomplete')
})

test('web stream: a refusal before any token is a plain HTTP error with an OpenAI error body', async (t) => {
  const { gateway, chat } = await setup(t)
  const res = await chat('hi_not_a_key')
  t.is(res.status, 401)
  t.ok(res.headers.get('content-type')?.startsWith('application/json'))
  const body = await res.json() as any
  t.is(body.error?.code, 'invalid_api_key', 'OpenAI\'s code for a bad key')
  t.is(body.error?.type, 'authentication_error')

  gateway.script = async () => { throw MeshError.NO_WORKER('no worker serves synthetic') }
  const none = await chat(gateway.apiKey)
  t.is(none.status, 503, 'a failure before the first token keeps its HTTP status')
  t.is((await none.json() as any).error?.code, 'NO_WORKER')
})
