import test from 'brittle'
import { RecentMap } from '../learning.ts'

// The map of recently served requests the learned router scores feedback against: what it still
// finds after a while, and that its size follows the request rate rather than the uptime.

test('recent map: an entry is found for at least one period, gone after three, and size stays bounded', (t) => {
  let now = 0
  const m = new RecentMap<number>(1000, 100, () => now)
  m.set('a', 1)
  now = 999
  t.is(m.get('a'), 1, 'found within its period')
  now = 1500
  m.set('b', 2)
  t.is(m.get('a'), 1, 'still found in the next period')
  now = 2600
  t.is(m.get('b'), 2, 'a newer entry survives the turn')
  t.is(m.get('a'), undefined, 'the oldest generation is dropped')
  now = 10_000
  t.is(m.get('b'), undefined, 'after an idle spell nothing is kept')
  t.is(m.size, 0)

  // steady traffic for a long time: the size is what two periods hold, not everything ever set
  for (let i = 0; i < 20_000; i++) { now = 10_000 + i; m.set('k' + i, i) }
  t.ok(m.size <= 200, `bounded at twice the per-generation cap (${m.size})`)
  t.is(m.get('k19999'), 19_999, 'the newest entry is there')
})
