// `npm start`: the whole mesh on this machine (see scripts/lib/localmesh.ts). Ctrl-C stops everything;
// the next start reuses the same keys, database and bootstrap port.
import fs from 'node:fs'
import path from 'node:path'
import { LocalMesh } from './lib/localmesh.ts'
import { stateDir } from '../shared/config.ts'
import { setupCodeFile } from '../services/auth/bootstrap.ts'
import { startServiceEnv } from './start-env.ts'

const home = stateDir()
const env: Record<string, string> = {}

const mesh = new LocalMesh({
  home,
  databaseUrl: process.env.DATABASE_URL || undefined,
  webPort: Number(process.env.WEB_SERVICE_PORT ?? 3000),
  metricsPort: Number(process.env.METRICS_SERVICE_PORT ?? 3004),
  env,
  publicHost: process.env.HYPERINFER_PUBLIC_HOST || undefined,
  serviceEnv: startServiceEnv(),
  onLog: (line) => console.log(`  ${line}`)
})

let stopping = false
async function stop (code = 0): Promise<never> {
  if (!stopping) {
    stopping = true
    console.log('\nstopping the mesh…')
    await mesh.stop()
    console.log('stopped.')
  }
  process.exit(code)
}
process.on('SIGINT', () => { void stop() })
process.on('SIGTERM', () => { void stop() })

console.log(`hyperinfer: starting a local mesh (state in ${path.relative(process.cwd(), home) || '.'})`)
try {
  const m = await mesh.start()
  for (const [name, child] of mesh.children) {
    child.proc.on('exit', (code, signal) => {
      if (stopping) return
      console.error(`hyperinfer: ${name} exited unexpectedly (${code ?? signal}); see ${path.join(home, 'logs', name + '.log')}`)
      void stop(1)
    })
  }
  const models = /models=(\S*)/.exec(mesh.children.get('inference')?.readyLine ?? '')?.[1] ?? ''
  // auth keeps the file only while no account is an admin; the code itself stays out of the terminal's scrollback
  const codeFile = path.relative(process.cwd(), setupCodeFile(home))
  const firstAdmin = fs.existsSync(setupCodeFile(home))
    ? `
No admin yet. Make your own account the admin with the one-time setup code in ${codeFile} (mode 0600):
  npx hyperinfer register --username you --email you@example.com --password '…' --setup-code "$(cat ${codeFile})"
`
    : ''
  console.log(`
hyperinfer mesh is up.

  gateway   ${m.services.gateway}
  web       ${m.web}
  metrics   ${m.metrics}
  auth      ${m.services.auth}
  worker    ${m.services.inference[0]}  models: ${models || '(none yet)'}
  bootstrap ${m.bootstrap[0]}
  network   ${mesh.registryKey}   (workers elsewhere: npx hyperinfer worker --network <this key> …)

  mesh file ${path.join(home, 'mesh.json')}   logs ${path.join(home, 'logs')}

Try it from another terminal:
  npx hyperinfer register --username alice --email alice@example.com --password 'correct horse battery'
  npx hyperinfer login --email alice@example.com --password 'correct horse battery'
  export HYPERINFER_API_KEY=$(npx hyperinfer keys create --name laptop --quiet)
  npx hyperinfer infer "Write a haiku about peer-to-peer networks"

Add a worker from another machine: npx hyperinfer worker-token   (see README)
${firstAdmin}Ctrl-C stops everything.`)
} catch (err) {
  console.error(`hyperinfer: start failed: ${(err as Error).message}`)
  await stop(1)
}
