import { z } from 'zod'
import { method } from '../mesh/method.ts'

// Building blocks shared by several protocols, and the methods every mesh service answers.

export const username = z.string().trim().min(3).max(50).regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, _ . - only')
export const email = z.string().trim().max(254).email()
export const password = z.string().min(8, 'at least 8 characters').max(256)
export const sessionToken = z.string().min(10).max(4096)
export const apiKey = z.string().min(10).max(200)
export const modelName = z.string().min(1).max(200).regex(/^[^\s\x00-\x1f\x7f]+$/, 'no whitespace or control characters')
export const uuid = z.string().uuid()
/** A name or note a person types (key names, labels, notes) holds no control characters. */
export const plainText = (s: z.ZodString) => s.regex(/^[^\p{Cc}]*$/u, 'no control characters (such as NUL, tab or newline)')
export const tier = z.enum(['default', 'premium'])

export interface ServiceInfo {
  service: string
  publicKey: string
  version: string
  uptimeSeconds: number
  pid: number
}

export const CommonProtocol = {
  serviceInfo: method<Record<string, never>, ServiceInfo>('serviceInfo', 'internal', z.object({}).strict()),
  metricsText: method<Record<string, never>, { contentType: string, text: string }>('metricsText', 'internal', z.object({}).strict())
}
