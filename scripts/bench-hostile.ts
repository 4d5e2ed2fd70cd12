// Whether one caller can stall the gateway for the others, on real processes (LocalMesh: auth, a
// gateway, a synthetic worker, PostgreSQL): another user's small requests (c=1) alone, then while
// 100k-character prompts of one CJK character (slow to tokenize) are sent without pause, with a
// made-up key and with a real one, by an attacker in a process (and DHT peer) of its own. Reports the small requests' latency, the p99 they gained, and
// the gateway's own event-loop delay (its nodejs_eventloop_lag_max_seconds over each phase).
// The gateway's budget: no request delays another by more than 50 ms.
// Standalone: `npx tsx scripts/bench-hostile.ts` (BENCH_SCALE=0.2 shortens it).
import crypto from 'node:crypto'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { MeshClient } from '../shared/mesh/client.ts'
import { CommonProtocol } from '../shared/protocol/common.ts'
import { GatewayProtocol } from '../shared/protocol/gateway.ts'
import { runLoad, runStandalone, type Row } from './bench-lib.ts'
import { benchAccount, UNLIMITED_TIERS, withBenchMesh } from './lib/bench-mesh.ts'
import { startFlood } from './lib/flood.ts'


/** the gateway's largest event-loop delay since the last read, in ms (reading resets it) */
async function loopLagMaxMs (gateway: MeshClient): Promise<number> {
  const { text } = await gateway.call(CommonProtocol.metricsText, {}, 30_000)
  const line = text.split('\n').find((l) => l.startsWith('nodejs_eventloop_lag_max_seconds'))
  return line ? Number(line.split(' ').at(-1)) * 1000 : NaN
}

export async function benchHostile (scale: number): Promise<Row[]> {
  const opts = {
    // named as the metrics service: the bench reads the gateway's own event-loop metric (metricsText)
    memberAs: 'metrics',
    serviceEnv: {
      gateway: { LOG_LEVEL: 'warn', TIER_LIMITS: UNLIMITED_TIERS },
      inference: { LOG_LEVEL: 'warn', SYNTHETIC_TOKENS_PER_SEC: '0' },
      auth: { LOG_LEVEL: 'warn' }
    }
  }
  return withBenchMesh('hostile', opts, async ({ mesh, gateway }) => {
    const rows: Row[] = []
    const victim = (await benchAccount(gateway, 'victim')).key
    const attacker = (await benchAccount(gateway, 'attacker')).key
    const madeUp = 'hi_' + crypto.randomBytes(32).toString('base64url').slice(0, 43)
    const small = (i: number) => gateway.call(GatewayProtocol.infer, { apiKey: victim, prompt: `small ${i}`, maxTokens: 4 }, 30_000)
    const n = Math.max(100, Math.round(500 * scale))

    await runLoad(10, 200, small) // warm
    await loopLagMaxMs(gateway)
    const quiet = await runLoad(1, n, small)
    const quietLag = await loopLagMaxMs(gateway)

    const flood = await startFlood({ bootstrap: mesh.bootstrapString, gatewayKey: mesh.gatewayKey, apiKeys: [madeUp, attacker], prompt: { repeat: '漢', times: 100_000 }, maxTokens: 2 })
    const hostile = await runLoad(1, n, small)
    const hostileLag = await loopLagMaxMs(gateway)
    const sent = await flood.stop()

    const row = (phase: string, r: Awaited<ReturnType<typeof runLoad>>, lag: number): Row => ({
      bench: 'event-loop delay during hostile prompts', phase, requests: n, errors: r.errors, 'p50 ms': r.p50.toFixed(2), 'p99 ms': r.p99.toFixed(2), 'gateway loop max ms': lag.toFixed(1)
    })
    rows.push(row('quiet', quiet, quietLag))
    rows.push({ ...row(`100k-char prompts (${sent} sent, made-up and real key)`, hostile, hostileLag), 'p99 added ms': (hostile.p99 - quiet.p99).toFixed(2) })
    await gateway.close()
    return rows
  })
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await runStandalone('bench-hostile', 'small requests alone and during 100k-character prompts', 'budget: p99 added ≤ 50 ms and gateway loop max ≤ 50 ms', benchHostile)
}
