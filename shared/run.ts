import { ConfigError } from './config.ts'
import type { Logger } from './log.ts'
import { startTracing, stopTracing } from './tracing/index.ts'

export interface Runnable {
  open (): Promise<void>
  close (): Promise<void>
  readonly log: Logger
  /** how long close() may wait for running work before it stops anyway (added to the stop deadline) */
  readonly drainTimeoutMs?: number
}

/**
 * Process entry for a service: build it from validated config, open it, print a ready line, and close
 * it cleanly on SIGINT/SIGTERM. A bad config is one clear line on stderr and exit code 2.
 */
export interface Built<S extends Runnable> { service: S, cleanup?: () => Promise<void> }

export async function runService<S extends Runnable> (name: string, build: () => Promise<Built<S>> | Built<S>, ready: (svc: S) => string): Promise<void> {
  let svc: S
  let cleanup: () => Promise<void> = async () => {}
  await held()
  try {
    // tracing (off unless an OTLP endpoint is set) is up before anything could start a span
    await startTracing(name, process.env.HYPERINFER_SERVICE_NAME || process.env.HYPERINFER_WORKER_NAME || name)
    const built = await build()
    svc = built.service
    if (built.cleanup) cleanup = built.cleanup
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${name}: ${err.message}\n`)
      process.exit(2)
    }
    throw err
  }
  let stopping = false
  const stop = async (signal: string) => {
    if (stopping) return
    stopping = true
    svc.log.info({ signal }, 'stopping')
    const timer = setTimeout(() => { svc.log.error('graceful stop timed out'); process.exit(1) }, 10_000 + (svc.drainTimeoutMs ?? 0))
    timer.unref()
    try { await svc.close(); await cleanup(); await stopTracing() } finally { process.exit(0) }
  }
  process.on('SIGINT', () => { void stop('SIGINT') })
  process.on('SIGTERM', () => { void stop('SIGTERM') })
  // started by a supervisor (npm start, tests): never outlive it, even if it dies without a word
  if (process.send) process.on('disconnect', () => { void stop('parent exited') })
  process.on('unhandledRejection', (err) => { svc.log.error({ err }, 'unhandled rejection') })
  try {
    await svc.open()
  } catch (err) {
    process.stderr.write(`${name}: failed to start: ${(err as Error).message}\n`)
    // the start failure just printed is the one to report; the process exits whatever close does
    await svc.close().catch(() => {})
    await cleanup().catch(() => {})
    process.exit(1)
  }
  // one machine-readable line the orchestrator and tests wait for
  process.stdout.write(ready(svc) + '\n')
  if (process.send) process.send({ ready: true })
}

/**
 * A supervisor (scripts/lib/localmesh.ts) may start a service held (HYPERINFER_HELD=1): its code loads
 * while what it needs (the database, another service's key) is still starting, and it goes on when
 * told, with the rest of its environment in the message. Its supervisor gone first, it exits.
 */
async function held (): Promise<void> {
  if (process.env.HYPERINFER_HELD !== '1' || !process.send) return
  const env = await new Promise<Record<string, string>>((resolve) => {
    const onMessage = (m: unknown) => {
      const start = (m as { start?: unknown } | null)?.start
      if (start === null || typeof start !== 'object') return
      process.off('message', onMessage)
      process.off('disconnect', onDisconnect)
      resolve(start as Record<string, string>)
    }
    const onDisconnect = () => process.exit(0)
    process.on('message', onMessage)
    process.on('disconnect', onDisconnect)
  })
  for (const [k, v] of Object.entries(env)) if (typeof v === 'string') process.env[k] = v
  delete process.env.HYPERINFER_HELD
}
