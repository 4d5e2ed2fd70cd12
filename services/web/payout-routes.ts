import type { FastifyInstance, FastifyRequest } from 'fastify'
import { MeshError } from '../../shared/errors.ts'
import type { GatewayCaller } from '../../shared/mesh/failover.ts'
import { OperatorProtocol } from '../../shared/protocol/operators.ts'

// Admins download every account's payouts for a period as CSV (`Authorization: Bearer <session
// token>`; the gateway checks the admin role). Days are YYYY-MM-DD, `until` inclusive; by default the
// last 30 days.

const DAY = /^\d{4}-\d{2}-\d{2}$/

function bearer (req: FastifyRequest): string {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '')
  if (!m) throw MeshError.UNAUTHENTICATED('missing Authorization: Bearer <token> header')
  return m[1]!
}

function day (v: unknown, name: string): string | undefined {
  if (v === undefined) return undefined
  if (typeof v !== 'string' || !DAY.test(v)) throw MeshError.BAD_REQUEST(`${name} must be a day as YYYY-MM-DD`, { param: name })
  return v
}

export function registerPayoutRoutes (app: FastifyInstance, gateway: () => GatewayCaller): void {
  app.get<{ Querystring: { since?: string, until?: string } }>('/api/admin/payouts.csv', async (req, reply) => {
    const token = bearer(req)
    const since = day(req.query.since, 'since')
    const until = day(req.query.until, 'until')
    const res = await gateway().call(OperatorProtocol.payoutExport, { token, ...(since ? { since } : {}), ...(until ? { until } : {}) }, 30_000)
    return reply.header('cache-control', 'no-store').header('content-disposition', 'attachment; filename="payouts.csv"')
      .type('text/csv; charset=utf-8').send(res.csv)
  })
}
