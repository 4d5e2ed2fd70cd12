import test from 'brittle'
import { MeshError } from '../../../shared/errors.ts'
import { ServiceMetrics } from '../../../shared/metrics.ts'
import type { KeyIdentity } from '../../../shared/protocol/auth.ts'
import type { TokenChunk } from '../../../shared/protocol/inference.ts'
import type { AdmitRequest, Settlement } from '../accounting.ts'
import { Admission } from '../admission.ts'
import type { PromptRequest, WorkerDispatch } from '../dispatch.ts'
import { KeyCache } from '../keycache.ts'
import { DEFAULT_TIERS, Pricing, countPromptTokens } from '../limits.ts'
import { RequestPipeline } from '../pipeline.ts'
import { Settler } from '../settlement.ts'

// The request pipeline in-process: its real admission, token stream and settlement, with the key
// lookup, the database and the workers stood in by fakes that record what reached them.

const WORKER = 'ab'.repeat(32)
const KEY = 'hi_' + 't'.repeat(43)
const identity: KeyIdentity = {
  keyId: 'k1', userId: 'u1', tier: 'default', userTier: 'default', scopes: ['inference'], expiresAt: null, budgetNusd: null, models: null
}

/** A gateway whose one worker serves `models` and answers every prompt with `tokens`, one frame each. */
function gateway (models: string[], tokens: string[], opts: { reportsUsage?: boolean } = {}) {
  const admitted: AdmitRequest[] = []
  const dispatched: PromptRequest[] = []
  const settled: Settlement[] = []
  const dispatch: WorkerDispatch = {
    async prompt (req, hooks) {
      dispatched.push(req)
      hooks.onAttempt()
      for (const text of tokens) {
        // a cancelled call ends at the worker as it would over the wire
        if (hooks.signal.aborted) return { ok: false, err: MeshError.CANCELLED(), worker: WORKER, attempts: 1 }
        hooks.onChunk({ text })
        await new Promise((resolve) => setImmediate(resolve))
      }
      const usage = opts.reportsUsage === false ? undefined : { promptTokens: 7, completionTokens: tokens.length }
      return { ok: true, value: { model: req.model, backend: 'fake', usage, finishReason: 'stop', ttftMs: null }, worker: WORKER, attempts: 1 } as never
    },
    async embed () { throw new Error('not used') }
  }
  const pricing = new Pricing({ m1: { input: 1, output: 2 } })
  const pipeline = new RequestPipeline({
    admission: new Admission({
      keys: new KeyCache(async () => identity),
      served: { serves: (m) => models.includes(m), modelIds: () => [...models] },
      accounting: { admit: async (r) => { admitted.push(r); return { ok: true } } },
      pricing,
      tiers: DEFAULT_TIERS,
      metrics: new ServiceMetrics('gateway'),
      gateway: 'cd'.repeat(32)
    }),
    dispatch,
    settler: new Settler(pricing, { settle: async (s) => { settled.push(s) } }),
    listings: { candidates: () => [], firstToken () {}, measured () {}, describe: () => null },
    metrics: new ServiceMetrics('gateway')
  })
  return { pipeline, admitted, dispatched, settled }
}

function caller (signal = new AbortController().signal) {
  const frames: TokenChunk[] = []
  return { frames, ctx: { signal, emit: (chunk: TokenChunk) => { frames.push(chunk) } } }
}

test('pipeline: a model no worker serves is refused with UNKNOWN_MODEL; nothing is held, dispatched or settled', async (t) => {
  const gw = gateway(['m1'], ['hi'])
  const err = await gw.pipeline.infer({ apiKey: KEY, model: 'nope', prompt: 'hello' }, caller().ctx).catch((e) => e)
  t.is(err.code, 'UNKNOWN_MODEL')
  t.alike(err.details.available, ['m1'], 'the refusal lists the models that are served')
  t.is(gw.admitted.length + gw.dispatched.length + gw.settled.length, 0)
})

