import { z } from 'zod'
import { hexKey, keyList, loadConfig, port, positiveInt } from '../../shared/config.ts'
import { runService } from '../../shared/run.ts'
import { meshOptions } from '../../shared/service-env.ts'
import { WebService } from './service.ts'
import { corsOrigins } from './cors.ts'

const schema = z.object({
  WEB_SERVICE_PORT: port.default(3000),
  WEB_HOST: z.string().default('127.0.0.1'),
  HYPERINFER_AUTH_KEY: hexKey,
  HYPERINFER_GATEWAY_KEY: hexKey,
  /** the mesh's other gateways: requests fail over to them */
  HYPERINFER_GATEWAY_KEYS: keyList,
  WEB_RPC_TIMEOUT_MS: positiveInt.default(10_000),
  CORS_ORIGINS: corsOrigins,
  /** proxies whose X-Forwarded-For is believed (addresses or CIDR ranges); none: the client is the socket's peer */
  WEB_TRUSTED_PROXIES: z.string().default('').transform((s) => s.split(/[\s,]+/).filter(Boolean))
    .pipe(z.array(z.string().regex(/^[0-9a-fA-F:.]+(\/\d{1,3})?$/, 'an IP address or CIDR range')))
})

await runService('web', () => {
  const cfg = loadConfig(schema)
  const svc = new WebService({
    ...meshOptions('web'),
    authKey: cfg.HYPERINFER_AUTH_KEY,
    gatewayKey: cfg.HYPERINFER_GATEWAY_KEY,
    moreGateways: cfg.HYPERINFER_GATEWAY_KEYS,
    port: cfg.WEB_SERVICE_PORT,
    host: cfg.WEB_HOST,
    rpcTimeoutMs: cfg.WEB_RPC_TIMEOUT_MS,
    corsOrigins: cfg.CORS_ORIGINS,
    trustedProxies: cfg.WEB_TRUSTED_PROXIES
  })
  return { service: svc }
}, (svc) => `web ready ${svc.url}`)
