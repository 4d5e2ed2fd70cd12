import test from 'brittle'
import { StopFilter } from '../stop.ts'

function run (stops: string[], tokens: string[]): { text: string, stopped: boolean } {
  const f = new StopFilter(stops)
  let text = ''
  for (const tok of tokens) {
    text += f.push(tok)
    if (f.stopped) break
  }
  return { text: text + f.flush(), stopped: f.stopped }
}

test('stop: text ends right before the first stop sequence, even when it spans tokens', (t) => {
  t.alike(run(['END'], ['hello ', 'wor', 'ld E', 'N', 'D more']), { text: 'hello world ', stopped: true })
  t.alike(run(['\n\n', 'Q:'], ['a\n', '\nQ: b']), { text: 'a', stopped: true }, 'the earliest of several')
  t.alike(run(['xyz'], ['x', 'y', 'w']), { text: 'xyw', stopped: false }, 'a false start is released in full')
  t.alike(run([], ['as ', 'is']), { text: 'as is', stopped: false }, 'no stops: passes through')
})

test('stop: nothing of a stop sequence is released before it is ruled out', (t) => {
  const f = new StopFilter(['STOP'])
  t.is(f.push('abcST'), 'abc', 'holds back exactly what could start the sequence')
  t.is(f.push('O'), '')
  t.is(f.push('X'), 'STOX', 'and releases it once ruled out')
  t.is(f.push('S'), '', 'a new possible start is held again')
  t.is(f.flush(), 'S', 'and released at the end')
})
