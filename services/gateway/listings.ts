import type { ModelListing, RegistryWorker } from '../../shared/protocol/gateway.ts'
import type { Catalog } from './catalog.ts'
import type { Pricing } from './limits.ts'
import type { ModelCandidate } from './router.ts'
import type { WorkerPool } from './workers.ts'

// What the gateway says about models and workers: the registry's record joined with what is live
// (connected workers, their load) and with this gateway's own time-to-first-token measurements.
// A model's price is a range when operators price it differently: what its cheapest and dearest
// workers charge now (USD per 1M tokens, like the registry's); the router's cost signal uses the
// cheapest, since the cost strategy sends the request to that worker.

export class Listings {
  private readonly catalog: Catalog
  private readonly workers: WorkerPool
  /** moving average of time to first token per model, as this gateway measured it */
  private readonly ttftAvg = new Map<string, number>()

  private readonly pricing: Pricing | null

  constructor (catalog: Catalog, workers: WorkerPool, pricing: Pricing | null = null) {
    this.catalog = catalog
    this.workers = workers
    this.pricing = pricing
  }

  /** USD per 1M tokens, lowest and highest, among the workers serving the model now */
  private priceRange (model: string): NonNullable<ModelListing['priceRange']> | null {
    if (!this.pricing) return null
    const r = this.pricing.range(model)
    const usd = (n: number) => n / 1000
    return { input: { min: usd(r.input.min), max: usd(r.input.max) }, output: { min: usd(r.output.min), max: usd(r.output.max) } }
  }

  /** A first token arrived `ms` after the request went to a worker. */
  firstToken (model: string, ms: number): void {
    const prev = this.ttftAvg.get(model)
    this.ttftAvg.set(model, prev === undefined ? ms : prev * 0.8 + ms * 0.2)
  }

  /** An attempt's outcome, for the model's measured latency and error rate in the registry. */
  measured (model: string, sample: { ttftMs: number, latencyMs: number, ok: boolean }): void {
    this.catalog.recordMeasurement(model, sample)
  }

  /** The models served now, with what the registry says of them. */
  served (): ModelListing[] {
    return this.catalog.listing(this.workers.listing()).map((m) => {
      const range = this.priceRange(m.id)
      return range ? { ...m, priceRange: range } : m
    })
  }

  /** Every model in the registry, with how many connected workers serve it now. */
  registryModels (): ModelListing[] {
    return this.catalog.registryListing(this.workers.listing())
  }

  /** Every worker in the registry (pending and revoked too), with its live state if connected. */
  registryWorkers (): RegistryWorker[] {
    return this.catalog.allWorkers().map((e) => {
      const w = this.workers.get(e.key)
      const live = w && !w.peer.isClosed
      return {
        ...e, connected: !!live, inflight: live ? w.inflight : 0, served: w?.served ?? 0, failures: w?.failures ?? 0,
        breaker: live ? (w.openUntil > Date.now() ? 'open' as const : w.openUntil !== 0 ? 'half-open' as const : 'closed' as const) : null
      }
    })
  }

  /** A model served now: the backend its workers run it on, and the registry's task tags (vision, embed, …). */
  describe (model: string): { backend: string, tasks: string[] } | null {
    const m = this.workers.served(model)
    if (!m) return null
    return { backend: m.backend, tasks: this.catalog.model(model)?.tasks ?? [] }
  }

  /** The models the router may choose among: served now, described by the registry and our own measurements. */
  candidates (): ModelCandidate[] {
    return this.workers.listing().map((m) => {
      const e = this.catalog.model(m.id)
      const range = this.priceRange(m.id)
      return {
        id: m.id, provider: e?.provider ?? m.backend, tasks: e?.tasks ?? (/embed/i.test(m.id) ? ['embed'] : ['chat']),
        priceIn: range?.input.min ?? e?.pricePer1MInput ?? 0, priceOut: range?.output.min ?? e?.pricePer1MOutput ?? 0, quality: e?.quality ?? 0.5, safety: e?.safety ?? 0.5,
        ttftMs: this.ttftAvg.get(m.id) ?? e?.measured?.ttftMs ?? null, inflight: this.workers.inflightFor(m.id), workers: m.workers
      }
    })
  }
}
