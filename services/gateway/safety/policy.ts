import { REDACTABLE, type Category } from './detectors.ts'

// What a key's safety policy does with what the detectors find. The policy that applies is the
// key's own, else its account's, else the operator's default (SAFETY_DEFAULT_POLICY):
//   off     nothing is inspected
//   flag    prompts and answers are inspected and every finding recorded; nothing changes
//   redact  personal data and secrets in the prompt are replaced by placeholders before the prompt
//           leaves the gateway (other findings are flagged); an unsafe answer is cut
//   block   a prompt with any finding is refused (SAFETY_BLOCKED, billed nothing); an unsafe answer is cut

export const POLICIES = ['off', 'flag', 'redact', 'block'] as const
export type SafetyPolicy = typeof POLICIES[number]

/** What was done about one finding, as recorded and counted. */
export type SafetyAction = 'flag' | 'redact' | 'block' | 'filter' | 'suspend' | 'slow'

export function isPolicy (v: unknown): v is SafetyPolicy {
  return typeof v === 'string' && (POLICIES as readonly string[]).includes(v)
}

/** The policy in force: the key's, else the account's, else the operator's. */
export function effectivePolicy (key: SafetyPolicy | null | undefined, account: SafetyPolicy | null | undefined, operator: SafetyPolicy): SafetyPolicy {
  return key ?? account ?? operator
}

/** What `policy` does with a finding of `category` in a prompt. */
export function inputAction (policy: SafetyPolicy, category: Category): Exclude<SafetyAction, 'filter' | 'suspend' | 'slow'> | null {
  if (policy === 'off') return null
  if (policy === 'block') return 'block'
  if (policy === 'redact' && REDACTABLE.has(category)) return 'redact'
  return 'flag'
}

/** Whether an unsafe answer is cut (finish reason content_filter) rather than only recorded. */
export function cutsOutput (policy: SafetyPolicy): boolean {
  return policy === 'block' || policy === 'redact'
}
