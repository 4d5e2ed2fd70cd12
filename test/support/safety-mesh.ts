import fs from 'node:fs'
import path from 'node:path'
import { startTestMesh, runCli, type TestMesh } from './harness.ts'
import { startFakeOpenAI } from '../fakes/fake-openai.ts'
import { ECHO_MODEL } from '../fakes/fake-llm.ts'
import { GatewayProtocol } from '../../shared/protocol/gateway.ts'
import type { MeshClient } from '../../shared/mesh/client.ts'

// The mesh the safety tests run on: the gateway restores redacted items and suspends anomalous
// keys; the worker serves the synthetic model, a synthetic moderation model and an echo model
// behind a fake OpenAI server (the echo model repeats the prompt, so a test controls the answer).

type T = Parameters<typeof startTestMesh>[0]

export async function safetyMesh (t: T) {
  const echo = await startFakeOpenAI({ apiKey: 'sk-echo', models: [ECHO_MODEL] })
  t.teardown(() => echo.close(), { order: 2 })
  const m = await startTestMesh(t, {
    serviceEnv: {
      auth: { ADMIN_USERS: 'boss' },
      gateway: { SAFETY_RESTORE_REDACTED: 'on', SAFETY_ANOMALY_ACTION: 'suspend', SAFETY_DEFAULT_POLICY: 'flag' },
      inference: { SYNTHETIC_MODELS: 'synthetic,synthetic-guard', OPENAI_BASE_URL: echo.url + '/v1', OPENAI_API_KEY: 'sk-echo' }
    }
  })
  return m
}

/** A CLI user in their own state dir (logged in), and an RPC session for the same account. */
export async function cliUser (t: T, m: TestMesh, client: MeshClient, name: string, password = name + ' password 123') {
  const home = m.home + '-' + name
  fs.mkdirSync(home, { recursive: true })
  fs.copyFileSync(path.join(m.home, 'mesh.json'), path.join(home, 'mesh.json'))
  t.teardown(() => fs.rmSync(home, { recursive: true, force: true }))
  if (name !== 'boss') await client.call(GatewayProtocol.register, { username: name, email: `${name}@example.com`, password })
  const { token } = await client.call(GatewayProtocol.login, { email: `${name}@example.com`, password })
  const login = await runCli(home, ['login', '--email', `${name}@example.com`, '--password', password])
  if (login.code !== 0) throw new Error('login failed: ' + login.stderr)
  return { home, token }
}

export const refusal = (p: Promise<unknown>) => p.then(() => null, (e) => e as { code: string, message: string, details?: any })

