// At most `max` tasks run at once and at most `maxQueued` wait for a slot; a task beyond that, or one
// that has waited `maxWaitMs` without a slot, is refused (with the error `refuse` makes) instead of
// waiting until its caller has long given up.

export class Semaphore {
  private active = 0
  private readonly waiting: Array<() => void> = []
  private readonly max: number
  private readonly maxQueued: number
  private readonly maxWaitMs: number
  private readonly refuse: () => Error

  constructor (max: number, maxQueued: number, refuse: () => Error, maxWaitMs = Infinity) {
    this.max = Math.max(1, max)
    this.maxQueued = Math.max(0, maxQueued)
    this.refuse = refuse
    this.maxWaitMs = maxWaitMs
  }

  get running (): number { return this.active }
  get queued (): number { return this.waiting.length }

  async run<T> (task: () => Promise<T>): Promise<T> {
    if (this.active >= this.max) {
      if (this.waiting.length >= this.maxQueued) throw this.refuse()
      await new Promise<void>((resolve, reject) => {
        const timer = Number.isFinite(this.maxWaitMs)
          ? setTimeout(() => {
            const i = this.waiting.indexOf(wake)
            if (i >= 0) this.waiting.splice(i, 1)
            reject(this.refuse())
          }, this.maxWaitMs)
          : null
        const wake = () => { if (timer) clearTimeout(timer); resolve() }
        this.waiting.push(wake)
      })
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
