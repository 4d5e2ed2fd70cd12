/** Something a page shows, or why it cannot: the gateway's coded error. */
export type Maybe<T> = { ok: true, value: T } | { ok: false, error: string }
