import crypto from 'node:crypto'
import type { MeshClient } from '../../../shared/mesh/client.ts'
import { AuthProtocol, type SessionApiKey } from '../../../shared/protocol/auth.ts'

// The API key the dashboard runs a session's inference with (its compare page). Auth mints it for the
// session (services/auth/session-keys.ts); this server keeps it in memory, by a hash of the session
// token, and reuses it while it has a while left to live. It never goes to the browser, into a page or
// into a log: the page posts to /api/dashboard/compare with its session cookie and CSRF header, and
// this server adds the key on the way to the gateway. Logging out (anywhere) revokes it at auth.

/** a key this close to its expiry is replaced rather than reused */
const RENEW_BEFORE_MS = 5 * 60_000
const MAX_HELD = 10_000

const digest = (token: string) => crypto.hash('sha256', token, 'hex')

export class DashboardKeys {
  private readonly held = new Map<string, SessionApiKey>()
  private readonly minting = new Map<string, Promise<SessionApiKey>>()

  constructor (private readonly auth: () => MeshClient) {}

  /** The session's key: the one held while it lives, else a new one from auth. */
  async keyFor (sessionToken: string): Promise<string> {
    const id = digest(sessionToken)
    const have = this.held.get(id)
    if (have && Date.parse(have.expiresAt) - Date.now() > RENEW_BEFORE_MS) return have.key
    let pending = this.minting.get(id)
    if (!pending) {
      // two tabs asking at once share one key
      pending = this.auth().call(AuthProtocol.sessionApiKey, { token: sessionToken })
      this.minting.set(id, pending)
      pending.then((k) => { this.remember(id, k) }, () => {}).finally(() => this.minting.delete(id))
    }
    return (await pending).key
  }

  /** Forget the session's key: it was refused (revoked from the keys page), or the session ended. */
  forget (sessionToken: string): void {
    this.held.delete(digest(sessionToken))
  }

  private remember (id: string, k: SessionApiKey): void {
    if (this.held.size >= MAX_HELD) {
      const now = Date.now()
      for (const [s, v] of this.held) if (Date.parse(v.expiresAt) <= now) this.held.delete(s)
      // still full: the oldest goes (its session simply gets a new key next time)
      if (this.held.size >= MAX_HELD) this.held.delete(this.held.keys().next().value!)
    }
    this.held.set(id, k)
  }
}
