// The response cache on real processes (LocalMesh: two gateways sharing PostgreSQL, one worker with
// the synthetic backend at zero delay):
//   (a) a miss (the worker answers) against exact hits from the local tier, whole and streamed, and
//       from the shared tier (an entry another gateway wrote, pushed to this one's memory): the client's round trip p50/p99, and
//       the gateway's own time — the cache path's time in each hit (performance.now) and the share of
//       hits the gateway served within 1 ms (its ai_platform_rpc_duration_seconds histogram), so
//       "p50 ≤ 1 ms at the gateway" holds when that share is at least half;
//   (b) the semantic cache on the labelled paraphrase set (scripts/data/paraphrases.json), with the
//       mesh's embedding model (BENCH_EMBED_MODEL, default the built-in lexical `synthetic-embed`):
//       hit rate (paraphrases found) and false-hit rate (different questions matched) per threshold,
//       and the threshold the gateway's default comes from: the lowest whose false-hit rate ≤ 5%.
// Standalone: `npx tsx scripts/bench-cache.ts` (BENCH_SCALE=0.2 shortens it).
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { percentile, runLoad, runStandalone, type Row } from './bench-lib.ts'
import { benchAccount, UNLIMITED_TIERS, withBenchMesh } from './lib/bench-mesh.ts'
import { MeshClient } from '../shared/mesh/client.ts'
import { CommonProtocol } from '../shared/protocol/common.ts'
import { GatewayProtocol, type InferResult } from '../shared/protocol/gateway.ts'
import { cosine } from '../services/gateway/cache/semantic.ts'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const EMBED_MODEL = process.env.BENCH_EMBED_MODEL ?? 'synthetic-embed'
export const FALSE_HIT_BUDGET = 0.05

/** Infer calls the gateway served within 1 ms, and in all, from its own histogram. */
async function rpcWithin1ms (gateway: MeshClient): Promise<{ fast: number, all: number }> {
  const { text } = await gateway.call(CommonProtocol.metricsText, {}, 30_000)
  const read = (le: string) => Number(new RegExp(`ai_platform_rpc_duration_seconds_bucket\\{[^}]*le="${le}"[^}]*method="infer"[^}]*\\} (\\d+)|ai_platform_rpc_duration_seconds_bucket\\{[^}]*method="infer"[^}]*le="${le}"[^}]*\\} (\\d+)`).exec(text)?.slice(1).find(Boolean) ?? 0)
  return { fast: read('0.001'), all: read('\\+Inf') }
}

