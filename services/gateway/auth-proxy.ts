import type { MeshClient } from '../../shared/mesh/client.ts'
import type { MethodDef } from '../../shared/mesh/method.ts'
import type { HandlerBuilder } from '../../shared/mesh/peer.ts'
import { AuthProtocol } from '../../shared/protocol/auth.ts'
import { GatewayProtocol } from '../../shared/protocol/gateway.ts'
import { CallerGate } from '../../shared/caller-gate.ts'

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
 * `gate`: the auth method also gets the caller's public key as `source`, which it throttles by (logins
 * and registrations; the gateway's public schema has no such field, so a caller cannot name its own),
 * and the gateway holds each caller to the same allowance before asking auth at all.
 */
function pair<Req, Res> (gateway: MethodDef<Req, Res, never>, auth: MethodDef<Req & { source?: string }, Res, never>, opts: { gate?: [maxOpen: number, refusal: string] } = {}): AuthProxy {
  return {
    gateway: gateway.name,
    auth: auth.name,
    mount: (table, client) => {
      const gate = opts.gate ? new CallerGate(...opts.gate) : null
      table.on(gateway, (req, ctx) => gate
        ? gate.run(ctx.remoteKey, () => client().call(auth, { ...req, source: ctx.remoteKey }, TIMEOUT_MS))
        : client().call(auth, req, TIMEOUT_MS))
    }
  }
}

// the same allowance of attempts in flight as auth gives each client (services/auth/throttle.ts)
export const AUTH_PROXIES: readonly AuthProxy[] = [
  pair(GatewayProtocol.register, AuthProtocol.registerUser, { gate: [1, 'too many registrations from this client'] }),
  pair(GatewayProtocol.login, AuthProtocol.loginUser, { gate: [2, 'too many login attempts from this client'] }),
  pair(GatewayProtocol.createKey, AuthProtocol.generateApiKey),
  pair(GatewayProtocol.listKeys, AuthProtocol.listApiKeys),
  pair(GatewayProtocol.revokeKey, AuthProtocol.revokeApiKey),
  pair(GatewayProtocol.whoami, AuthProtocol.whoami),
  pair(GatewayProtocol.logout, AuthProtocol.logout),
  pair(GatewayProtocol.grantCredits, AuthProtocol.grantCredits)
]
