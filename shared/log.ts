import pino, { type Logger } from 'pino'

// Secrets never reach a log line: any field with one of these names is censored at any depth we
// log objects at (two levels covers request payloads and nested config).
const SECRET_FIELDS = [
  'password', 'apiKey', 'api_key', 'key', 'token', 'jwt', 'secret', 'seed', 'authorization',
  'Authorization', 'x-api-key', 'providerKey', 'jwtSecret', 'workerToken', 'secretKey', 'databaseUrl'
]
const REDACT_PATHS = [
  ...SECRET_FIELDS,
  ...SECRET_FIELDS.map((f) => `*.${f}`),
  ...SECRET_FIELDS.map((f) => `*.*.${f}`)
]

export type { Logger }

export function createLogger (service: string, level = process.env.LOG_LEVEL ?? 'info'): Logger {
  return pino({
    name: service,
    level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    base: { service, pid: process.pid }
  })
}

/** Strip credentials from a URL before it is printed (postgres://user:pass@host → postgres://user:***@host). */
export function safeUrl (url: string): string {
  try {
    const u = new URL(url)
    if (u.password) u.password = '***'
    return u.toString()
  } catch {
    return '[unparseable url]'
  }
}
