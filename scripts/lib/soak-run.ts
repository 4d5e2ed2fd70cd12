import fs from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { percentile } from '../bench-lib.ts'
import { BenchHttp } from '../bench-http.ts'
import { benchAccount, UNLIMITED_TIERS, withBenchMesh } from './bench-mesh.ts'
import { GatewayProtocol } from '../../shared/protocol/gateway.ts'

// A soak: steady mixed load through a local mesh (two workers; RPC and HTTP /v1, streamed and whole,
// two accounts, a quarter of the prompts repeated so the response cache is used too), while every
// interval it samples each process's resident memory and open descriptors (/proc/<pid>) and the
// latency of the requests that ended in it. After warm-up it fits a line to each process's RSS (the
// slope, MB per minute), and checks that descriptors stay bounded and p99 stays steady.

export interface SoakOptions {
  seconds: number
  warmupSeconds: number
  intervalSeconds: number
  /** the requests per second the load aims at (a closed loop of `lanes` callers, paced) */
  rps: number
  lanes: number
  /** the largest RSS slope after warm-up that passes, MB/min */
  maxSlopeMbPerMin: number
  log?: (line: string) => void
}

export interface ProcSample { rssMb: number, fds: number }
export interface Interval { t: number, procs: Record<string, ProcSample>, requests: number, errors: number, p50: number, p99: number }
export interface ProcVerdict { process: string, rssStartMb: number, rssEndMb: number, slopeMbPerMin: number, slopeSe: number, rss: 'ok' | 'noisy' | 'LEAK', fdsWarm: number, fdsMax: number, fdsBounded: boolean, ok: boolean }
export interface SoakResult {
  options: Omit<SoakOptions, 'log'>
  intervals: Interval[]
  processes: ProcVerdict[]
  latency: { requests: number, errors: number, errorCodes: Record<string, number>, firstThirdP99: number, lastThirdP99: number, steady: boolean }
  ok: boolean
}

/** VmRSS and the number of open descriptors of a process (Linux); NaN when it cannot be read. */
export function sampleProc (pid: number | undefined): ProcSample {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8')
    const rss = /^VmRSS:\s+(\d+)/m.exec(status)
    return { rssMb: rss ? Number(rss[1]) / 1024 : NaN, fds: fs.readdirSync(`/proc/${pid}/fd`).length }
  } catch { return { rssMb: NaN, fds: NaN } } // gone, or not Linux: the sample says so
}

/** Least-squares slope of y over x, and its standard error (NaN with fewer than three points). */
export function slope (points: Array<[number, number]>): { slope: number, se: number } {
  const pts = points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y))
  if (pts.length < 2) return { slope: NaN, se: NaN }
  const mx = pts.reduce((s, [x]) => s + x, 0) / pts.length
  const my = pts.reduce((s, [, y]) => s + y, 0) / pts.length
  let num = 0
  let den = 0
  for (const [x, y] of pts) { num += (x - mx) * (y - my); den += (x - mx) ** 2 }
  if (den === 0) return { slope: NaN, se: NaN }
  const b = num / den
  const resid = pts.reduce((s, [x, y]) => s + (y - my - b * (x - mx)) ** 2, 0)
  return { slope: b, se: pts.length > 2 ? Math.sqrt(resid / (pts.length - 2) / den) : NaN }
}

/**
 * ok: the slope is under the target; LEAK: even its 95% lower bound is over it; noisy: the
 * garbage collector's sawtooth hides which (a longer run decides), counted as a pass.
 */
export function slopeVerdict (fit: { slope: number, se: number }, max: number): 'ok' | 'noisy' | 'LEAK' {
  if (!Number.isFinite(fit.slope)) return 'LEAK'
  if (fit.slope < max) return 'ok'
  return Number.isFinite(fit.se) && fit.slope - 2 * fit.se <= max ? 'noisy' : 'LEAK'
}

type Kind = 'rpc streamed' | 'rpc whole' | 'http streamed' | 'http whole'
const KINDS: Kind[] = ['rpc streamed', 'rpc whole', 'http streamed', 'http whole']

