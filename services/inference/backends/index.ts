import type { Backend } from './types.ts'
import { SyntheticBackend, type SyntheticOptions } from './synthetic.ts'
import { OllamaBackend } from './ollama.ts'
import { OpenAIBackend, type OpenAIOptions } from './openai.ts'

export interface BackendConfig {
  synthetic?: SyntheticOptions | false
  ollamaUrl?: string
  openai?: OpenAIOptions
}

/** The backends a worker runs, from its configuration. */
export function createBackends (cfg: BackendConfig): Backend[] {
  const out: Backend[] = []
  if (cfg.synthetic !== false) out.push(new SyntheticBackend(cfg.synthetic ?? {}))
  if (cfg.ollamaUrl) out.push(new OllamaBackend({ url: cfg.ollamaUrl }))
  if (cfg.openai) out.push(new OpenAIBackend(cfg.openai))
  return out
}
