import { MeshError, type ErrorCode } from '../../shared/errors.ts'
import type { Logger } from '../../shared/log.ts'
import type { RequestOf } from '../../shared/mesh/method.ts'
import { InferenceProtocol, type EmbedResult, type PromptResult, type TokenChunk } from '../../shared/protocol/inference.ts'
import type { TokenPrice } from '../../shared/receipt.ts'
import type { WorkerConn, WorkerPool } from './workers.ts'
import { Cancellation, type CancelSignal } from '../../shared/mesh/cancel.ts'

// Sending an admitted request to a worker: the pool picks the least-loaded worker that serves the
// model; an attempt that fails with a retryable code goes to the next worker (each worker at most
// once, up to maxAttempts) while the caller allows it; a worker silent for idleTimeoutMs fails its
// attempt, and so does a frame the token stream refuses. The breaker hears of each worker's faults,
// never of the caller's. A worker's failure reaches the caller in the gateway's words (fromWorker).

const RETRYABLE = new Set(['UNAVAILABLE', 'TIMEOUT', 'BACKEND_ERROR', 'SHUTTING_DOWN', 'INTERNAL', 'UNKNOWN_MODEL'])

/** A failure another worker might not have: the worker's fault, not the caller's. */
export function isRetryable (code: string): boolean { return RETRYABLE.has(code) }

/**
 * The codes a worker's failure keeps (each matters to the caller or to retries), in the gateway's
 * words: a worker's own text, details and retry-after never reach a caller, since a hostile worker
 * could put anything there. Any other code is the backend failing.
 */
const WORKER_ERRORS: Partial<Record<ErrorCode, string>> = {
  BACKEND_ERROR: 'the model backend failed',
  TIMEOUT: 'the model backend did not answer in time',
  UNAVAILABLE: 'the worker could not be reached',
  SHUTTING_DOWN: 'the worker is shutting down',
  UNKNOWN_MODEL: 'the worker does not serve this model',
  BAD_REQUEST: 'the model backend refused the request',
  PROMPT_TOO_LARGE: 'the prompt is too long for the model',
  CANCELLED: 'the request was cancelled'
}

/** A worker's failure as the gateway tells it; an error that is not coded is the gateway's own and passes. */
export function fromWorker (err: unknown): unknown {
  if (!(err instanceof MeshError)) return err
  const message = WORKER_ERRORS[err.code]
  return message ? new MeshError(err.code, message) : MeshError.BACKEND_ERROR(WORKER_ERRORS.BACKEND_ERROR!)
}

export type DispatchOutcome<T> =
  | { ok: true, value: T, worker: string, attempts: number }
  | { ok: false, err: unknown, worker: string | null, attempts: number }

export type PromptRequest = RequestOf<typeof InferenceProtocol.processPrompt>
export type WorkerEmbedRequest = RequestOf<typeof InferenceProtocol.embed>

export interface PromptHooks {
  /** aborting cancels the worker's generation */
  signal: CancelSignal
  /** an attempt starts (the first, or another worker's after a failure), at the price told to its worker */
  onAttempt (price?: TokenPrice): void
  /** a frame from the worker; an error returned ends the attempt as the worker's failure */
  onChunk (chunk: TokenChunk): MeshError | null
  /** whether a failed attempt may go to another worker */
  mayRetry (): boolean
  /** the dispatch step's span (shared/tracing): each worker's span hangs off it */
  traceparent?: string | undefined
  /** the router's cost strategy chose the model: its cheapest workers serve it */
  cheapest?: boolean
}

/** What the request pipeline needs of the workers. */
export interface WorkerDispatch {
  prompt (req: PromptRequest, hooks: PromptHooks): Promise<DispatchOutcome<PromptResult>>
  embed (req: WorkerEmbedRequest, signal: CancelSignal, traceparent?: string): Promise<DispatchOutcome<EmbedResult>>
}