export async function runSoak (opts: SoakOptions): Promise<SoakResult> {
  const log = opts.log ?? (() => {})
  const meshOpts = {
    workers: 2,
    serviceEnv: {
      gateway: { LOG_LEVEL: 'warn', TIER_LIMITS: UNLIMITED_TIERS },
      inference: { LOG_LEVEL: 'warn', SYNTHETIC_TOKENS_PER_SEC: '200' },
      auth: { LOG_LEVEL: 'warn' },
      web: { LOG_LEVEL: 'warn' },
      metrics: { LOG_LEVEL: 'warn' }
    }
  }
  return withBenchMesh('soak', meshOpts, async ({ mesh, gateway }) => {
    const keys = [(await benchAccount(gateway, 'soak-a')).key, (await benchAccount(gateway, 'soak-b')).key]
    const http = new BenchHttp(mesh.webUrl!, Math.ceil(opts.lanes / 2))
    let seq = 0
    const once = async (kind: Kind, lane: number): Promise<void> => {
      const i = seq++
      const key = keys[lane % keys.length]!
      // a quarter of the prompts come from a small set, deterministic: the response cache answers those
      const repeat = i % 4 === 0
      const prompt = repeat ? `soak repeated ${i % 50}` : `soak ${i}`
      const extra = repeat ? { temperature: 0 } : {}
      if (kind.startsWith('rpc')) {
        await gateway.stream(GatewayProtocol.infer, { apiKey: key, model: 'synthetic', prompt, maxTokens: 8, stream: kind === 'rpc streamed', ...extra }, { onChunk: () => {}, idleTimeout: 30_000 })
        return
      }
      const stream = kind === 'http streamed'
      const res = await http.post('/v1/chat/completions', { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        JSON.stringify({ model: 'synthetic', messages: [{ role: 'user', content: prompt }], max_tokens: 8, stream, ...extra }))
      if (res.status !== 200) throw Object.assign(new Error(`HTTP ${res.status}`), { code: `HTTP_${res.status}` })
      if (stream ? !res.body.endsWith('data: [DONE]\n\n') : !JSON.parse(res.body).choices) throw Object.assign(new Error('incomplete answer'), { code: 'INCOMPLETE' })
    }

    const pids = (): Record<string, number | undefined> => {
      const out: Record<string, number | undefined> = {}
      for (const [name, c] of mesh.children) out[name] = c.proc.pid
      out['soak client'] = process.pid
      return out
    }
    const intervals: Interval[] = []
    const steadyMs: number[][] = []
    const codes: Record<string, number> = {}
    let window: number[] = []
    let windowErrors = 0
    let total = 0
    let errors = 0
    const started = Date.now()
    const endAt = started + opts.seconds * 1000
    const perLaneMs = opts.lanes / opts.rps * 1000
    const lanes = Array.from({ length: opts.lanes }, async (_, lane) => {
      const kind = KINDS[lane % KINDS.length]!
      let next = Date.now() + lane * perLaneMs / opts.lanes
      while (Date.now() < endAt) {
        const wait = next - Date.now()
        if (wait > 0) await sleep(wait)
        next = Math.max(next + perLaneMs, Date.now() - perLaneMs) // behind: no catch-up burst
        const t0 = process.hrtime.bigint()
        try {
          await once(kind, lane)
          window.push(Number(process.hrtime.bigint() - t0) / 1e6)
        } catch (err) {
          const code = (err as { code?: string }).code ?? 'INTERNAL'
          codes[code] = (codes[code] ?? 0) + 1
          windowErrors++
          errors++
        }
        total++
      }
    })
    const sampler = (async () => {
      const names = pids()
      while (Date.now() < endAt) {
        await sleep(Math.min(opts.intervalSeconds * 1000, Math.max(0, endAt - Date.now())))
        const ms = window.sort((a, b) => a - b)
        window = []
        const t = (Date.now() - started) / 1000
        const procs: Record<string, ProcSample> = {}
        for (const [name, pid] of Object.entries(names)) procs[name] = sampleProc(pid)
        intervals.push({ t, procs, requests: ms.length, errors: windowErrors, p50: percentile(ms, 0.5), p99: percentile(ms, 0.99) })
        windowErrors = 0
        if (t > opts.warmupSeconds) steadyMs.push(ms)
        const rss = Object.entries(procs).map(([n, p]) => `${n} ${p.rssMb.toFixed(0)}`).join(', ')
        log(`  ${t.toFixed(0)} s: ${ms.length} requests, p99 ${percentile(ms, 0.99).toFixed(1)} ms; RSS MB ${rss}`)
      }
    })()
    await Promise.all([...lanes, sampler])
    await http.close()

    const steady = intervals.filter((s) => s.t > opts.warmupSeconds)
    const warm = intervals.filter((s) => s.t <= opts.warmupSeconds)
    const processes: ProcVerdict[] = Object.keys(intervals[0]?.procs ?? {}).map((name) => {
      const rss = steady.map((s) => [s.t / 60, s.procs[name]!.rssMb] as [number, number])
      const fit = slope(rss)
      const rssVerdict = slopeVerdict(fit, opts.maxSlopeMbPerMin)
      const fdsWarm = Math.max(...warm.map((s) => s.procs[name]!.fds), 0)
      const firstHalf = steady.slice(0, Math.ceil(steady.length / 2)).map((s) => s.procs[name]!.fds)
      const fdsMax = Math.max(...steady.map((s) => s.procs[name]!.fds))
      // bounded: the second half of the steady phase opens no more than the first half did (plus slack)
      const bound = Math.max(fdsWarm, ...firstHalf) * 1.1 + 5
      const fdsBounded = fdsMax <= bound
      return {
        process: name, rssStartMb: rss[0]?.[1] ?? NaN, rssEndMb: rss.at(-1)?.[1] ?? NaN, slopeMbPerMin: fit.slope, slopeSe: fit.se, rss: rssVerdict, fdsWarm, fdsMax, fdsBounded,
        ok: rssVerdict !== 'LEAK' && fdsBounded
      }
    })
    const third = Math.max(1, Math.floor(steadyMs.length / 3))
    const p99Of = (parts: number[][]) => percentile(parts.flat().sort((a, b) => a - b), 0.99)
    const firstThirdP99 = p99Of(steadyMs.slice(0, third))
    const lastThirdP99 = p99Of(steadyMs.slice(-third))
    // steady: the last third's p99 within twice the first's (the machine's other load moves it some)
    const steadyP99 = Number.isFinite(firstThirdP99) && Number.isFinite(lastThirdP99) && lastThirdP99 <= 2 * firstThirdP99
    const { log: _log, ...options } = opts
    return {
      options,
      intervals,
      processes,
      latency: { requests: total, errors, errorCodes: codes, firstThirdP99, lastThirdP99, steady: steadyP99 },
      ok: processes.every((p) => p.ok) && steadyP99 && errors === 0
    }
  })
}
