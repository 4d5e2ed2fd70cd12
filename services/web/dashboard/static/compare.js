// hyperinfer dashboard, compare page: POST /api/dashboard/compare with stream: true on the session
// (cookie and CSRF header; the server adds the session's key), and a column per model that fills in as its deltas arrive, then shows its usage, latency
// and cost. Everything a model sends is set as text, never as HTML. Uses describeError from app.js.
'use strict'

;(() => {
  const form = document.querySelector('form[data-form="compare"]')
  if (!form) return
  const grid = document.querySelector('[data-compare-results]')
  const total = document.querySelector('[data-compare-total]')
  const run = form.querySelector('[data-compare-run]')
  const stop = form.querySelector('[data-compare-stop]')
  const maxModels = Number(form.dataset.maxModels) || 8
  let controller = null

  // exact to the nano-dollar, without trailing zeros
  function usd (nano) {
    if (nano === null || nano === undefined) return '–'
    if (nano === 0) return '$0'
    return '$' + (nano / 1e9).toFixed(9).replace(/0+$/, '').replace(/\.$/, '')
  }

  function fail (message, code) {
    const box = form.querySelector('[data-error]')
    box.textContent = describeError({ message, code })
    box.hidden = false
  }

  function el (tag, cls, text) {
    const node = document.createElement(tag)
    if (cls) node.className = cls
    if (text !== undefined) node.textContent = text
    return node
  }

  function column (model, index) {
    const col = el('article', 'compare-col')
    col.dataset.column = model
    col.dataset.index = String(index)
    const head = el('header', 'compare-col-head')
    head.append(el('h2', null, model), el('span', 'status status-idle', 'waiting'))
    const text = el('div', 'compare-text')
    text.dataset.columnText = ''
    text.append(document.createTextNode(''))
    const foot = el('footer', 'compare-col-foot muted')
    foot.dataset.columnUsage = ''
    col.append(head, text, foot)
    return col
  }

  function finishColumn (col, r) {
    const status = col.querySelector('.status')
    const text = col.querySelector('[data-column-text]')
    const foot = col.querySelector('[data-column-usage]')
    if (r.error) {
      status.textContent = 'failed'
      status.className = 'status status-revoked'
      const err = el('p', 'form-error', `${r.error.message} [${r.error.code}]`)
      err.dataset.columnError = r.error.code
      text.after(err)
      foot.textContent = `${r.latency_ms} ms`
      return
    }
    status.textContent = r.finish_reason === 'length' ? 'done (max tokens)' : 'done'
    status.className = 'status status-active'
    text.firstChild.data = r.text
    foot.dataset.costNano = String(r.cost.nano_usd)
    foot.textContent = `${r.usage.prompt_tokens} → ${r.usage.completion_tokens} tokens · ${r.latency_ms} ms · ${usd(r.cost.nano_usd)}`
  }

  async function compare (models, prompt, maxTokens) {
    grid.replaceChildren(...models.map(column))
    grid.style.setProperty('--columns', String(models.length))
    total.hidden = true
    const cols = [...grid.children]
    controller = new AbortController()
    run.disabled = true
    stop.hidden = false
    try {
      const res = await fetch('/api/dashboard/compare', {
        method: 'POST',
        credentials: 'same-origin',
        headers: { [CSRF_HEADER]: '1', 'content-type': 'application/json', accept: 'text/event-stream' },
        body: JSON.stringify({ models, prompt, max_tokens: maxTokens, stream: true }),
        signal: controller.signal
      })
      if (!res.ok) {
        const data = await res.json().catch(() => null)
        grid.replaceChildren()
        const e = data && data.error ? data.error : {}
        if (sessionGone({ status: res.status, code: e.code })) return
        fail(e.message || `Request failed (HTTP ${res.status})`, e.code || `HTTP_${res.status}`)
        return
      }
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader()
      let buf = ''
      for (;;) {
        const { value, done } = await reader.read()
        if (done) break
        buf += value
        let cut
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, cut)
          buf = buf.slice(cut + 2)
          const data = block.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart()).join('\n')
          if (!data || data === '[DONE]') continue
          handle(JSON.parse(data), cols)
        }
      }
    } catch (err) {
      if (err.name === 'AbortError') {
        for (const col of cols) {
          const s = col.querySelector('.status')
          if (s.textContent === 'streaming' || s.textContent === 'waiting') s.textContent = 'stopped'
        }
      } else {
        fail('Could not reach the server. Check your connection and try again.', 'NETWORK')
      }
    } finally {
      controller = null
      run.disabled = false
      stop.hidden = true
    }
  }

  function handle (ev, cols) {
    if (ev.type === 'delta') {
      const col = cols[ev.index]
      if (!col) return
      const s = col.querySelector('.status')
      if (s.textContent === 'waiting') s.textContent = 'streaming'
      col.querySelector('[data-column-text]').firstChild.appendData(ev.text)
    } else if (ev.type === 'result') {
      if (cols[ev.index]) finishColumn(cols[ev.index], ev)
    } else if (ev.type === 'compare.done') {
      total.textContent = `All models: ${ev.usage.prompt_tokens} → ${ev.usage.completion_tokens} tokens · ${usd(ev.cost.nano_usd)}`
      total.hidden = false
    } else if (ev.error) {
      fail(ev.error.message, ev.error.code)
    }
  }

  form.addEventListener('submit', (ev) => {
    ev.preventDefault()
    const box = form.querySelector('[data-error]')
    box.hidden = true
    const models = [...form.querySelectorAll('input[name="model"]:checked')].map((i) => i.value)
    const prompt = form.elements.prompt.value.trim()
    const maxTokens = Number(form.elements.maxTokens.value) || undefined
    if (models.length === 0) return fail('Pick at least one model', 'BAD_REQUEST')
    if (models.length > maxModels) return fail(`Pick at most ${maxModels} models`, 'BAD_REQUEST')
    if (!prompt) return fail('Type a prompt', 'BAD_REQUEST')
    compare(models, prompt, maxTokens)
  })

  stop.addEventListener('click', () => { if (controller) controller.abort() })
})()
