// Group commit: what is added while a batch is being written goes together in the next batch, so a
// burst costs one round trip per batch rather than one per item, and an item that comes alone waits
// for nothing but its own write (at the end of the event-loop turn it came in). One batch is in
// flight at a time, of at most `maxBatch` items, in the order they came.

interface Waiting<In, Out> { item: In, resolve: (v: Out) => void, reject: (e: unknown) => void }

export class GroupCommit<In, Out> {
  private queue: Array<Waiting<In, Out>> = []
  private busy = false
  private scheduled = false

  /**
   * `write` gets a batch's items and returns one result per item, in the same order; if it throws,
   * every item of that batch fails with its error.
   */
  constructor (private readonly write: (items: In[]) => Promise<Out[]>, private readonly maxBatch = 500) {}

  add (item: In): Promise<Out> {
    return new Promise<Out>((resolve, reject) => {
      this.queue.push({ item, resolve, reject })
      this.schedule()
    })
  }

  /** items waiting for a batch, and in the one being written */
  get pending (): number { return this.queue.length }

  private schedule (): void {
    if (this.busy || this.scheduled) return
    this.scheduled = true
    setImmediate(() => { this.scheduled = false; void this.run() })
  }

  private async run (): Promise<void> {
    if (this.busy || this.queue.length === 0) return
    this.busy = true
    const batch = this.queue.splice(0, this.maxBatch)
    try {
      const out = await this.write(batch.map((w) => w.item))
      for (let i = 0; i < batch.length; i++) batch[i]!.resolve(out[i]!)
    } catch (err) {
      for (const w of batch) w.reject(err)
    } finally {
      this.busy = false
      if (this.queue.length > 0) this.schedule()
    }
  }
}
