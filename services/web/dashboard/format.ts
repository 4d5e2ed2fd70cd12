// Numbers, money, dates and durations as the pages show them: a missing or non-finite value is a dash.

export const DASH = '—'

export function fmtInt (n: unknown): string {
  return typeof n === 'number' && Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : DASH
}

export function fmtUsd (n: unknown): string {
  if (typeof n !== 'number' || !Number.isFinite(n)) return DASH
  if (n === 0) return '$0.00'
  const abs = Math.abs(n)
  // under a cent: two significant digits (a request often costs a fraction of one), down to nano-USD
  const small = abs < 0.01 ? abs.toFixed(Math.min(9, 1 - Math.floor(Math.log10(abs)))) : null
  return (n < 0 ? '-$' : '$') + (small ?? abs.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 }))
}

/** A balance: cents, and the fractions of a cent that per-request charges leave ($0.9972). */
export function fmtBalance (n: unknown): string {
  if (typeof n !== 'number' || !Number.isFinite(n)) return DASH
  const abs = Math.abs(n)
  return (n < 0 ? '-$' : '$') + abs.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 4 })
}

/** A signed amount for a ledger: +$5.00, -$0.0038. */
export function fmtUsdSigned (n: unknown): string {
  if (typeof n !== 'number' || !Number.isFinite(n)) return DASH
  return n > 0 ? '+' + fmtUsd(n) : fmtUsd(n)
}

/** A per-1M-token price: $0.15, $12.50, or to a tenth of a cent. */
export function fmtPrice (n: unknown): string {
  if (typeof n !== 'number' || !Number.isFinite(n)) return DASH
  return '$' + n.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: n < 1 ? 4 : 2 })
}

export function fmtMs (n: unknown): string {
  if (typeof n !== 'number' || !Number.isFinite(n)) return DASH
  return n >= 10_000 ? `${(n / 1000).toFixed(1)} s` : `${fmtInt(n)} ms`
}

/** When a window resets, for people: "in 23 min (15:00 UTC)", or "tomorrow 00:00 UTC". */
export function fmtReset (iso: unknown, now = Date.now()): string {
  if (typeof iso !== 'string' || !iso) return DASH
  const t = Date.parse(iso)
  if (Number.isNaN(t)) return DASH
  const at = new Date(t).toISOString()
  const clock = at.slice(11, 16) + ' UTC'
  const day = at.slice(0, 10)
  const when = day === new Date(now).toISOString().slice(0, 10) ? clock
    : day === new Date(now + 86_400_000).toISOString().slice(0, 10) ? `tomorrow ${clock}` : fmtDate(iso)
  return `in ${fmtDuration(Math.max(60, (t - now) / 1000))} (${when})`
}

/** A compact token count: 950, 12.4k, 3.1M. */
export function fmtCompact (n: unknown): string {
  if (typeof n !== 'number' || !Number.isFinite(n)) return DASH
  if (Math.abs(n) < 1000) return String(Math.round(n))
  if (Math.abs(n) < 1_000_000) return `${(n / 1000).toFixed(n < 10_000 ? 1 : 0)}k`
  return `${(n / 1_000_000).toFixed(1)}M`
}

export function fmtDate (iso: unknown): string {
  if (typeof iso !== 'string' || !iso) return DASH
  const d = new Date(iso)
  if (Number.isNaN(d.getTime())) return DASH
  return d.toISOString().slice(0, 16).replace('T', ' ') + ' UTC'
}

export function fmtDuration (seconds: unknown): string {
  if (typeof seconds !== 'number' || !Number.isFinite(seconds)) return DASH
  const s = Math.max(0, Math.round(seconds))
  if (s < 60) return `${s} s`
  if (s < 3600) return `${Math.floor(s / 60)} min`
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`
}

/** A count and its noun: 1 worker, 3 workers. */
export function plural (n: number, word: string): string {
  return `${fmtInt(n)} ${word}${n === 1 ? '' : 's'}`
}
