import { MeshError } from '../errors.ts'

// Cancelling a call. Node's AbortController costs each instance an EventTarget (several microseconds
// to make, more per listener added and removed), and one request meets several on its way: the
// call served, the pipeline's stop, each attempt at a worker, the worker's own. The request path uses
// a Cancellation instead, which costs a plain object; an API that takes nothing but an AbortSignal
// (fetch) gets one from abortSignalOf(), made once, on demand.

/** What a call can be cancelled with: an AbortSignal, a Cancellation, or anything with these members. */
export interface CancelSignal {
  readonly aborted: boolean
  /** why it was cancelled (a CANCELLED MeshError unless the canceller gave a reason) */
  readonly reason?: unknown
  addEventListener (type: 'abort', listener: () => void, options?: { once?: boolean }): void
  removeEventListener (type: 'abort', listener: () => void): void
}

export class Cancellation implements CancelSignal {
  private cancelled = false
  private why: unknown = undefined
  private listeners: Array<() => void> | null = null
  private controller: AbortController | null = null

  get aborted (): boolean { return this.cancelled }
  get reason (): unknown { return this.why }

  /** Listeners run once, in the order added; one added after the cancel never runs (as on an AbortSignal). */
  addEventListener (_type: 'abort', listener: () => void): void {
    if (this.cancelled) return
    if (this.listeners === null) this.listeners = [listener]
    else this.listeners.push(listener)
  }

  removeEventListener (_type: 'abort', listener: () => void): void {
    const i = this.listeners?.indexOf(listener) ?? -1
    if (i !== -1) this.listeners!.splice(i, 1)
  }

  abort (reason?: unknown): void {
    if (this.cancelled) return
    this.cancelled = true
    this.why = reason ?? MeshError.CANCELLED()
    const listeners = this.listeners
    this.listeners = null
    if (listeners) for (const listener of listeners) listener()
    this.controller?.abort(this.why)
  }

  /** This cancellation as an AbortSignal, for APIs that take nothing else. */
  get signal (): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController()
      if (this.cancelled) this.controller.abort(this.why)
    }
    return this.controller.signal
  }

  /** A cancellation that is cancelled (with the same reason) when `parent` is; call `detach` when done with it. */
  static follow (parent: CancelSignal): { cancel: Cancellation, detach: () => void } {
    const cancel = new Cancellation()
    if (parent.aborted) { cancel.abort(parent.reason); return { cancel, detach: () => {} } }
    const onAbort = () => cancel.abort(parent.reason)
    parent.addEventListener('abort', onAbort, { once: true })
    return { cancel, detach: () => parent.removeEventListener('abort', onAbort) }
  }
}

/** `s` as an AbortSignal: itself when it is one, else one that follows it. */
export function abortSignalOf (s: CancelSignal): AbortSignal {
  if (s instanceof AbortSignal) return s
  if (s instanceof Cancellation) return s.signal
  const ac = new AbortController()
  if (s.aborted) ac.abort(s.reason)
  else s.addEventListener('abort', () => ac.abort(s.reason), { once: true })
  return ac.signal
}
