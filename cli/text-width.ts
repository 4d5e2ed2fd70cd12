// Terminal text for model output: what a model sends is shown, never obeyed (escape sequences and
// other control characters are replaced), and wrapped to a column by the cells each character takes.

/** The text with every control character but newline made harmless: tabs become spaces, the rest go. */
export function printable (text: string): string {
  return text.replace(/\r\n?/g, '\n').replace(/\t/g, '  ').replace(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u200b-\u200f\u2028-\u202e\u2066-\u2069]/g, '')
}

/** Cells one code point takes: 0 for combining marks, 2 for wide East Asian characters and emoji. */
function cells (cp: number): number {
  if ((cp >= 0x300 && cp <= 0x36f) || (cp >= 0xfe00 && cp <= 0xfe0f) || cp === 0x200d) return 0
  if ((cp >= 0x1100 && cp <= 0x115f) || (cp >= 0x2e80 && cp <= 0xa4cf) || (cp >= 0xac00 && cp <= 0xd7a3) ||
    (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0xfe30 && cp <= 0xfe4f) || (cp >= 0xff00 && cp <= 0xff60) ||
    (cp >= 0xffe0 && cp <= 0xffe6) || (cp >= 0x1f300 && cp <= 0x1faff) || (cp >= 0x20000 && cp <= 0x3fffd)) return 2
  return 1
}

export function width (text: string): number {
  let w = 0
  for (const ch of text) w += cells(ch.codePointAt(0)!)
  return w
}

/** `text` padded with spaces to `w` cells (never cut). */
export function pad (text: string, w: number): string {
  return text + ' '.repeat(Math.max(0, w - width(text)))
}

/** `text` cut to at most `w` cells, with … when it was longer. */
export function clip (text: string, w: number): string {
  if (width(text) <= w) return text
  let out = ''
  let used = 0
  for (const ch of text) {
    const c = cells(ch.codePointAt(0)!)
    if (used + c > w - 1) break
    out += ch
    used += c
  }
  return out + '…'
}

/** Printable text wrapped at word boundaries to lines of at most `w` cells (a longer word is broken). */
export function wrap (text: string, w: number): string[] {
  const out: string[] = []
  for (const para of printable(text).split('\n')) {
    let line = ''
    let used = 0
    // words with the spaces before them, so spacing inside a line is kept
    for (const word of para.match(/\s*\S+|\s+$/g) ?? ['']) {
      const ww = width(word)
      if (used + ww <= w) { line += word; used += ww; continue }
      if (line) out.push(line)
      line = ''
      used = 0
      for (const ch of word.trimStart()) {
        const c = cells(ch.codePointAt(0)!)
        if (used + c > w) { out.push(line); line = ''; used = 0 }
        line += ch
        used += c
      }
    }
    out.push(line)
  }
  return out
}
