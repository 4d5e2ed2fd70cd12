declare module 'brittle' {
  export interface Assertion {
    plan (n: number): void
    pass (msg?: string): void
    fail (msg?: string): void
    ok (v: unknown, msg?: string): void
    absent (v: unknown, msg?: string): void
    is (a: unknown, b: unknown, msg?: string): void
    not (a: unknown, b: unknown, msg?: string): void
    alike (a: unknown, b: unknown, msg?: string): void
    unlike (a: unknown, b: unknown, msg?: string): void
    exception (fn: unknown, expected?: unknown, msg?: string): Promise<void>
    execution (fn: unknown, msg?: string): Promise<void>
    comment (msg: string): void
    teardown (fn: () => unknown, opts?: { order?: number }): void
    timeout (ms: number): void
    test (name: string, fn: (t: Assertion) => unknown): Promise<void>
  }
  export interface TestFn {
    (name: string, fn: (t: Assertion) => unknown): void
    (name: string, opts: { timeout?: number, skip?: boolean }, fn: (t: Assertion) => unknown): void
    skip (name: string, fn: (t: Assertion) => unknown): void
    solo (name: string, fn: (t: Assertion) => unknown): void
    configure (opts: { timeout?: number, serial?: boolean, bail?: boolean }): void
  }
  const test: TestFn
  export default test
  export const configure: TestFn['configure']
}
