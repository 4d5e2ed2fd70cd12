import test from 'brittle'
import type { TokenChunk } from '../../../shared/protocol/inference.ts'
import { TokenStream, maxAnswerBytes } from '../token-stream.ts'

// A worker's tool-call and log-probability frames, as the gateway takes them: checked field by
// field, bounded in bytes and count like text, and collected into whole calls for a whole answer.

function stream (ceiling: number, forward: ((c: TokenChunk) => void) | null = null) {
  let stopped = false
  const s = new TokenStream({ ceiling, forward, stop: () => { stopped = true }, onFirstToken () {} })
  s.restart()
  return { s, stopped: () => stopped }
}

test('token stream: tool-call pieces become whole calls; an id is made when the backend gives none', async (t) => {
  const { s } = stream(100)
  t.is(s.push({ text: '', toolCall: { index: 0, name: 'get_weather', arguments: '{"city":' } }), null)
  t.is(s.push({ text: '', toolCall: { index: 0, arguments: '"Paris"}' } }), null)
  t.is(s.push({ text: '', toolCall: { index: 1, id: 'call_b', name: 'search', arguments: '{}' } }), null)
  t.is(s.toolCalls.length, 2)
  t.is(s.toolCalls[0]!.arguments, '{"city":"Paris"}')
  t.ok(/^call_[0-9a-f]{24}$/.test(s.toolCalls[0]!.id), 'a made id: ' + s.toolCalls[0]!.id)
  t.alike(s.toolCalls[1], { id: 'call_b', name: 'search', arguments: '{}' })
  t.is(s.delivered, 3, 'each piece counts as a token')

  const forwarded: TokenChunk[] = []
  const f = stream(100, (c) => forwarded.push(c)).s
  f.push({ text: '', toolCall: { index: 0, name: 'a', arguments: '' }, ignored: ['x'] } as TokenChunk)
  f.push({ text: '', toolCall: { index: 0, id: 'late', name: 'b', arguments: '{}' } })
  t.is(forwarded[0]!.toolCall!.name, 'a'); t.ok(forwarded[0]!.toolCall!.id, 'the first piece streams with its id')
  t.absent('ignored' in forwarded[0]!, 'a worker cannot speak for the gateway')
  t.alike(forwarded[1]!.toolCall, { index: 0, arguments: '{}' }, 'later pieces carry arguments only')
})

test('token stream: malformed tool calls end the attempt; bytes and logprobs are bounded', async (t) => {
  const bad: unknown[] = [
    { index: 0, arguments: '{}' }, // no name on a call's first piece
    { index: 500, name: 'a' },
    { index: -1, name: 'a' },
    { index: 0, name: 'has space' },
    { index: 0, name: 'a', id: 'x'.repeat(200) },
    { index: 0, name: 'a', arguments: 42 },
    'not an object'
  ]
  for (const call of bad) t.is(stream(10).s.push({ text: '', toolCall: call as never })?.code, 'BACKEND_ERROR', JSON.stringify(call))
  t.is(stream(10).s.push({ text: '', toolCall: { index: 0, name: 'a', arguments: 'x'.repeat(70_000) } })?.code, 'BACKEND_ERROR', 'a frame over 64 KB')

  const { s, stopped } = stream(4)
  s.push({ text: '', toolCall: { index: 0, name: 'a', arguments: 'y'.repeat(maxAnswerBytes(4) - 10) } })
  s.push({ text: '', toolCall: { index: 0, arguments: 'y'.repeat(100) } })
  t.ok(s.truncated && stopped(), 'arguments count against the answer\'s bytes: cut there')

  const lp = stream(1).s
  lp.push({ text: 'a', logprobs: [{ token: 'a', logprob: 0.5 }] })
  t.alike(lp.logprobs, [], 'a positive log probability is dropped')
  const many = stream(2).s
  const top = Array.from({ length: 50 }, (_, i) => ({ token: 't'.repeat(200) + i, logprob: -1 }))
  many.push({ text: 'a', logprobs: Array.from({ length: 30 }, () => ({ token: 'a', logprob: -1, topLogprobs: top })) })
  t.ok(many.logprobs.length <= 16 && many.logprobs.every((e) => (e.topLogprobs?.length ?? 0) <= 20), 'entries and alternatives are capped')
})
