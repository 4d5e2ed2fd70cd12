import { MeshError } from '../errors.ts'

// Who may call a method. A public key proves who a peer is; its role comes from configuration (the
// mesh members list names which key is which service) and, for workers, from the gateway's live
// worker set. Each method lists the roles that may call it, and the credential its body must carry;
// the server refuses any other caller before it parses or runs anything.

/** the kinds of configured mesh members; a bare key on the members list is an operator's tool */
export const MEMBER_KINDS = ['gateway', 'auth', 'web', 'metrics', 'inference', 'operator'] as const
export type MemberKind = typeof MEMBER_KINDS[number]

/**
 * stranger: any peer at all; worker: an approved worker on the connection it registered on;
 * replicaGateway: a configured gateway that follows this gateway's registry; a member kind: a key
 * configured as that service
 */
export type PeerRole = 'stranger' | 'worker' | 'replicaGateway' | MemberKind

/** what the request body must carry: an API key (`apiKey`), a session (`token`), an admin's session */
export type Credential = 'apiKey' | 'session' | 'admin'

export interface Callers {
  /** the roles that may call; a caller holding any one of them passes */
  readonly from: readonly PeerRole[]
  /** checked after the role and before the body is parsed */
  readonly needs?: Credential
}

/** The body field a credential travels in. */
export const CREDENTIAL_FIELD: Record<Credential, 'apiKey' | 'token'> = { apiKey: 'apiKey', session: 'token', admin: 'token' }

/** Whether a caller holding `roles` passes the role part of a rule (a method without one passes nobody). */
export function rolesAllow (callers: Callers | undefined, roles: ReadonlySet<PeerRole>): boolean {
  return !!callers && callers.from.some((r) => roles.has(r))
}

/** The credential a rule asks for, read from the raw body: a bounded string, or UNAUTHENTICATED / INVALID_API_KEY. */
export function credentialOf (needs: Credential, raw: unknown): string {
  const field = CREDENTIAL_FIELD[needs]
  const value = raw && typeof raw === 'object' ? (raw as Record<string, unknown>)[field] : undefined
  if (typeof value === 'string' && value.length > 0 && value.length <= 4096) return value
  throw needs === 'apiKey' ? MeshError.INVALID_API_KEY('an API key is required') : MeshError.UNAUTHENTICATED('a session token is required')
}

/**
 * The mesh members list: entries `name=key` (name: a member kind, with an optional `-N` instance
 * suffix, e.g. gateway-2) or a bare key (an operator's tool: a benchmark client, a script).
 */
export function parseMembers (entries: readonly string[]): Map<string, MemberKind> {
  const members = new Map<string, MemberKind>()
  for (const entry of entries) {
    const i = entry.indexOf('=')
    const key = (i < 0 ? entry : entry.slice(i + 1)).trim().toLowerCase()
    const kind = i < 0 ? 'operator' : entry.slice(0, i).trim().toLowerCase().replace(/-\d+$/, '')
    if (!/^[0-9a-f]{64}$/.test(key)) throw new Error(`mesh member '${entry.slice(0, 80)}': expected name=<64-hex public key>`)
    if (!isMemberKind(kind)) throw new Error(`mesh member '${entry.slice(0, i)}': the name must be one of ${MEMBER_KINDS.join(', ')} (optionally with -N)`)
    members.set(key, kind)
  }
  return members
}

function isMemberKind (kind: string): kind is MemberKind {
  return (MEMBER_KINDS as readonly string[]).includes(kind)
}
