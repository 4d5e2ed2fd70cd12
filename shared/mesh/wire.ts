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

export const wireJson = {
  preencode (state: State, v: unknown): void { c.string.preencode(state, stringify(v)) },
  encode (state: State, v: unknown): void { c.string.encode(state, stringify(v)) },
  decode (state: State): unknown {
    try {
      return JSON.parse(c.string.decode(state))
    } catch {
      throw new Error('frame is not a JSON value')
    }
  }
}
