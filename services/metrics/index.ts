import { z } from 'zod'
import { hexKey, loadConfig, port } from '../../shared/config.ts'
import { runService } from '../../shared/run.ts'
import { meshOptions } from '../../shared/service-env.ts'
import { MetricsService } from './service.ts'

const target = z.string().transform((entry) => {
  const i = entry.indexOf('=')
  return { name: i > 0 ? entry.slice(0, i) : '', publicKey: entry.slice(i + 1) }
}).pipe(z.object({ name: z.string().regex(/^[A-Za-z0-9_.-]{1,50}$/, 'expected name=hexkey'), publicKey: hexKey }))

const schema = z.object({
  METRICS_SERVICE_PORT: port.default(3004),
  METRICS_HOST: z.string().default('127.0.0.1'),
  /** comma list of name=hexkey, e.g. auth=ab12…,gateway=cd34… */
  HYPERINFER_METRICS_TARGETS: z.string().default('').transform((s) => s.split(/[\s,]+/).filter(Boolean)).pipe(z.array(target)),
  METRICS_SCRAPE_TIMEOUT_MS: z.coerce.number().int().min(100).max(60_000).default(2000)
})

await runService('metrics', () => {
  const cfg = loadConfig(schema)
  const svc = new MetricsService({
    ...meshOptions('metrics'),
    port: cfg.METRICS_SERVICE_PORT,
    host: cfg.METRICS_HOST,
    targets: cfg.HYPERINFER_METRICS_TARGETS,
    scrapeTimeoutMs: cfg.METRICS_SCRAPE_TIMEOUT_MS
  })
  return { service: svc }
}, (svc) => `metrics ready ${svc.url}/metrics`)
