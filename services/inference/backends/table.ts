import { z } from 'zod'
import { bool, loadConfig } from '../../../shared/config.ts'
import { givenParams, type GenerationParam, type GenerationRequest } from '../../../shared/protocol/chat.ts'
import type { Backend } from './types.ts'
import type { OllamaOptions } from './ollama.ts'
import type { OpenAIOptions } from './openai.ts'
import type { SyntheticOptions } from './synthetic.ts'

// Every backend a worker can run, one row each. The worker's env parsing (createBackends), the
// `hyperinfer worker` flags, checks and help, and the "a local backend is free" rule of the gateway's
// router and of the dashboard all read this table; nothing else lists backends.
//
// Adding a backend:
//   1. backends/<id>.ts: a class implementing Backend (./types.ts), built from one options object;
//   2. a row below: the env settings it reads (zod) and how they turn it on, a lazy `load` of its
//      file, its `hyperinfer worker` flags, whether it runs on the operator's own machine (`local`:
//      free per token), and what it can do (`capabilities`);
//   3. its subject in test/backends.test.ts (`contract(name, make)`, against a small server that
//      speaks its real wire protocol): that suite fails while a row has no subject.
//
// Rows are in precedence order: when two backends list the same model id, the earlier row serves it.
// A row imports its backend's file only when a worker builds it, so reading the table (the gateway,
// the web) loads no client library.

/**
 * What a backend does with a request. `honours`: the parameters it acts on; any other a request gives
 * is ignored, and the caller is told so (InferResult.ignored, the web's x-hyperinfer-ignored-params
 * header). `stop`, `maxTokens`, `parallelToolCalls: false` and `n` are applied by the worker or the edge
 * for every backend. `toolChoice` honoured means every form; without it, 'auto' and 'none' still work
 * (tools are left out for 'none') and only 'required' or a named function is reported ignored.
 */
export interface Capabilities {
  chat: boolean
  embed: boolean
  tools: boolean
  /** takes images (the registry's `vision` tag decides which models get them) */
  vision: boolean
  /** response_format json_object and json_schema */
  json: boolean
  /** embeddings of token-id inputs */
  tokenInput: boolean
  honours: readonly GenerationParam[]
}

/** The request's parameters `backend` does not honour (none for a backend this table does not know). */
export function ignoredParams (backend: string, req: GenerationRequest): GenerationParam[] {
  const caps = BACKENDS.find((b) => b.id === backend)?.capabilities
  if (!caps) return []
  return givenParams(req).filter((p) => {
    if (caps.honours.includes(p)) return false
    if (p === 'toolChoice') return req.toolChoice !== 'none' // 'auto' is never given
    if (p === 'parallelToolCalls') return false // the worker keeps the first call when false; true is what backends do
    return true
  })
}

/** How one `hyperinfer worker` flag of a backend becomes a setting of the worker's env. */
export type WorkerFlag =
  /** an http(s) URL without credentials */
  | { kind: 'url', env: string, help: string, fallback?: (env: NodeJS.ProcessEnv) => string, /** when absent without fallback: what to pass */ required?: string }
  /** the NAME of an environment variable holding a secret (never taken from a flag, never printed) */
  | { kind: 'secret-env', env: string, help: string, /** the setting when the flag is absent */ fallback?: string }
  | { kind: 'number', env: string, help: string, min: number, note?: string }

export interface WorkerCli {
  /** said after the id in the `--backend` help */
  about?: string
  flags: Record<string, WorkerFlag>
  /** the settings that receive `--models a,b` */
  modelsEnv: string[]
  /** the models when --models is absent, and how its help says so */
  defaultModels?: { models: string[], help: string }
  /** settings that turn this backend on when it is chosen, and off when another one is */
  on?: Record<string, string>
  off?: Record<string, string>
}

export interface BackendRow {
  readonly id: string
  readonly local: boolean
  readonly capabilities: Capabilities
  /** the env variables it reads */
  readonly envNames: readonly string[]
  readonly worker: WorkerCli
  /** Its settings read from env (ConfigError when malformed): a builder when they turn it on, else null. */
  plan (env: NodeJS.ProcessEnv): (() => Promise<Backend>) | null
}

interface BackendSpec<S extends z.ZodRawShape, O> {
  id: string
  local: boolean
  capabilities: Capabilities
  env: S
  /** its options from its settings; null when they leave it off */
  configure (settings: z.output<z.ZodObject<S>>): O | null
  load (): Promise<(options: O) => Backend>
  worker: WorkerCli
}

function row<S extends z.ZodRawShape, O> (spec: BackendSpec<S, O>): BackendRow {
  const schema = z.object(spec.env)
  return {
    id: spec.id,
    local: spec.local,
    capabilities: spec.capabilities,
    envNames: Object.keys(spec.env),
    worker: spec.worker,
    plan (env) {
      const options = spec.configure(loadConfig(schema, env))
      return options === null ? null : async () => (await spec.load())(options)
    }
  }
}

/** `a,b, c` → ['a', 'b', 'c'] (unset: []) */
export const commaList = z.string().default('').transform((s) => s.split(',').map((x) => x.trim()).filter(Boolean))

