import type { ErrorCode } from '../../shared/errors.ts'

// Error codes → HTTP status (and OpenAI's error type), shared by the JSON API and the dashboard's HTML pages.

const STATUS_BY_CODE: Partial<Record<ErrorCode, number>> = {
  BAD_REQUEST: 400,
  UNAUTHENTICATED: 401,
  INVALID_API_KEY: 401,
  INVALID_CREDENTIALS: 401,
  FORBIDDEN: 403,
  CSRF_REJECTED: 403,
  HOST_NOT_ALLOWED: 421,
  NOT_FOUND: 404,
  UNKNOWN_MODEL: 404,
  CONFLICT: 409,
  IDEMPOTENCY_IN_PROGRESS: 409,
  IDEMPOTENCY_KEY_MISMATCH: 422,
  PROMPT_TOO_LARGE: 413,
  SAFETY_BLOCKED: 400,
  PAYLOAD_TOO_LARGE: 413,
  RATE_LIMITED: 429,
  QUOTA_EXCEEDED: 429,
  INSUFFICIENT_CREDITS: 402,
  BUDGET_EXCEEDED: 402,
  BACKEND_ERROR: 502,
  RECEIPT_DISPUTED: 502,
  NO_WORKER: 503,
  UNAVAILABLE: 503,
  DATABASE_UNAVAILABLE: 503,
  SHUTTING_DOWN: 503,
  TIMEOUT: 504
}

export function httpStatusOf (code: ErrorCode): number {
  return STATUS_BY_CODE[code] ?? 500
}

/** OpenAI's error `type` for an HTTP status. */
export function errorTypeOf (status: number): string {
  if (status === 401) return 'authentication_error'
  if (status === 403) return 'permission_error'
  if (status === 429) return 'rate_limit_error'
  if (status === 402) return 'insufficient_quota'
  return status < 500 ? 'invalid_request_error' : 'server_error'
}
