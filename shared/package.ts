import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

// The package on disk: where its root is, whether this code runs compiled (the JS that `npm run build`
// writes to dist/, which `npm install` builds) or as TypeScript source through tsx (the tests, the
// dev scripts), and how to start one of its entry points as a child process in the same form.

const HERE = fileURLToPath(import.meta.url)

/** True when this module runs as JS: compiled to dist/shared/package.js, or inside a bundle. */
export const COMPILED = HERE.endsWith('.js')

/** The repository root: the nearest directory up with package.json (dist/ has none of its own). */
export const PACKAGE_ROOT = findRoot(path.dirname(HERE))

export const DIST_DIR = path.join(PACKAGE_ROOT, 'dist')

/** The programs as they run: bundled from dist/ by scripts/bundle.ts (the build's second step). */
export const BUNDLE_DIR = path.join(DIST_DIR, 'bundle')

/**
 * Source code spawns compiled children only when told: the test runner builds dist/ first and then sets
 * this, so the tests run what ships without ever running a stale build.
 */
export const SPAWN_COMPILED_ENV = 'HYPERINFER_SPAWN_COMPILED'

/**
 * The node arguments that run a program given by its path from the root without extension
 * ('services/gateway/index'): its bundle when this process is compiled (or SPAWN_COMPILED_ENV is
 * '1'), else its TypeScript source through tsx.
 */
export function entryArgs (entry: string, env: NodeJS.ProcessEnv = process.env): string[] {
  if (COMPILED || env[SPAWN_COMPILED_ENV] === '1') return [path.join(BUNDLE_DIR, entry + '.js')]
  return ['--import', 'tsx', path.join(PACKAGE_ROOT, entry + '.ts')]
}

function findRoot (from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir
    if (path.dirname(dir) === dir) throw new Error(`no package.json above ${from}`)
  }
}
