import type { ModelListing } from '../protocol/gateway.ts'
import type { ModelEntry } from './schema.ts'

// How a model is listed to users (`models`, `registry`, the dashboard's catalog): what workers serve
// now, described by the registry. Every listing of models goes through here, whoever holds the
// registry (the writer, a replica gateway, the web's replica).

type RegistryFields = Pick<ModelListing, 'tasks' | 'price' | 'quality' | 'safety' | 'latency'>

/** What the registry says about a model, in the listing's terms. */
export function registryFields (e: ModelEntry): RegistryFields {
  return {
    tasks: e.tasks,
    price: { input: e.pricePer1MInput, output: e.pricePer1MOutput },
    quality: e.quality,
    safety: e.safety,
    latency: e.measured ? { p50Ms: e.measured.p50LatencyMs, ttftMs: e.measured.ttftMs, errorRate: e.measured.errorRate, samples: e.measured.samples } : null
  }
}

/** The models served now (`live`), each with the registry's fields when the registry knows it. */
export function liveListing (live: ModelListing[], model: (id: string) => ModelEntry | null | undefined): ModelListing[] {
  return live.map((m) => {
    const e = model(m.id)
    return e ? { ...m, ...registryFields(e) } : m
  })
}

/**
 * Every model the registry knows, by id, with the backend and worker count of those served now
 * (`live`); a model no worker serves shows its provider and 0 workers.
 */
export function registryListing (entries: ModelEntry[], live: ModelListing[] = []): ModelListing[] {
  const served = new Map(live.map((m) => [m.id, m]))
  return entries.map((e) => ({
    id: e.id, backend: served.get(e.id)?.backend ?? e.provider, contextLength: e.contextLength, workers: served.get(e.id)?.workers ?? 0, ...registryFields(e)
  })).sort((a, b) => a.id.localeCompare(b.id))
}