export async function benchCache (scale: number): Promise<Row[]> {
  const opts = {
    gateways: 2,
    // named as the metrics service: the bench reads the gateway's own request-time histogram
    memberAs: 'metrics',
    serviceEnv: {
      gateway: { LOG_LEVEL: 'warn', TIER_LIMITS: UNLIMITED_TIERS, CACHE_EMBED_MODEL: EMBED_MODEL },
      inference: { LOG_LEVEL: 'warn', SYNTHETIC_TOKENS_PER_SEC: '0', SYNTHETIC_MODELS: `synthetic,${EMBED_MODEL}` },
      auth: { LOG_LEVEL: 'warn' }
    }
  }
  return withBenchMesh('cache', opts, async ({ mesh, gateway, client }) => {
    const rows: Row[] = []
    const other = client(mesh.gatewayKeys[1]!, 'gateway-2')
    await other.waitOpen(15_000)
    const { key } = await benchAccount(gateway, 'cache')
    const n = Math.max(100, Math.round(1000 * scale))
    const ask = (client: MeshClient, prompt: string, stream = false) => client.stream(GatewayProtocol.infer,
      { apiKey: key, model: 'synthetic', prompt, maxTokens: 16, temperature: 0, stream }, { onChunk: () => {}, idleTimeout: 30_000 }) as Promise<InferResult>

    await runLoad(10, 200, (i) => ask(gateway, `warm ${i % 20}`)) // JIT, key cache, connections
    const cacheMs: number[] = []
    const hit = (client: MeshClient, prompt: string, stream = false) => async () => {
      const r = await ask(client, prompt, stream)
      if (!r.cached) throw Object.assign(new Error('expected a hit'), { code: 'MISS' })
      cacheMs.push(r.durationMs)
    }
    const measure = async (tier: string, load: () => Promise<Awaited<ReturnType<typeof runLoad>>>, gw: MeshClient | null, requests = n) => {
      cacheMs.length = 0
      const before = gw ? await rpcWithin1ms(gw) : null
      const r = await load()
      const after = gw ? await rpcWithin1ms(gw) : null
      cacheMs.sort((a, b) => a - b)
      const within = before && after && after.all > before.all ? (after.fast - before.fast) / (after.all - before.all) : null
      rows.push({
        bench: 'response cache', path: tier, requests, errors: r.errors, 'client p50 ms': r.p50.toFixed(2), 'client p99 ms': r.p99.toFixed(2),
        'cache path p50 ms': cacheMs.length ? percentile(cacheMs, 0.5).toFixed(3) : '-',
        'gateway ≤1 ms': within === null ? '-' : `${(within * 100).toFixed(0)}%`
      })
    }
    await measure('miss: the worker answers', () => runLoad(1, n, (i) => ask(gateway, `miss ${i} ${Date.now()}`)), gateway)
    await ask(gateway, 'the hot prompt')
    await measure('exact hit, local tier', () => runLoad(1, n, hit(gateway, 'the hot prompt')), gateway)
    await measure('exact hit, local tier, streamed', () => runLoad(1, n, hit(gateway, 'the hot prompt', true)), gateway)
    await measure('exact hit, local tier, c=50', () => runLoad(50, n * 5, hit(gateway, 'the hot prompt')), null, n * 5)
    for (let i = 0; i < n; i++) await ask(gateway, `shared ${i}`)
    await measure('exact hit, shared tier (another gateway wrote it)', () => runLoad(1, n, (i) => hit(other, `shared ${i}`)()), other)

    // the semantic cache's hit and false-hit rates on the labelled paraphrase set
    const { pairs } = JSON.parse(fs.readFileSync(path.join(ROOT, 'scripts', 'data', 'paraphrases.json'), 'utf8')) as { pairs: Array<{ a: string, b: string, same: boolean }> }
    const embed = async (text: string) => (await gateway.call(GatewayProtocol.embed, { apiKey: key, model: EMBED_MODEL, input: text }, 30_000)).embeddings[0]!
    const scored = await Promise.all(pairs.map(async (p) => ({ same: p.same, s: cosine(await embed(p.a), await embed(p.b)) })))
    const same = scored.filter((x) => x.same)
    const diff = scored.filter((x) => !x.same)
    let chosen: number | null = null
    for (const th of [0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]) {
      const hitRate = same.filter((x) => x.s >= th).length / same.length
      const falseHit = diff.filter((x) => x.s >= th).length / diff.length
      if (chosen === null && falseHit <= FALSE_HIT_BUDGET) chosen = th
      rows.push({ bench: 'semantic cache', path: `${EMBED_MODEL}, threshold ${th}`, requests: pairs.length, 'hit rate': `${(hitRate * 100).toFixed(0)}%`, 'false-hit rate': `${(falseHit * 100).toFixed(0)}%` })
    }
    rows.push({ bench: 'semantic cache', path: `default threshold: the lowest with false hits ≤ ${FALSE_HIT_BUDGET * 100}%`, 'hit rate': chosen === null ? 'none qualifies' : String(chosen) })
    await gateway.close()
    await other.close()
    return rows
  })
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await runStandalone('bench-cache', 'misses against local and shared hits; the semantic cache on a labelled paraphrase set', 'budget: a hit served within 1 ms at the gateway for at least half the hits (p50 ≤ 1 ms)', benchCache)
}
