import type { MeshClient } from '../../shared/mesh/client.ts'
import type { MethodDef } from '../../shared/mesh/method.ts'
import type { HandlerBuilder } from '../../shared/mesh/peer.ts'
import { AuthProtocol } from '../../shared/protocol/auth.ts'
import { GatewayProtocol } from '../../shared/protocol/gateway.ts'

// Account and key methods the gateway answers by asking auth, so a CLI needs nothing but the
// gateway's key. Each pair is a public gateway method and the internal auth method behind it; the
// pair only type-checks when both take the same request and give the same response.

const TIMEOUT_MS = 15_000

export interface AuthProxy {
  readonly gateway: string
  readonly auth: string
  /** Answer the gateway method by calling the auth method over `client`. */
  mount (table: HandlerBuilder, client: () => MeshClient): void
}

/**
 * `source`: the auth method also gets the caller's public key, which it throttles by (logins and
 * registrations); the gateway's public schema has no such field, so a caller cannot name its own.
 */
function pair<Req, Res> (gateway: MethodDef<Req, Res, never>, auth: MethodDef<Req & { source?: string }, Res, never>, opts: { source?: true } = {}): AuthProxy {
  return {
    gateway: gateway.name,
    auth: auth.name,
    mount: (table, client) => {
      table.on(gateway, (req, ctx) => client().call(auth, opts.source ? { ...req, source: ctx.remoteKey } : req, TIMEOUT_MS))
    }
  }
}

export const AUTH_PROXIES: readonly AuthProxy[] = [
  pair(GatewayProtocol.register, AuthProtocol.registerUser, { source: true }),
  pair(GatewayProtocol.login, AuthProtocol.loginUser, { source: true }),
  pair(GatewayProtocol.createKey, AuthProtocol.generateApiKey),
  pair(GatewayProtocol.listKeys, AuthProtocol.listApiKeys),
  pair(GatewayProtocol.revokeKey, AuthProtocol.revokeApiKey),
  pair(GatewayProtocol.whoami, AuthProtocol.whoami),
  pair(GatewayProtocol.logout, AuthProtocol.logout),
  pair(GatewayProtocol.grantCredits, AuthProtocol.grantCredits)
]
