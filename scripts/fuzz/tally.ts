// Counting what came back, by class, with a few examples of each failure so a report says where to look.

export type Outcome = 'success' | 'coded' | 'timeout' | 'dropped' | 'event' | 'failure'

/** The secrets of a run; any response or log line that contains one is a leak. */
export class SecretScan {
  private readonly needles: Array<{ name: string, value: Buffer }>
  readonly leaks: string[] = []

  constructor (secrets: Record<string, string>) {
    this.needles = Object.entries(secrets).filter(([, v]) => v.length >= 8).map(([name, v]) => ({ name, value: Buffer.from(v) }))
  }

  /** names of the secrets found in `data` */
  find (data: Buffer | string): string[] {
    const buf = typeof data === 'string' ? Buffer.from(data) : data
    return this.needles.filter((n) => buf.includes(n.value)).map((n) => n.name)
  }

  check (data: Buffer | string, where: string): void {
    for (const name of this.find(data)) {
      if (this.leaks.length < 50) this.leaks.push(`${name} in ${where}`)
    }
  }
}

export class Tally {
  readonly counts: Record<Outcome, number> = { success: 0, coded: 0, timeout: 0, dropped: 0, event: 0, failure: 0 }
  readonly failures: string[] = []
  readonly codes = new Map<string, number>()
  readonly timeouts = new Map<string, number>()

  constructor (readonly kind: string, private readonly secrets: SecretScan) {}

  get sent (): number { return Object.values(this.counts).reduce((a, b) => a + b, 0) }

  count (outcome: Outcome, label: string, detail = ''): void {
    this.counts[outcome]++
    if (outcome === 'coded' && detail) this.codes.set(detail, (this.codes.get(detail) ?? 0) + 1)
    if (outcome === 'timeout') this.timeouts.set(label, (this.timeouts.get(label) ?? 0) + 1)
    if (outcome === 'failure' && this.failures.length < 30) this.failures.push(`${label}: ${detail}`)
  }

  scan (data: Buffer | string, label: string): void {
    this.secrets.check(data, `${this.kind} response to ${label}`)
  }
}
