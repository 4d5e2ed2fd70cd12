import { MeshError } from '../../shared/errors.ts'
import type { PublicUser } from '../../shared/protocol/auth.ts'

// A session token's user, as auth reads it fresh (role included): for the account reads a user makes
// and for the admin-only methods, whose role is checked here on every call.

export class SessionUsers {
  private readonly whoami: (token: string) => Promise<PublicUser>

  constructor (whoami: (token: string) => Promise<PublicUser>) {
    this.whoami = whoami
  }

  user (token: string): Promise<PublicUser> {
    return this.whoami(token)
  }

  async admin (token: string): Promise<PublicUser> {
    const user = await this.whoami(token)
    if (user.role !== 'admin') throw MeshError.FORBIDDEN('only an admin can do this')
    return user
  }

  /** The admin's name as recorded with the registry changes they make. */
  async adminName (token: string): Promise<string> {
    return 'user:' + (await this.admin(token)).username
  }
}
