import c, { type State } from 'compact-encoding'

// The value encoding of every RPC channel: JSON like compact-encoding's `json`, but a frame that does
// not decode, or a value that does not encode, fails with a plain Error. protomux-rpc answers a plain
// decode error with a coded DECODE_ERROR; a SyntaxError, RangeError or TypeError it rethrows as an
// uncaught exception (safety-catch), which lets any peer stop the process with one malformed frame.

function stringify (v: unknown): string {
  let s: string | undefined
  try {
    s = JSON.stringify(v)
  } catch {
    throw new Error('value cannot be encoded as JSON')
  }
  // JSON.stringify gives undefined for undefined and functions: send null, as a missing value
  return s ?? 'null'
}

// A message is measured (preencode) and then written (encode) with the same value, one right after
// the other: the text made for the first serves the second, so each value is encoded once, not twice.
let lastValue: unknown
let lastText = ''

export const wireJson = {
  preencode (state: State, v: unknown): void {
    lastText = stringify(v)
    lastValue = v
    c.string.preencode(state, lastText)
  },
  encode (state: State, v: unknown): void {
    const text = v === lastValue && lastValue !== undefined ? lastText : stringify(v)
    lastValue = undefined
    lastText = ''
    c.string.encode(state, text)
  },
  decode (state: State): unknown {
    try {
      return JSON.parse(c.string.decode(state))
    } catch {
      throw new Error('frame is not a JSON value')
    }
  }
}
