import type { GatewayHealth, RegistryListing } from '../../shared/protocol/gateway.ts'
import type { SessionUsers } from './sessions.ts'

// What the public health and registry methods tell whom. Strangers get counts and the catalog;
// each worker's key and the network key go only to mesh members and to an admin's session, since a
// worker's key is where to aim at it and the network key is what workers and gateways find each other by.

export class Disclosure {
  private readonly sessions: SessionUsers
  private readonly isMeshMember: (remoteKey: string) => boolean

  constructor (sessions: SessionUsers, isMeshMember: (remoteKey: string) => boolean) {
    this.sessions = sessions
    this.isMeshMember = isMeshMember
  }

  /**
   * Whether this caller gets the full answer: a mesh member, or a caller with an admin's session. A
   * token that auth does not accept is refused (UNAUTHENTICATED); a user's valid session gets the
   * public view, as a stranger does.
   */
  async full (remoteKey: string, token: string | undefined): Promise<boolean> {
    if (this.isMeshMember(remoteKey)) return true
    if (token === undefined) return false
    return (await this.sessions.user(token)).role === 'admin'
  }

  async health (h: GatewayHealth, remoteKey: string, token: string | undefined): Promise<GatewayHealth> {
    if (await this.full(remoteKey, token)) return h
    const { workers: _workers, ...counts } = h
    return counts
  }

  async registry (r: Required<RegistryListing>, remoteKey: string, token: string | undefined): Promise<RegistryListing> {
    if (await this.full(remoteKey, token)) return r
    return { writable: r.writable, models: r.models }
  }
}
