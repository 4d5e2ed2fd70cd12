import fs from 'node:fs'
import path from 'node:path'

// mesh.json in the state dir: how a local `npm start` can be reached. The CLI, web and tests read it
// so they need no flags. It holds public keys and addresses only, never a secret.

export interface MeshFile {
  version: 1
  bootstrap: string[]
  services: { auth: string, gateway: string, metrics: string, web: string, inference: string[] }
  web: string | null
  metrics: string | null
  startedAt: string
  pid: number
}

export function meshFilePath (home: string): string {
  return path.join(home, 'mesh.json')
}

export function readMeshFile (home: string): MeshFile | null {
  try {
    return JSON.parse(fs.readFileSync(meshFilePath(home), 'utf8')) as MeshFile
  } catch { // no mesh file in this home (or not JSON): there is no local mesh to read from
    return null
  }
}

export function writeMeshFile (home: string, mesh: MeshFile): void {
  fs.mkdirSync(home, { recursive: true })
  const tmp = meshFilePath(home) + '.tmp'
  fs.writeFileSync(tmp, JSON.stringify(mesh, null, 2) + '\n')
  fs.renameSync(tmp, meshFilePath(home))
}
