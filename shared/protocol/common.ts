import { z } from 'zod'
import { method } from '../mesh/method.ts'
import { modelName, plainText } from '../registry/schema.ts'

// Building blocks shared by several protocols, and the methods every mesh service answers.

export const username = z.string().trim().min(3).max(50).regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, _ . - only')
export const email = z.string().trim().max(254).email()
export const password = z.string().min(8, 'at least 8 characters').max(256)
export const sessionToken = z.string().min(10).max(4096)
/** any string: a key of the wrong shape is refused as INVALID_API_KEY by the gateway, never as a malformed request */
export const apiKey = z.string().min(1).max(4096)
/** the registry's model-name schema: a name a request, a worker or a key scope gives is one the registry takes */
export { modelName, plainText }
export const uuid = z.string().uuid()
export const tier = z.enum(['default', 'premium'])

export interface ServiceInfo {
  service: string
  publicKey: string
  version: string
  uptimeSeconds: number
  pid: number
}

export const CommonProtocol = {
  serviceInfo: method<Record<string, never>, ServiceInfo>('serviceInfo', { from: ['metrics', 'operator'] }, z.object({}).strict()),
  metricsText: method<Record<string, never>, { contentType: string, text: string }>('metricsText', { from: ['metrics'] }, z.object({}).strict())
}