const SYNTHETIC: Capabilities = {
  chat: true, embed: true, tools: true, vision: true, json: true, tokenInput: true,
  // deterministic: the same request gives the same answer, which is what a seed asks; its log
  // probabilities are 0 (each token is certain). Temperature, nucleus sampling and penalties have
  // nothing to act on.
  honours: ['seed', 'logprobs', 'topLogprobs', 'toolChoice', 'responseFormat']
}
const OLLAMA: Capabilities = {
  chat: true, embed: true, tools: true, vision: true, json: true, tokenInput: false,
  // Ollama has no tool_choice, logit_bias, end-user id or participant names
  honours: ['temperature', 'topP', 'seed', 'presencePenalty', 'frequencyPenalty', 'logprobs', 'topLogprobs', 'responseFormat']
}
const OPENAI: Capabilities = {
  chat: true, embed: true, tools: true, vision: true, json: true, tokenInput: true,
  honours: ['temperature', 'topP', 'seed', 'presencePenalty', 'frequencyPenalty', 'logitBias', 'logprobs', 'topLogprobs', 'user', 'toolChoice', 'parallelToolCalls', 'responseFormat', 'messageName']
}

export const BACKENDS: readonly BackendRow[] = [
  row({
    id: 'synthetic',
    local: true,
    capabilities: SYNTHETIC,
    env: { SYNTHETIC: bool.default(true), SYNTHETIC_MODELS: commaList, SYNTHETIC_TOKENS_PER_SEC: z.coerce.number().min(0).default(0) },
    configure: (s): SyntheticOptions | null => s.SYNTHETIC ? { models: s.SYNTHETIC_MODELS.length ? s.SYNTHETIC_MODELS : undefined, tokensPerSecond: s.SYNTHETIC_TOKENS_PER_SEC } : null,
    load: async () => { const { SyntheticBackend } = await import('./synthetic.ts'); return (o) => new SyntheticBackend(o) },
    worker: {
      flags: { 'tokens-per-sec': { kind: 'number', env: 'SYNTHETIC_TOKENS_PER_SEC', min: 0, note: '0 = no delay', help: 'generation speed (default 0 = no delay)' } },
      modelsEnv: ['SYNTHETIC_MODELS'],
      defaultModels: { models: ['synthetic'], help: "the names it serves, default 'synthetic'" },
      on: { SYNTHETIC: 'true' },
      off: { SYNTHETIC: 'false' }
    }
  }),
  row({
    id: 'ollama',
    local: true,
    capabilities: OLLAMA,
    env: { OLLAMA_URL: z.string().url().optional() },
    configure: (s): OllamaOptions | null => s.OLLAMA_URL ? { url: s.OLLAMA_URL } : null,
    load: async () => { const { OllamaBackend } = await import('./ollama.ts'); return (o) => new OllamaBackend(o) },
    worker: {
      flags: { 'base-url': { kind: 'url', env: 'OLLAMA_URL', help: 'default $OLLAMA_URL or http://127.0.0.1:11434', fallback: (env) => env.OLLAMA_URL || 'http://127.0.0.1:11434' } },
      modelsEnv: ['WORKER_MODELS']
    }
  }),
  row({
    id: 'openai',
    local: false,
    capabilities: OPENAI,
    env: { OPENAI_BASE_URL: z.string().url().optional(), OPENAI_API_KEY: z.string().optional(), OPENAI_MODELS: commaList },
    configure: (s): OpenAIOptions | null => s.OPENAI_API_KEY || s.OPENAI_BASE_URL
      ? { baseURL: s.OPENAI_BASE_URL ?? 'https://api.openai.com/v1', apiKey: s.OPENAI_API_KEY ?? 'none', models: s.OPENAI_MODELS.length ? s.OPENAI_MODELS : undefined }
      : null,
    load: async () => { const { OpenAIBackend } = await import('./openai.ts'); return (o) => new OpenAIBackend(o) },
    worker: {
      about: 'any OpenAI-compatible server',
      flags: {
        'base-url': { kind: 'url', env: 'OPENAI_BASE_URL', help: "required (https://api.openai.com/v1, or your server's /v1 URL)", required: "https://api.openai.com/v1 for OpenAI itself, or your server's /v1 URL" },
        // without a key: servers that need none (vLLM, llama.cpp, LM Studio, …)
        'api-key-env': { kind: 'secret-env', env: 'OPENAI_API_KEY', fallback: 'none', help: "read the backend's API key from the environment variable VAR (the key is never taken from a flag, printed or logged)" }
      },
      // advertised when the server has no /models, and the only models served when it has
      modelsEnv: ['OPENAI_MODELS', 'WORKER_MODELS']
    }
  })
]

/** Ids of the backends that run on the operator's own machine: they cost nothing per token. */
export const localBackendIds: ReadonlySet<string> = new Set(BACKENDS.filter((b) => b.local).map((b) => b.id))

export function isLocalBackend (id: string): boolean {
  return localBackendIds.has(id)
}
