import test from 'brittle'
import type pg from 'pg'
import { Recorder, type EndRecord } from '../recorder.ts'

// How the recorder groups finished requests into database calls, against a stand-in pool whose every
// call takes a few milliseconds, as PostgreSQL's does: answers arriving steadily while a call is under
// way wait for the next batch, so the number of calls follows the batch delay, not the answer rate.

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

function end (i: number): EndRecord {
  return {
    t: 's', id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, user: 'u', key: 'k', model: 'm', kind: 'chat', hash: 'h', trace: null,
    at: new Date().toISOString(), status: 'success', worker: null, tin: 1, tout: 1, cost: 0, ttft: null, dur: 1, code: null, msg: null,
    fin: new Date().toISOString(), crel: 0, c: []
  }
}

/** a pool whose calls take `ms` and record how many requests each carried */
function slowPool (ms: number) {
  const calls: number[] = []
  const pool = {
    async query (q: { values: unknown[][] }) {
      const n = (q.values[1] as unknown[]).length
      calls.push(n)
      await sleep(ms)
      return { rows: [{ n }] }
    }
  }
  return { pool: pool as unknown as pg.Pool, calls }
}

test('recorder: a steady trickle of answers is recorded in batches per delay, each answer once, and flush still waits for all', async (t) => {
  const { pool, calls } = slowPool(8)
  const recorder = new Recorder(pool, 'gw', { delayMs: 20 })
  // one answer every 2 ms for 400 ms: 200 answers, while each call takes 8 ms
  for (let i = 0; i < 200; i++) {
    recorder.push(end(i))
    await sleep(2)
  }
  await recorder.flush()
  t.is(calls.reduce((a, b) => a + b, 0), 200, 'every answer is recorded, once')
  t.is(recorder.pending, 0, 'nothing left pending after flush')
  // a call per write (the answers that came during the last) would make about 50 calls; one per
  // delay plus the call makes at most about 400 / (20 + 8) + a few
  t.ok(calls.length <= 25, `${calls.length} calls for 200 answers (batches of ${Math.min(...calls)}–${Math.max(...calls)})`)
})

test('recorder: a flush that waits on answers which arrived during a call does not wait out the delay', async (t) => {
  const { pool, calls } = slowPool(30)
  const recorder = new Recorder(pool, 'gw', { delayMs: 10_000 })
  recorder.push(end(1))
  await recorder.flush() // urgent: the first call starts at once
  recorder.push(end(2))
  const started = Date.now()
  const first = recorder.flush()
  recorder.push(end(3))
  await first
  await recorder.flush()
  t.ok(Date.now() - started < 2000, `flushed in ${Date.now() - started} ms, not after the 10 s delay`)
  t.is(calls.reduce((a, b) => a + b, 0), 3, 'all three recorded')
})
