// The built-in detectors: fast, deterministic rules run on every prompt (and on windows of every
// answer) whose key's policy is not off. Each finding names its detector, its category and where it
// is in the text, never the text itself. Matches are checked beyond the pattern where a checksum
// exists (card numbers by Luhn, IBANs by ISO 7064 mod 97), which is what keeps order numbers, dates
// and hashes from being reported. The measured precision and recall of every category on the
// labelled fixture is in the README ("Safety"); scripts/safety-eval.ts measures them again.

export const DETECTORS = ['pii', 'secret', 'injection', 'content', 'model'] as const
export type Detector = typeof DETECTORS[number]

export const CATEGORIES = [
  'email', 'phone', 'card', 'iban', 'national_id', // pii
  'api_key', 'private_key', // secret
  'prompt_injection', 'jailbreak', // injection
  'violence', 'self_harm', 'illicit', 'hate', 'sexual', 'harassment' // content
] as const
export type Category = typeof CATEGORIES[number]

export interface Finding {
  detector: Detector
  category: Category
  /** where the match is, in UTF-16 units */
  start: number
  end: number
}

/** Items a placeholder can stand in for (the rest are flagged or blocked, never rewritten). */
export const REDACTABLE: ReadonlySet<Category> = new Set(['email', 'phone', 'card', 'iban', 'national_id', 'api_key', 'private_key'])

interface Rule {
  detector: Detector
  category: Category
  re: RegExp
  /** a cheap test that must hold for the rule to run at all */
  needs?: (text: string) => boolean
  /** a check of the match beyond the pattern */
  valid?: (match: string) => boolean
}

const hasDigits = (min: number) => (t: string) => {
  let n = 0
  for (let i = 0; i < t.length; i++) { const c = t.charCodeAt(i); if (c >= 48 && c <= 57 && ++n >= min) return true }
  return false
}

/** Luhn's checksum over the digits of `s` (separators ignored). */
export function luhn (s: string): boolean {
  const digits = s.replace(/\D/g, '')
  if (digits.length < 13 || digits.length > 19 || /^(\d)\1+$/.test(digits)) return false
  let sum = 0
  for (let i = 0; i < digits.length; i++) {
    let d = digits.charCodeAt(digits.length - 1 - i) - 48
    if (i % 2 === 1) { d *= 2; if (d > 9) d -= 9 }
    sum += d
  }
  return sum % 10 === 0
}

/** ISO 13616 IBAN check: country, check digits and mod 97 of the rearranged number. */
export function ibanValid (s: string): boolean {
  const iban = s.replace(/\s/g, '').toUpperCase()
  if (iban.length < 15 || iban.length > 34) return false
  const moved = iban.slice(4) + iban.slice(0, 4)
  let rem = 0
  for (const ch of moved) {
    const v = ch >= 'A' && ch <= 'Z' ? String(ch.charCodeAt(0) - 55) : ch
    for (const d of v) rem = (rem * 10 + (d.charCodeAt(0) - 48)) % 97
  }
  return rem === 1
}

