import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'

// Real headless Chromium for browser tests, driven by playwright-core against the system's
// Chromium (no browser download). Each test gets its own browser; each user gets its own context
// (its own cookie jar), so two users in one test never share a session.

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')

export const CHROMIUM_PATH = process.env.HYPERINFER_CHROMIUM ?? '/usr/bin/chromium'
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run']
export const SCREENSHOT_DIR = path.join(ROOT, 'test-output', 'screenshots')

export const DESKTOP = { width: 1280, height: 800 }
export const PHONE = { width: 390, height: 844 }

type Teardown = { teardown: (fn: () => unknown, o?: { order?: number }) => void }

/** Why browser tests cannot run here, or null when they can. */
export function chromiumUnavailable (): string | null {
  try {
    fs.accessSync(CHROMIUM_PATH, fs.constants.X_OK)
    return null
  } catch {
    return `no Chromium executable at ${CHROMIUM_PATH} (install the chromium package or set HYPERINFER_CHROMIUM)`
  }
}

/** A fresh headless Chromium (playwright gives it a fresh temp profile), closed at teardown. */
export async function launchBrowser (t: Teardown): Promise<Browser> {
  const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: CHROMIUM_ARGS })
  t.teardown(() => browser.close(), { order: 0 })
  return browser
}

/** A user's own context (cookie jar) with the clipboard allowed, at laptop width. */
export async function newUser (browser: Browser, baseURL: string): Promise<{ context: BrowserContext, page: Page }> {
  const context = await browser.newContext({ baseURL, viewport: DESKTOP, deviceScaleFactor: 1, locale: 'en-US', timezoneId: 'UTC' })
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: baseURL })
  context.setDefaultTimeout(15_000)
  const page = await context.newPage()
  return { context, page }
}

/**
 * Full-page screenshots of the current page at laptop and phone widths, as
 * test-output/screenshots/<name>-desktop.png and -phone.png. `mask` hides secrets on screen.
 */
export async function screenshots (page: Page, name: string, opts: { mask?: string[] } = {}): Promise<string[]> {
  fs.mkdirSync(SCREENSHOT_DIR, { recursive: true })
  const original = page.viewportSize() ?? DESKTOP
  const out: string[] = []
  for (const [label, size] of [['desktop', DESKTOP], ['phone', PHONE]] as const) {
    await page.setViewportSize(size)
    const file = path.join(SCREENSHOT_DIR, `${name}-${label}.png`)
    await page.screenshot({ path: file, fullPage: true, mask: (opts.mask ?? []).map((s) => page.locator(s)), animations: 'disabled' })
    out.push(file)
  }
  await page.setViewportSize(original)
  return out
}

/** Whether the page scrolls sideways at its current width (a layout that does not fit). */
export async function overflowsHorizontally (page: Page): Promise<boolean> {
  return page.evaluate(() => document.documentElement.scrollWidth > document.documentElement.clientWidth + 1)
}
