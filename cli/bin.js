#!/usr/bin/env node
// The `hyperinfer` command: runs the compiled, bundled CLI that `npm run build` writes to dist/bundle/
// (`npm install` and `npm ci` build it; `npm start` and `npm test` rebuild what changed).
import fs from 'node:fs'
import module from 'node:module'

const entry = new URL('../dist/bundle/cli/index.js', import.meta.url)
if (!fs.existsSync(entry)) {
  const root = decodeURIComponent(new URL('..', import.meta.url).pathname)
  process.stderr.write(`hyperinfer: not built yet: run \`npm run build\` in ${root}\n`)
  process.exit(1)
}
// Node 22.1 and later keep compiled bytecode between runs; Node 20 has no such cache
module.enableCompileCache?.()
await import(entry.href)
