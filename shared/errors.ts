// Coded errors that survive the wire. A handler throws a MeshError; the RPC layer sends
// `{ code, message, details }`; the caller gets a MeshError with the same code back.
// Callers branch on `err.code`, never on message text. Every code anything throws, sends or records
// is in this table (the web's HTTP statuses are keyed by it, services/web/http-errors.ts).

export const ErrorCodes = {
  BAD_REQUEST: 'BAD_REQUEST', // payload failed schema validation
  PAYLOAD_TOO_LARGE: 'PAYLOAD_TOO_LARGE', // an HTTP body over the web service's limit
  UNKNOWN_METHOD: 'UNKNOWN_METHOD', // the remote does not serve the method
  UNSUPPORTED: 'UNSUPPORTED', // the SDK's transport has no such operation (e.g. quota over HTTP)
  UNAUTHENTICATED: 'UNAUTHENTICATED', // missing / invalid / expired session token
  INVALID_API_KEY: 'INVALID_API_KEY', // unknown, revoked or expired API key
  FORBIDDEN: 'FORBIDDEN', // authenticated but not allowed (firewall, scopes, ownership)
  CSRF_REJECTED: 'CSRF_REJECTED', // a dashboard form post without the same-origin proof
  HOST_NOT_ALLOWED: 'HOST_NOT_ALLOWED', // an HTTP request naming a Host the server does not answer to
  NOT_FOUND: 'NOT_FOUND',
  CONFLICT: 'CONFLICT', // duplicate username / email
  INVALID_CREDENTIALS: 'INVALID_CREDENTIALS',
  RATE_LIMITED: 'RATE_LIMITED', // too many requests in the window
  QUOTA_EXCEEDED: 'QUOTA_EXCEEDED', // token quota of the hour or day used up
  INSUFFICIENT_CREDITS: 'INSUFFICIENT_CREDITS', // the balance cannot cover the request's worst case
  BUDGET_EXCEEDED: 'BUDGET_EXCEEDED', // the key's own budget cannot cover it
  PROMPT_TOO_LARGE: 'PROMPT_TOO_LARGE',
  SAFETY_BLOCKED: 'SAFETY_BLOCKED', // the key's safety policy refuses what the prompt contains (billed nothing)
  UNKNOWN_MODEL: 'UNKNOWN_MODEL',
  NO_WORKER: 'NO_WORKER', // model is known but no connected worker can serve it now
  BACKEND_ERROR: 'BACKEND_ERROR', // the AI backend failed
  UNAVAILABLE: 'UNAVAILABLE', // a mesh dependency (auth, a worker) is not reachable
  DATABASE_UNAVAILABLE: 'DATABASE_UNAVAILABLE', // PostgreSQL is not reachable and nothing else can answer for it
  IDEMPOTENCY_IN_PROGRESS: 'IDEMPOTENCY_IN_PROGRESS', // a request with this idempotency key is still running elsewhere
  IDEMPOTENCY_KEY_MISMATCH: 'IDEMPOTENCY_KEY_MISMATCH', // an idempotency key reused with a different request
  TIMEOUT: 'TIMEOUT',
  CANCELLED: 'CANCELLED',
  SHUTTING_DOWN: 'SHUTTING_DOWN',
  INTERNAL: 'INTERNAL',
  // the worker's signed usage receipt did not match what the gateway asked, received or priced: the
  // request is refused at settlement and billed nothing
  RECEIPT_DISPUTED: 'RECEIPT_DISPUTED',
  // the registry cannot record what was sent (a worker's registration is refused, not served); in
  // request logs, a request whose outcome could not be stored as it was
  UNRECORDABLE: 'UNRECORDABLE',
  // recorded in request logs, never thrown to a caller
  STUCK: 'STUCK' // the sweeper failed a request left in processing
} as const

export type ErrorCode = typeof ErrorCodes[keyof typeof ErrorCodes]

const KNOWN_CODES: ReadonlySet<string> = new Set(Object.values(ErrorCodes))

export function isErrorCode (code: unknown): code is ErrorCode {
  return typeof code === 'string' && KNOWN_CODES.has(code)
}

export interface WireError {
  code: ErrorCode
  message: string
  details?: Record<string, unknown>
}

export class MeshError extends Error {
  readonly code: ErrorCode
  readonly details?: Record<string, unknown>

  constructor (code: ErrorCode, message: string, details?: Record<string, unknown>) {
    super(`${code}: ${message}`)
    this.name = 'MeshError'
    this.code = code
    this.details = details
  }

  /** The message without the code prefix, as sent on the wire. */
  get reason (): string {
    return this.message.slice(this.code.length + 2)
  }

  toWire (): WireError {
    const out: WireError = { code: this.code, message: this.reason }
    if (this.details) out.details = this.details
    return out
  }