test('pipeline: a streamed answer reaches the caller frame by frame and is settled once, as the worker counted it', async (t) => {
  const gw = gateway(['m1'], ['Hel', 'lo', ' world'])
  const { frames, ctx } = caller()
  const res = await gw.pipeline.infer({ apiKey: KEY, model: 'm1', prompt: 'say hello', stream: true, maxTokens: 10 }, ctx)
  t.alike(frames.map((f) => f.text), ['Hel', 'lo', ' world'], 'each token as a frame')
  t.is(res.text, '', 'a streamed result carries no text')
  t.alike(res.usage, { promptTokens: 7, completionTokens: 3 })
  t.is(res.finishReason, 'stop')
  t.is(gw.admitted.length, 1, 'admitted once')
  t.is(gw.settled.length, 1, 'settled once')
  const s = gw.settled[0]!
  t.alike([s.id, s.status, s.worker, s.tokensIn, s.tokensOut], [res.id, 'success', WORKER, 7, 3])
  t.is(s.cost, 7 * 1000 + 3 * 2000, 'charged at the model price (nano-USD)')
  t.is(res.costUsd, s.cost / 1e9, 'and the caller is told the same charge')
})

test('pipeline: a worker that runs past maxTokens is stopped there, and billed for no more', async (t) => {
  const gw = gateway(['m1'], ['a', 'b', 'c', 'd', 'e'])
  const res = await gw.pipeline.infer({ apiKey: KEY, model: 'm1', prompt: 'count', maxTokens: 2 }, caller().ctx)
  t.is(res.text, 'ab')
  t.is(res.finishReason, 'length')
  t.alike([gw.settled.length, gw.settled[0]!.status, gw.settled[0]!.tokensOut], [1, 'success', 2])
})

test('pipeline: a caller who leaves mid-stream cancels the worker; the request is settled as cancelled, billed for what it got', async (t) => {
  const gw = gateway(['m1'], ['a', 'b', 'c', 'd'])
  const leave = new AbortController()
  const { frames, ctx } = caller(leave.signal)
  const seen = { ...ctx, emit: (chunk: TokenChunk) => { ctx.emit(chunk); if (frames.length === 2) leave.abort() } }
  const err = await gw.pipeline.infer({ apiKey: KEY, model: 'm1', prompt: 'count', stream: true }, seen).catch((e) => e)
  t.is(err.code, 'CANCELLED')
  t.alike(frames.map((f) => f.text), ['a', 'b'])
  t.alike([gw.settled.length, gw.settled[0]!.status, gw.settled[0]!.tokensOut, gw.settled[0]!.errorCode], [1, 'cancelled', 2, 'CANCELLED'])
})

test('pipeline: a long prompt is held at one token per byte without being counted first; charged the worker\'s count, or ours when it gives none', async (t) => {
  const prompt = 'hello world '.repeat(4000)
  const bytes = Buffer.byteLength(prompt)
  const gw = gateway(['m1'], ['ok'])
  const res = await gw.pipeline.infer({ apiKey: KEY, model: 'm1', prompt, maxTokens: 4 }, caller().ctx)
  t.ok(gw.admitted[0]!.credit >= bytes * 1000, `the hold covers a token per byte (${gw.admitted[0]!.credit} nano-USD held for ${bytes} bytes)`)
  t.is(res.usage.promptTokens, 7, 'the worker\'s count is what is charged')
  t.is(gw.settled[0]!.tokensIn, 7)

  const silent = gateway(['m1'], ['ok'], { reportsUsage: false })
  const ours = await countPromptTokens([prompt])
  const res2 = await silent.pipeline.infer({ apiKey: KEY, model: 'm1', prompt, maxTokens: 4 }, caller().ctx)
  t.is(res2.usage.promptTokens, ours, `a worker with no count is charged our own (${ours} tokens, not ${bytes})`)
})
