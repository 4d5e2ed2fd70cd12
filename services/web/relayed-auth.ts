import { CallerGate } from '../../shared/caller-gate.ts'
import type { MeshClient } from '../../shared/mesh/client.ts'
import { AuthProtocol } from '../../shared/protocol/auth.ts'
import type { GatewayProtocol } from '../../shared/protocol/gateway.ts'
import type { RequestOf } from '../../shared/mesh/method.ts'

// Logins and registrations the web relays to auth for a browser or an HTTP client, named to auth by
// the client's address, and held to the same allowance here first (shared/caller-gate.ts).

export class RelayedAuth {
  private readonly logins = new CallerGate(2, 'too many login attempts from this client')
  private readonly signups = new CallerGate(1, 'too many registrations from this client')
  private readonly auth: () => MeshClient

  constructor (auth: () => MeshClient) {
    this.auth = auth
  }

  login (req: RequestOf<typeof GatewayProtocol.login>, ip: string) {
    const source = 'ip:' + ip
    return this.logins.run(source, () => this.auth().call(AuthProtocol.loginUser, { ...req, source }))
  }

  register (req: RequestOf<typeof GatewayProtocol.register>, ip: string) {
    const source = 'ip:' + ip
    return this.signups.run(source, () => this.auth().call(AuthProtocol.registerUser, { ...req, source }))
  }
}
