import cors from '@fastify/cors'
import type { FastifyInstance } from 'fastify'
import { z } from 'zod'

// Cross-origin calls to the OpenAI-compatible API (/v1), for browser apps on other origins: off
// unless CORS_ORIGINS lists origins (or is `*`). Only /v1 answers preflights and carries CORS
// headers; the dashboard and /api stay same-origin. No credentials: /v1 authenticates by API key,
// never by cookie.

/** CORS_ORIGINS: `*`, or comma-separated origins such as https://app.example.com,http://localhost:5173 */
export const corsOrigins = z.string().default('').transform((s, ctx) => {
  const list = s.split(',').map((x) => x.trim()).filter(Boolean)
  for (const o of list) {
    if (o === '*') continue
    let url: URL | null = null
    try { url = new URL(o) } catch { /* reported below as not an origin */ }
    if (!url || url.origin !== o || !/^https?:$/.test(url.protocol)) ctx.addIssue({ code: 'custom', message: `'${o}' is not an origin (scheme://host[:port], no path)` })
  }
  return list
})

export function registerCors (app: FastifyInstance, origins: readonly string[]): void {
  if (origins.length === 0) return
  const origin = origins.includes('*') ? '*' : [...origins]
  void app.register(cors, {
    delegator: (req, cb) => cb(null, req.url.startsWith('/v1/') ? {
      origin,
      methods: ['GET', 'POST', 'OPTIONS'],
      exposedHeaders: ['x-request-id', 'x-hyperinfer-ignored-params', 'retry-after'],
      maxAge: 600
    } : { origin: false })
  })
}
