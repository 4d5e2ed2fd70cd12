import test from 'brittle'
import { SseText } from '../openai/generate.ts'
import { chatShape } from '../openai/chat.ts'

// Token frames are written as text around the token, not by encoding a whole chunk object: what an
// OpenAI client parses must be exactly the chunk the general path builds, for any text.

const texts = ['hello', ' world', 'a "quoted" word', 'back\\slash', 'line\nbreak\ttab', '\u2028\u2029', 'emoji 🦊 and ünïcödé', '\u0000\u001f control', '</script>', '{"json":"inside"}']

test('a text frame is byte for byte the JSON of the chunk it stands for', (t) => {
  const { events } = chatShape('model "with" quotes/é')
  const opening = events.frame(0, { text: 'first' }, true) as Record<string, unknown>
  t.absent(opening instanceof SseText, 'the first frame (with the role) goes the general way')
  for (const [index, text] of texts.entries()) {
    const frame = events.frame(index % 3, { text }, false)
    t.ok(frame instanceof SseText, JSON.stringify(text))
    const sse = (frame as SseText).text
    t.ok(sse.startsWith('data: ') && sse.endsWith('\n\n'), 'one SSE data event')
    const parsed = JSON.parse(sse.slice(6, -2))
    t.alike(parsed, {
      id: opening.id, object: 'chat.completion.chunk', created: opening.created, model: 'model "with" quotes/é', system_fingerprint: null,
      choices: [{ index: index % 3, delta: { content: text }, logprobs: null, finish_reason: null }]
    })
    t.is(sse, `data: ${JSON.stringify(parsed)}\n\n`, 'the same bytes JSON.stringify gives')
  }
})

test('frames with more than text take the general path', (t) => {
  const { events } = chatShape('m')
  t.absent(events.frame(0, { text: 'x', logprobs: [{ token: 'x', logprob: -0.1 }] }, false) instanceof SseText, 'logprobs')
  t.absent(events.frame(0, { text: '', toolCall: { index: 0, id: 'call_1', name: 'f', arguments: '{}' } }, false) instanceof SseText, 'a tool call')
  t.is(events.frame(0, { text: '' }, false) instanceof SseText, false, 'an empty frame')
})
