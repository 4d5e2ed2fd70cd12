import { esc } from './dashboard/escape.ts'
import { htmlDocument } from './dashboard/layout.ts'

// The landing page: self-contained (its own inline CSS, no scripts, no external assets), in the
// same page head as the dashboard.

const CSS = `  :root { color-scheme: light dark; --fg: #1d1f24; --muted: #5c6370; --bg: #fafafa; --card: #fff; --line: #e3e5e8; --accent: #3b5bdb; }
  @media (prefers-color-scheme: dark) { :root { --fg: #e6e6e6; --muted: #9aa0aa; --bg: #15171b; --card: #1d2026; --line: #2c3038; --accent: #8da2fb; } }
  * { box-sizing: border-box; }
  body { margin: 0; font: 16px/1.6 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
  main { max-width: 46rem; margin: 0 auto; padding: 3rem 1.25rem 4rem; }
  h1 { font-size: 2.2rem; margin: 0 0 .25rem; letter-spacing: -.02em; }
  h1 span { color: var(--accent); }
  h2 { font-size: 1.1rem; margin: 2.25rem 0 .5rem; }
  p { margin: .5rem 0; }
  .lead { color: var(--muted); font-size: 1.1rem; }
  .card { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 1rem 1.25rem; }
  code, pre { font: 14px/1.5 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
  pre { margin: 0; white-space: pre-wrap; overflow-wrap: anywhere; }
  .key { display: block; overflow-wrap: anywhere; color: var(--accent); }
  .muted { color: var(--muted); font-size: .9rem; }
  ul { padding-left: 1.2rem; }
  .cta { display: flex; gap: .75rem; flex-wrap: wrap; margin: 1.5rem 0 0; }
  .btn { display: inline-block; padding: .55rem 1.1rem; border-radius: 8px; font-weight: 600; text-decoration: none; border: 1px solid var(--accent); }
  .btn-main { background: var(--accent); color: var(--bg); }
  .btn-alt { color: var(--accent); }
`

export function landingPage (gatewayKey: string): string {
  const key = esc(gatewayKey)
  return htmlDocument({ inlineCss: CSS }, `<main>
  <h1>hyper<span>infer</span></h1>
  <p class="lead">A peer-to-peer AI-inference mesh. Workers with GPUs join over encrypted Hyperswarm RPC, a gateway routes prompts to them, and you reach it from anywhere by its public key &mdash; no open ports, no central server.</p>
  <p class="cta"><a class="btn btn-main" href="/register">Create an account</a><a class="btn btn-alt" href="/login">Log in to the dashboard</a></p>

  <h2>Gateway public key</h2>
  <div class="card"><code class="key">${key}</code></div>
  <p class="muted">Connections are end-to-end encrypted and authenticated by this key: the only address you need.</p>

  <h2>Use it from the command line</h2>
  <div class="card"><pre>export HYPERINFER_GATEWAY=${key}

npx hyperinfer register --username alice --email alice@example.com --password-stdin
npx hyperinfer login --email alice@example.com --password-stdin
npx hyperinfer keys create --name my-laptop
npx hyperinfer models
npx hyperinfer infer "Why is the sky blue?"</pre></div>

  <h2>Or over HTTP</h2>
  <div class="card"><pre>POST /api/auth/register   {"username","email","password"}
POST /api/auth/login      {"email","password"}        &rarr; token
POST /api/auth/api-keys   Authorization: Bearer &lt;token&gt;  {"name"}
POST /api/inference       X-API-Key: &lt;key&gt;  {"prompt","model?","maxTokens?"}
GET  /api/models</pre></div>
  <p class="muted">Errors come back as <code>{"error": {"message", "type", "code"}}</code>. API keys are shown once, when created.</p>
</main>`)
}
