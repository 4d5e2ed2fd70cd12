// At most `max` tasks run at once and at most `maxQueued` wait for a slot; a task beyond that is
// refused at once (with the error `refuse` makes) instead of joining an ever longer queue.

export class Semaphore {
  private active = 0
  private readonly waiting: Array<() => void> = []
  private readonly max: number
  private readonly maxQueued: number
  private readonly refuse: () => Error

  constructor (max: number, maxQueued: number, refuse: () => Error) {
    this.max = Math.max(1, max)
    this.maxQueued = Math.max(0, maxQueued)
    this.refuse = refuse
  }

  get running (): number { return this.active }
  get queued (): number { return this.waiting.length }

  async run<T> (task: () => Promise<T>): Promise<T> {
    if (this.active >= this.max) {
      if (this.waiting.length >= this.maxQueued) throw this.refuse()
      await new Promise<void>((resolve) => this.waiting.push(resolve))
    } else {
      this.active++
    }
    try {
      return await task()
    } finally {
      // hand the slot straight to the next waiter, so `active` never dips and lets a newcomer jump the queue
      const next = this.waiting.shift()
      if (next) next()
      else this.active--
    }
  }
}
