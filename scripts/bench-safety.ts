// What the safety layer's built-in pre-check costs a request, on real processes (LocalMesh: auth, a
// gateway, a synthetic worker, PostgreSQL): the same prompt at concurrency 1 with three keys of one
// account, safety off (nothing inspected), flag (pre-check and output windows, nothing changed)
// and redact (an email replaced before dispatch, the answer held in windows), interleaved in rounds
// so machine load falls on all three alike. The budget: the pre-check adds at most 0.5 ms at p50
// (flag vs off). A second row measures the pre-check alone, in this process, on the same prompt.
// Standalone: `npx tsx scripts/bench-safety.ts` (BENCH_SCALE=0.2 shortens it).
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { GatewayProtocol } from '../shared/protocol/gateway.ts'
import { precheck } from '../services/gateway/safety/precheck.ts'
import { percentile, runLoad, runStandalone, type Row } from './bench-lib.ts'
import { benchAccount, UNLIMITED_TIERS, withBenchMesh } from './lib/bench-mesh.ts'

const PROMPT = 'You are helping the support team. Summarise the customer message below in two sentences and suggest a polite reply. ' +
  'Customer: Hello, my order from last Tuesday has not arrived yet and the tracking page has said "in transit" for six days now. ' +
  'Could you check what is going on? You can reach me at dana.k@example.com. Thanks, Dana'
const BUDGET_MS = 0.5

export async function benchSafety (scale: number): Promise<Row[]> {
  const opts = {
    serviceEnv: {
      // the bench's many requests from one peer must not read as an anomaly: alerts only, never suspension
      gateway: { LOG_LEVEL: 'error', TIER_LIMITS: UNLIMITED_TIERS, SAFETY_ANOMALY_ACTION: 'alert' },
      inference: { LOG_LEVEL: 'warn', SYNTHETIC_TOKENS_PER_SEC: '0' },
      auth: { LOG_LEVEL: 'warn' }
    }
  }
  return withBenchMesh('safety', opts, async ({ gateway }) => {
    const rows: Row[] = []
    const { token } = await benchAccount(gateway, 'bench')
    const policies = ['off', 'flag', 'redact'] as const
    const keys = new Map<string, string>()
    for (const safety of policies) keys.set(safety, (await gateway.call(GatewayProtocol.createKey, { token, name: safety, safety })).key)
    const once = (safety: string) => (i: number) => gateway.stream(GatewayProtocol.infer, { apiKey: keys.get(safety)!, prompt: `${PROMPT} #${i}`, maxTokens: 16, stream: true }, { onChunk: () => {}, idleTimeout: 30_000 })

    for (const p of policies) await runLoad(1, 100, once(p)) // warm: JIT, key cache, connection
    const rounds = 6
    const perRound = Math.max(40, Math.round(200 * scale))
    const samples = new Map<string, number[]>(policies.map((p) => [p, []]))
    const errors = new Map<string, number>(policies.map((p) => [p, 0]))
    for (let r = 0; r < rounds; r++) {
      // each round starts with another policy, so none always runs first (after a pause) or last
      for (const p of [...policies.slice(r % policies.length), ...policies.slice(0, r % policies.length)]) {
        const res = await runLoad(1, perRound, once(p))
        samples.get(p)!.push(res.p50)
        errors.set(p, errors.get(p)! + res.errors)
      }
    }
    // the median of the rounds' p50s: one slow round (another process on the CPU) moves it least
    const median = (xs: number[]) => percentile([...xs].sort((a, b) => a - b), 0.5)
    const off = median(samples.get('off')!)
    for (const p of policies) {
      const p50 = median(samples.get(p)!)
      rows.push({
        bench: 'safety pre-check', path: `gateway → worker, key safety ${p}`, concurrency: 1, requests: rounds * perRound, errors: errors.get(p)!,
        'p50 ms': p50.toFixed(3), 'p50 added ms': p === 'off' ? '' : (p50 - off).toFixed(3),
        'within 0.5 ms': p === 'flag' ? (p50 - off <= BUDGET_MS ? 'yes' : 'NO') : ''
      })
    }
    const us: number[] = []
    const messages = [{ role: 'user' as const, content: PROMPT }]
    for (let i = 0; i < 20_000; i++) {
      const t0 = process.hrtime.bigint()
      precheck(messages, i % 2 ? 'flag' : 'redact')
      us.push(Number(process.hrtime.bigint() - t0) / 1e6)
    }
    us.sort((a, b) => a - b)
    rows.push({ bench: 'safety pre-check', path: `precheck() alone, ${PROMPT.length}-char prompt`, concurrency: 1, requests: us.length, errors: 0, 'p50 ms': percentile(us, 0.5).toFixed(4), 'p50 added ms': percentile(us, 0.5).toFixed(4) })
    await gateway.close()
    return rows
  })
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await runStandalone('bench-safety', 'the same request with key safety off, flag and redact', `budget: flag adds ≤ ${BUDGET_MS} ms at p50`, benchSafety)
}