  /** A peer's error as ours; a code this version does not know (a newer or hostile peer) is INTERNAL. */
  static fromWire (e: WireError): MeshError {
    return new MeshError(isErrorCode(e.code) ? e.code : ErrorCodes.INTERNAL, String(e.message), e.details)
  }

  static BAD_REQUEST (msg: string, details?: Record<string, unknown>) { return new MeshError(ErrorCodes.BAD_REQUEST, msg, details) }
  static UNAUTHENTICATED (msg = 'session token missing, invalid or expired') { return new MeshError(ErrorCodes.UNAUTHENTICATED, msg) }
  static INVALID_API_KEY (msg = 'API key is invalid, revoked or expired') { return new MeshError(ErrorCodes.INVALID_API_KEY, msg) }
  static FORBIDDEN (msg: string) { return new MeshError(ErrorCodes.FORBIDDEN, msg) }
  static NOT_FOUND (msg: string) { return new MeshError(ErrorCodes.NOT_FOUND, msg) }
  static CONFLICT (msg: string, details?: Record<string, unknown>) { return new MeshError(ErrorCodes.CONFLICT, msg, details) }
  static INVALID_CREDENTIALS () { return new MeshError(ErrorCodes.INVALID_CREDENTIALS, 'email or password is wrong') }
  static RATE_LIMITED (msg: string, retryAfterSeconds: number, details: Record<string, unknown> = {}) {
    return new MeshError(ErrorCodes.RATE_LIMITED, msg, { ...details, retryAfterSeconds })
  }
  static LIMIT (code: 'RATE_LIMITED' | 'QUOTA_EXCEEDED' | 'INSUFFICIENT_CREDITS' | 'BUDGET_EXCEEDED', msg: string, details: Record<string, unknown> = {}) {
    return new MeshError(code, msg, details)
  }
  static PROMPT_TOO_LARGE (msg: string) { return new MeshError(ErrorCodes.PROMPT_TOO_LARGE, msg) }
  static UNKNOWN_MODEL (model: string, available: string[]) {
    return new MeshError(ErrorCodes.UNKNOWN_MODEL, `model '${model}' is not served by any worker`, { model, available })
  }
  static NO_WORKER (msg: string) { return new MeshError(ErrorCodes.NO_WORKER, msg) }
  static BACKEND_ERROR (msg: string, details?: Record<string, unknown>) { return new MeshError(ErrorCodes.BACKEND_ERROR, msg, details) }
  static UNAVAILABLE (msg: string) { return new MeshError(ErrorCodes.UNAVAILABLE, msg) }
  static DATABASE_UNAVAILABLE (msg = 'the database is unavailable; try again shortly', retryAfterSeconds = 2) {
    return new MeshError(ErrorCodes.DATABASE_UNAVAILABLE, msg, { retryAfterSeconds })
  }
  static TIMEOUT (msg: string) { return new MeshError(ErrorCodes.TIMEOUT, msg) }
  static CANCELLED (msg = 'request cancelled') { return new MeshError(ErrorCodes.CANCELLED, msg) }
  static SHUTTING_DOWN () { return new MeshError(ErrorCodes.SHUTTING_DOWN, 'service is shutting down') }
  static INTERNAL (msg = 'internal error') { return new MeshError(ErrorCodes.INTERNAL, msg) }
  static RECEIPT_DISPUTED (msg: string) { return new MeshError(ErrorCodes.RECEIPT_DISPUTED, msg) }
  static UNRECORDABLE (msg: string, details?: Record<string, unknown>) { return new MeshError(ErrorCodes.UNRECORDABLE, msg, details) }
}

export function isMeshError (err: unknown): err is MeshError {
  return err instanceof MeshError
}

/** Turn anything thrown into something safe to send: unknown errors never leak their text. */
export function toWireError (err: unknown): WireError {
  if (err instanceof MeshError) return err.toWire()
  if (isDatabaseDown(err)) return MeshError.DATABASE_UNAVAILABLE().toWire()
  return { code: ErrorCodes.INTERNAL, message: 'internal error' }
}

/** socket errors of a connection that failed or broke */
const CONNECTION_ERRNOS = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN'])

/**
 * Whether `err` is PostgreSQL being out of reach (node-postgres' errors): the connection failed or
 * broke, or the server is shutting down or starting (SQLSTATE class 08, 57P01-57P03).
 */
export function isDatabaseDown (err: unknown): boolean {
  if (!err || typeof err !== 'object') return false
  const code = String((err as { code?: unknown }).code ?? '')
  if (CONNECTION_ERRNOS.has(code) || code.startsWith('08') || /^57P0[123]$/.test(code)) return true
  const message = String((err as { message?: unknown }).message ?? '')
  return /^Connection terminated|^timeout exceeded when trying to connect|^Client was closed|Connection terminated unexpectedly/.test(message)
}