export interface DispatcherOptions {
  maxAttempts?: number
  /** no token or response from a worker for this long fails the attempt */
  idleTimeoutMs?: number
  log: Logger
  /** the price of a model on a worker, nano-USD a token: told to the worker, which states it in its receipt */
  price?: (model: string, worker: string) => TokenPrice
}

export class Dispatcher implements WorkerDispatch {
  private readonly workers: WorkerPool
  private readonly maxAttempts: number
  private readonly idleTimeoutMs: number
  private readonly log: Logger
  private readonly price: DispatcherOptions['price']

  constructor (workers: WorkerPool, opts: DispatcherOptions) {
    this.price = opts.price
    this.workers = workers
    this.maxAttempts = opts.maxAttempts ?? 3
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 60_000
    this.log = opts.log
  }

  prompt (req: PromptRequest, hooks: PromptHooks): Promise<DispatchOutcome<PromptResult>> {
    return this.run(req.model, hooks.signal, async (worker) => {
      const price = this.price?.(req.model, worker.publicKey)
      hooks.onAttempt(price)
      const { cancel: attempt, detach } = Cancellation.follow(hooks.signal)
      let broken: MeshError | null = null
      const onChunk = (chunk: TokenChunk) => {
        if (broken) return // the rest of a batch from a worker that broke the protocol
        broken = hooks.onChunk(chunk)
        if (broken) attempt.abort()
      }
      try {
        return await worker.peer.stream(InferenceProtocol.processPrompt, price ? { ...req, price } : req, { signal: attempt, idleTimeout: this.idleTimeoutMs, onChunk, traceparent: hooks.traceparent })
      } catch (err) {
        throw broken ?? fromWorker(err)
      } finally {
        detach()
      }
    }, hooks.mayRetry, hooks.cheapest)
  }

  embed (req: WorkerEmbedRequest, signal: CancelSignal, traceparent?: string): Promise<DispatchOutcome<EmbedResult>> {
    return this.run(req.model, signal, (worker) => worker.peer.call(InferenceProtocol.embed, req, { timeout: this.idleTimeoutMs, traceparent }).catch((err) => { throw fromWorker(err) }), () => true)
  }

  /** Run `attempt` on one worker after another until one succeeds or a failure may not be retried. */
  private async run<T> (model: string, signal: CancelSignal, attempt: (w: WorkerConn) => Promise<T>, mayRetry: () => boolean, cheapest = false): Promise<DispatchOutcome<T>> {
    const tried = new Set<string>()
    // made only when no worker was tried: an error captures a stack, which costs on every request
    let err: unknown = null
    let last: WorkerConn | null = null
    for (let i = 0; i < this.maxAttempts; i++) {
      const worker = this.workers.pick(model, tried, cheapest)
      if (!worker) break
      tried.add(worker.publicKey)
      last = worker
      worker.inflight++
      let reported = false
      try {
        const value = await attempt(worker)
        worker.served++
        this.workers.report(worker, true)
        reported = true
        return { ok: true, value, worker: worker.publicKey, attempts: i + 1 }
      } catch (e) {
        err = e
        const code = (e as MeshError).code
        // the breaker counts the worker's faults, not the caller's (cancel, bad input, limits)
        if (!signal.aborted && isRetryable(code)) { this.workers.report(worker, false); reported = true }
        if (signal.aborted || !isRetryable(code) || !mayRetry()) break
        this.log.warn({ worker: worker.publicKey.slice(0, 16), code, attempt: i }, 'worker failed before answering; retrying elsewhere')
      } finally {
        worker.inflight--
        // a half-open trial that ended without a verdict (cancelled, caller's error) frees the slot
        if (!reported) worker.trial = false
      }
    }
    return { ok: false, err: err ?? MeshError.NO_WORKER(`no worker could serve '${model}'`), worker: last?.publicKey ?? null, attempts: tried.size }
  }
}
