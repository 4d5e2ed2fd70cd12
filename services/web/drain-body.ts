// A request body the web refuses (too large) is still read to its end, within bounds, so the client
// finishes writing and sees the answer instead of a reset connection.

/** an oversized body up to this size is read and dropped before the 413; a larger one is cut off */
export const DRAIN_LIMIT = 16 * 1024 * 1024
export const DRAIN_MS = 5000

/** Read a request body to its end and drop it, giving up after `ms`. */
export function drain (stream: NodeJS.ReadableStream, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms)
    const done = () => { clearTimeout(timer); resolve() }
    stream.on('data', () => {}) // discarded: only reaching the end matters
    stream.once('end', done)
    stream.once('error', done) // a broken upload ends the draining the same way
    stream.once('close', done)
    stream.resume()
  })
}
