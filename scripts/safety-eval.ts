// `npx tsx scripts/safety-eval.ts [--json]`: precision and recall of the built-in safety detectors
// per category on the labelled fixture (services/gateway/test/safety-labelled.json), counted per
// text (a category found in a text that is not labelled with it is a false positive), and the
// time one scan takes. The README's table in "Safety" is this script's output.
import fs from 'node:fs'
import { CATEGORIES, categoriesIn, type Category } from '../services/gateway/safety/detectors.ts'

export interface Labelled { text: string, labels: string[] }
export interface CategoryScore { category: string, support: number, tp: number, fp: number, fn: number, precision: number, recall: number }

export function loadFixture (): Labelled[] {
  const file = new URL('../services/gateway/test/safety-labelled.json', import.meta.url)
  return (JSON.parse(fs.readFileSync(file, 'utf8')) as { items: Labelled[] }).items
}

/** Per-category precision and recall of `detect` over `items`. */
export function score (items: Labelled[], detect: (text: string) => Set<string>, categories: readonly string[] = CATEGORIES): CategoryScore[] {
  return categories.map((category) => {
    let tp = 0; let fp = 0; let fn = 0
    for (const item of items) {
      const truth = item.labels.includes(category)
      const found = detect(item.text).has(category)
      if (found && truth) tp++
      else if (found) fp++
      else if (truth) fn++
    }
    return { category, support: tp + fn, tp, fp, fn, precision: tp + fp === 0 ? 1 : tp / (tp + fp), recall: tp + fn === 0 ? 1 : tp / (tp + fn) }
  })
}

/** Median microseconds per text of `detect`, over the fixture repeated. */
export function timePerText (items: Labelled[], detect: (text: string) => unknown, rounds = 50): number {
  const samples: number[] = []
  for (let r = 0; r < rounds; r++) {
    for (const item of items) {
      const t0 = process.hrtime.bigint()
      detect(item.text)
      samples.push(Number(process.hrtime.bigint() - t0) / 1000)
    }
  }
  samples.sort((a, b) => a - b)
  return samples[Math.floor(samples.length / 2)]!
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const items = loadFixture()
  const rows = score(items, (t) => categoriesIn(t) as Set<Category | string>)
  const us = timePerText(items, (t) => categoriesIn(t))
  if (process.argv.includes('--json')) {
    console.log(JSON.stringify({ items: items.length, medianMicrosPerText: us, categories: rows }, null, 2))
  } else {
    console.log(`${items.length} labelled texts; a scan takes ${us.toFixed(1)} µs (median)\n`)
    console.log('| category | texts with it | precision | recall |')
    console.log('|---|---:|---:|---:|')
    for (const r of rows) console.log(`| ${r.category} | ${r.support} | ${r.precision.toFixed(2)} (${r.fp} FP) | ${r.recall.toFixed(2)} (${r.fn} missed) |`)
  }
}
