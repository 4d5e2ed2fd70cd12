// The second step of `npm run build`: the compiled CLI (dist/cli/index.js, which tsc wrote) bundled
// with what it imports into dist/cli-bundle/, one file per command group (each loads on demand), so a
// command reads a few files instead of resolving hundreds of modules: `hyperinfer infer` spends most
// of its start-up there. Packages with native code stay outside the bundle and load from
// node_modules as usual. Skipped when nothing was compiled since the last bundle.
import fs from 'node:fs'
import path from 'node:path'
import { DIST_DIR, PACKAGE_ROOT } from '../shared/package.ts'

const CLI_BUNDLE_DIR = path.join(DIST_DIR, 'cli-bundle')
const ENTRY = path.join(DIST_DIR, 'cli', 'index.js')
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

const out = path.join(CLI_BUNDLE_DIR, 'index.js')
if (process.argv.includes('--force') || mtime(out) < mtime(BUILD_INFO) || mtime(out) < mtime(ENTRY)) {
  // loaded only when there is work: an up-to-date check stays as quick as node's start
  const esbuild = await import('esbuild')
  fs.rmSync(CLI_BUNDLE_DIR, { recursive: true, force: true })
  await esbuild.build({
    entryPoints: [ENTRY],
    outdir: CLI_BUNDLE_DIR,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    external: nativePackages(),
    // the bundled CommonJS packages, and the native ones left outside, load through require
    banner: { js: "import { createRequire as __hyperinferRequire } from 'node:module'; const require = __hyperinferRequire(import.meta.url);" },
    logLevel: 'warning'
  })
}
