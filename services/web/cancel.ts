import type { CancelSignal } from '../../shared/mesh/peer.ts'

// Cancelling one relayed call when its HTTP client hangs up. An AbortController costs each request
// an EventTarget (about ten microseconds here); the mesh client needs only these three members.

export class Cancellation implements CancelSignal {
  private cancelled = false
  private listeners: Array<() => void> = []

  get aborted (): boolean { return this.cancelled }

  addEventListener (_type: 'abort', listener: () => void): void { this.listeners.push(listener) }

  removeEventListener (_type: 'abort', listener: () => void): void {
    const i = this.listeners.indexOf(listener)
    if (i !== -1) this.listeners.splice(i, 1)
  }

  abort (): void {
    if (this.cancelled) return
    this.cancelled = true
    const listeners = this.listeners
    this.listeners = []
    for (const listener of listeners) listener()
  }
}
