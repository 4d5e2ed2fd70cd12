import path from 'node:path'
import { z } from 'zod'
import { bool, hexKey, loadConfig, port, stateDir } from '../../shared/config.ts'
import { runService } from '../../shared/run.ts'
import { meshOptions } from '../../shared/service-env.ts'
import { MetricsService } from './service.ts'

const name = /^[A-Za-z0-9_.-]{1,50}$/
const target = z.string().transform((entry) => {
  const i = entry.indexOf('=')
  const left = i > 0 ? entry.slice(0, i) : ''
  const at = left.indexOf('@')
  return { name: at >= 0 ? left.slice(0, at) : left, publicKey: entry.slice(i + 1), ...(at >= 0 ? { instance: left.slice(at + 1) } : {}) }
}).pipe(z.object({
  name: z.string().regex(name, 'expected name=hexkey or name@instance=hexkey'),
  instance: z.string().regex(name, 'instance: letters, digits, _ . - only').optional(),
  publicKey: hexKey
}))

const schema = z.object({
  METRICS_SERVICE_PORT: port.default(3004),
  METRICS_HOST: z.string().default('127.0.0.1'),
  /** comma list of name=hexkey (or name@instance=hexkey), e.g. auth=ab12…,gateway@eu-1=cd34…; empty: read the mesh file */
  HYPERINFER_METRICS_TARGETS: z.string().default('').transform((s) => s.split(/[\s,]+/).filter(Boolean)).pipe(z.array(target)),
  METRICS_SCRAPE_TIMEOUT_MS: z.coerce.number().int().min(100).max(60_000).default(2000),
  /** also scrape the workers each gateway reports (workers that joined from other machines) */
  METRICS_DISCOVER_WORKERS: bool.default(true)
})

await runService('metrics', () => {
  const cfg = loadConfig(schema)
  const svc = new MetricsService({
    ...meshOptions('metrics'),
    port: cfg.METRICS_SERVICE_PORT,
    host: cfg.METRICS_HOST,
    targets: cfg.HYPERINFER_METRICS_TARGETS,
    meshFile: cfg.HYPERINFER_METRICS_TARGETS.length === 0 ? path.join(stateDir(), 'mesh.json') : undefined,
    scrapeTimeoutMs: cfg.METRICS_SCRAPE_TIMEOUT_MS,
    discoverWorkers: cfg.METRICS_DISCOVER_WORKERS
  })
  return { service: svc }
}, (svc) => `metrics ready ${svc.url}/metrics`)
