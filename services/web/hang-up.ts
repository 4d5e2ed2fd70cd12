import type { FastifyReply } from 'fastify'
import { Cancellation } from '../../shared/mesh/cancel.ts'

/**
 * A Cancellation cancelled when the client hangs up before its response is finished, so what runs
 * for it stops all the way to the backend. `keepRunning`: the answer runs on regardless (an
 * Idempotency-Key's retry will take it whole). `detach` stops listening once nothing is left to cancel.
 */
export function cancelOnHangUp (reply: FastifyReply, keepRunning = false): { cancel: Cancellation, detach: () => void } {
  const cancel = new Cancellation()
  const onClose = () => { if (!reply.raw.writableFinished && !keepRunning) cancel.abort() }
  reply.raw.once('close', onClose)
  return { cancel, detach: () => { reply.raw.off('close', onClose) } }
}
