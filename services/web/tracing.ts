import type { IncomingMessage } from 'node:http'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { tracer, type Span } from '../../shared/tracing/index.ts'

// The HTTP edge's part of a trace: one server span per request, a child of the client's
// `traceparent` when it sent one, else a new trace whose id is the request id (x-request-id), so the
// header, the trace and request_logs.trace_id name the same request. The RPC calls a route makes
// carry this span's traceparent. With tracing off nothing is registered and `traceparentOf` is
// undefined without a lookup.

const spans = new WeakMap<IncomingMessage, Span>()

/** Trace every request `app` serves (a no-op when tracing is off). */
export function registerHttpTracing (app: FastifyInstance): void {
  const t = tracer()
  if (!t) return
  app.addHook('onRequest', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched'
    const parent = typeof req.headers.traceparent === 'string' ? req.headers.traceparent : null
    const span = t.start(`${req.method} ${route}`, parent, {
      kind: 'server',
      traceId: req.id,
      // the path without its query string, never a header or the body
      attributes: { 'http.request.method': req.method, 'http.route': route, 'url.path': req.url.split('?')[0]!, 'hyperinfer.request_id': req.id }
    })
    spans.set(req.raw, span)
    // 'close' comes for every response, streamed, hijacked or cut off
    reply.raw.once('close', () => {
      const status = reply.raw.statusCode
      span.set('http.response.status_code', status)
      span.end(status >= 500 ? `HTTP_${status}` : undefined)
    })
  })
}

/** The traceparent an RPC call made for `req` carries, or undefined when tracing is off. */
export function traceparentOf (req: FastifyRequest): string | undefined {
  return tracer() ? spans.get(req.raw)?.traceparent : undefined
}