/** A phone number's digits: 9 to 15 (E.164), and not a date, a version or a run of one digit. */
function phoneValid (m: string): boolean {
  const digits = m.replace(/\D/g, '')
  if (digits.length < 9 || digits.length > 15 || /^(\d)\1+$/.test(digits)) return false
  if (/^\d{1,3}(?:\.\d{1,3}){3}$/.test(m.trim())) return false // an IPv4 address
  if (/^\d{4}[-./]\d{1,2}[-./]\d{1,2}$/.test(m.trim()) || /^\d{1,2}[-./]\d{1,2}[-./]\d{4}$/.test(m.trim())) return false
  // a bare run of digits is an id, an amount or an order number far more often than a phone
  return /^\+|^\(|[\s.-]/.test(m.trim())
}

const W = '(?:\\s+\\S+){0,3}\\s+' // up to three words between two parts of a phrase

const RULES: Rule[] = [
  // secrets first: a key that happens to contain digits must not be reported as a phone
  { detector: 'secret', category: 'private_key', re: /-----BEGIN (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----[\s\S]*?(?:-----END (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----|$)/g, needs: (t) => t.includes('PRIVATE KEY') },
  {
    detector: 'secret',
    category: 'api_key',
    re: /(?<![A-Za-z0-9_-])(?:sk-(?:proj-|ant-(?:api\d\d-)?)?[A-Za-z0-9_-]{20,}|(?:sk|rk|pk)_live_[A-Za-z0-9]{16,}|AKIA[0-9A-Z]{16}|ASIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,}|glpat-[A-Za-z0-9_-]{20,}|xox[abposr]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}|hf_[A-Za-z0-9]{30,}|hi_[A-Za-z0-9_-]{43}|npm_[A-Za-z0-9]{36}|SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}|eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,})(?![A-Za-z0-9_-])/g
  },
  {
    detector: 'secret',
    category: 'api_key',
    // a long opaque value assigned to a name that says it is secret
    re: /\b(?:api[_-]?key|secret(?:[_-]?key)?|access[_-]?token|auth[_-]?token|client[_-]?secret|password|passwd)\b["']?\s*[:=]\s*["']?(?=[A-Za-z0-9_\-+/]*\d)(?=[A-Za-z0-9_\-+/]*[A-Za-z])[A-Za-z0-9_\-+/]{16,}={0,2}/gi
  },
  { detector: 'pii', category: 'email', re: /(?<![A-Za-z0-9._%+-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![A-Za-z0-9-])/g, needs: (t) => t.includes('@') },
  { detector: 'pii', category: 'iban', re: /\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b/g, needs: hasDigits(10), valid: ibanValid },
  { detector: 'pii', category: 'card', re: /(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])/g, needs: hasDigits(13), valid: luhn },
  { detector: 'pii', category: 'national_id', re: /(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])/g, needs: hasDigits(9) }, // US SSN
  { detector: 'pii', category: 'national_id', re: /\b(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b/g, needs: hasDigits(6) }, // UK NINO
  { detector: 'pii', category: 'phone', re: /(?<![\w+/.-])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{1,4}(?:[\s.-]\d{2,8}){1,5}(?![\w/-]|\.\d)/g, needs: hasDigits(9), valid: phoneValid },

  { detector: 'injection', category: 'prompt_injection', re: new RegExp(`\\b(?:ignore|disregard|forget|override|skip)${W}?(?:all|any|the|your|my)?\\s*(?:previous|prior|above|earlier|preceding|original|system|initial|existing)\\s+(?:instructions?|prompts?|rules|directions|directives|guidelines|messages|context)`, 'gi') },
  { detector: 'injection', category: 'prompt_injection', re: /\b(?:reveal|print|show|repeat|output|leak|display|tell me|what (?:is|are))\s+(?:me\s+)?(?:your|the)\s+(?:full\s+|exact\s+|hidden\s+|secret\s+|original\s+)?(?:system prompt|system message|initial (?:prompt|instructions)|hidden instructions|instructions above|developer message)/gi },
  { detector: 'injection', category: 'prompt_injection', re: /(?:^|\n)\s*(?:#{2,}\s*)?(?:new|updated|real) (?:system )?instructions?\s*:|<\/?(?:system|im_start|im_end)>|\[\/?INST\]|\bfrom now on,? you (?:will|must|are)\b(?!\s+(?:help|be (?:polite|concise)))/gi },
  { detector: 'injection', category: 'jailbreak', re: /\b(?:do anything now|DAN mode|developer mode (?:enabled|on|activated)|jailbr(?:eak|oken)|you (?:have|has) no (?:\w+ )?(?:restrictions|filters|guidelines|limitations|rules)|(?:with|without) (?:any |no )?(?:ethical|moral|content|safety) (?:restrictions|filters|guidelines|limitations)|(?:unfiltered|uncensored|unrestricted) (?:ai|mode|assistant|model|version)|bypass (?:your |the |all )?(?:safety|content|ethical) (?:filters?|polic(?:y|ies)|guidelines|restrictions)|(?:evil|unaligned) (?:ai|assistant|twin|confidant)|stay in character no matter)\b/gi },

  { detector: 'content', category: 'violence', re: /\b(?:how (?:do i |to |can i )?(?:make|build|assemble|construct)\s+(?:a |an )?(?:pipe )?(?:bomb|explosive device|ied|molotov)|kill (?:him|her|them|everyone|you all|my (?:boss|wife|husband|neighbou?r))|(?:shoot|stab|murder) (?:up )?(?:the |a |my )?(?:school|people|crowd|everyone)|mass shooting plan)\b/gi },
  { detector: 'content', category: 'self_harm', re: /\b(?:kill myself|end my (?:own )?life|commit suicide|suicide method|ways to die painlessly|how (?:many|much) (?:pills|tablets)[^.?!]{0,40}(?:die|overdose|lethal)|cut(?:ting)? myself|want to die)\b/gi },
  { detector: 'content', category: 'illicit', re: /\b(?:(?:synthesi[sz]e|cook|make|produce|extract)\s+(?:some\s+)?(?:meth(?:amphetamine)?|heroin|fentanyl|cocaine|ricin|sarin|nerve agent)|launder(?:ing)? (?:the |my )?money|(?:buy|sell) (?:stolen )?credit card (?:numbers|dumps)|write (?:a |some )?(?:ransomware|keylogger|credential stealer))\b/gi },
  { detector: 'content', category: 'hate', re: /\b(?:(?:all|those) (?:jews|muslims|christians|blacks|whites|immigrants|gays) (?:are|should) (?:vermin|animals|subhuman|be (?:killed|exterminated|gassed|deported))|ethnic cleansing is (?:good|necessary))\b/gi },
  { detector: 'content', category: 'sexual', re: /\b(?:explicit sex(?:ual)? (?:story|scene) (?:with|involving) (?:a )?(?:minor|child|kid)|sexual content involving (?:minors|children))\b/gi },
  { detector: 'content', category: 'harassment', re: /\b(?:you(?:'re| are) (?:a )?(?:worthless|pathetic) (?:piece of (?:shit|garbage)|loser)|i (?:will|am going to) (?:find|hunt) you (?:down|and hurt you)|go kill yourself)\b/gi }
]

export interface ScanOptions {
  /** only these detectors (default: all built-in) */
  detectors?: ReadonlySet<Detector>
}

/**
 * Every finding in `text`, in order of position; where two overlap the earlier rule wins (secrets,
 * then the checksummed items, then phones), so one item is reported once.
 */
export function scan (text: string, opts: ScanOptions = {}): Finding[] {
  const found: Finding[] = []
  for (const rule of RULES) {
    if (opts.detectors && !opts.detectors.has(rule.detector)) continue
    if (rule.needs && !rule.needs(text)) continue
    // exec on the rule's own (global) expression: matchAll would copy the expression on every call
    const re = rule.re
    re.lastIndex = 0
    for (let m = re.exec(text); m !== null; m = re.exec(text)) {
      const start = m.index
      const end = start + m[0].length
      if (end === start) re.lastIndex++ // a match of nothing: step past it, as matchAll does
      if (rule.valid && !rule.valid(m[0])) continue
      if (found.some((f) => start < f.end && end > f.start)) continue
      found.push({ detector: rule.detector, category: rule.category, start, end })
    }
  }
  return found.sort((a, b) => a.start - b.start)
}

/** The categories present in `text`, each once. */
export function categoriesIn (text: string, opts?: ScanOptions): Set<Category> {
  return new Set(scan(text, opts).map((f) => f.category))
}
