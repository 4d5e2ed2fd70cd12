import { z } from 'zod'
import type { ResponseOf } from '../../shared/mesh/method.ts'
import type { GatewayProtocol } from '../../shared/protocol/gateway.ts'

// What a worker process tells the process that started it (`hyperinfer worker`), as messages on the
// child's IPC channel: its state as data, so no supervisor has to read it out of log text. A worker
// sends them only when it has an IPC channel (process.send); one run without a parent sends nothing.

export type Approval = ResponseOf<typeof GatewayProtocol.registerWorker>['approval']

export type WorkerStatus =
  /** open: its public key and the models it serves */
  | { type: 'ready', publicKey: string, models: string[] }
  /** about to dial a gateway (given, or found on the network's topic) */
  | { type: 'joining', gateway: string }
  /** a gateway took its registration on a new connection; pending: no traffic until an operator approves */
  | { type: 'registered', gateway: string, approval: Approval }
  /** a registration attempt failed with this error code; the worker retries */
  | { type: 'registration-failed', gateway: string, code: string }
  /** the connection to a registered gateway dropped; the worker reconnects */
  | { type: 'gateway-lost', gateway: string }
  /** the served models changed (a backend gained or lost some) */
  | { type: 'models', models: string[] }
  /** stopping: no new requests, in-flight ones finish */
  | { type: 'draining' }
  /** drained and closed; the process exits next */
  | { type: 'stopped' }

const publicKey = z.string().regex(/^[0-9a-f]{64}$/)
const models = z.array(z.string())

const schema: z.ZodType<WorkerStatus> = z.discriminatedUnion('type', [
  z.object({ type: z.literal('ready'), publicKey, models }),
  z.object({ type: z.literal('joining'), gateway: publicKey }),
  z.object({ type: z.literal('registered'), gateway: publicKey, approval: z.enum(['approved', 'pending']) }),
  z.object({ type: z.literal('registration-failed'), gateway: publicKey, code: z.string() }),
  z.object({ type: z.literal('gateway-lost'), gateway: publicKey }),
  z.object({ type: z.literal('models'), models }),
  z.object({ type: z.literal('draining') }),
  z.object({ type: z.literal('stopped') })
])

/** A status message, or null for anything else on the channel (other messages, other senders). */
export function parseWorkerStatus (message: unknown): WorkerStatus | null {
  const r = schema.safeParse(message)
  return r.success ? r.data : null
}

/** Send one status to the parent; resolves once it is written (or at once without a channel). */
export function sendWorkerStatus (status: WorkerStatus): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send || !process.connected) return resolve()
    // an error here means the parent has gone: nobody is left to tell, and the worker stops on 'disconnect'
    process.send(status, undefined, undefined, () => resolve())
  })
}

/** The status reporter of this process: sendWorkerStatus when it has an IPC channel, else none. */
export function ipcStatusReporter (): ((status: WorkerStatus) => void) | undefined {
  return process.send ? (status) => { void sendWorkerStatus(status) } : undefined
}
