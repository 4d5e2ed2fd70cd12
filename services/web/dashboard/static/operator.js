// hyperinfer dashboard, operator page: drain or resume a worker, set a model's price. Both go to
// /api/dashboard/operator/* with the CSRF header (api() from app.js); the gateway lets an operator act
// on its own workers and models only, and the page reloads to show the state it now has.
'use strict'

;(() => {
  if (!document.querySelector('[data-table="operator-workers"], [data-prices]')) return

  function reloadSaying (text) {
    try { sessionStorage.setItem('hyperinfer-toast', text) } catch {}
    location.reload()
  }

  // prices: a form per model, registered with app.js's form table
  forms['set-price'] = (form) => submitting(form, async () => {
    const f = new FormData(form)
    const whole = (name, label) => {
      const raw = String(f.get(name) || '').trim()
      const n = Number(raw)
      if (!raw || !Number.isInteger(n) || n < 0) throw Object.assign(new Error(`The ${label} price must be a whole number of nano-USD per token`), { code: 'BAD_REQUEST' })
      return n
    }
    const body = { model: form.dataset.model, input: whole('input', 'input'), output: whole('output', 'output') }
    const res = await api('POST', '/api/dashboard/operator/prices', body)
    reloadSaying(`${res.model}: ${res.effective.input} / ${res.effective.output} nUSD a token`)
  })

  async function drain (button) {
    const key = button.dataset.drainWorker
    const stop = button.dataset.drain === 'true'
    button.disabled = true
    try {
      await api('POST', `/api/dashboard/operator/workers/${encodeURIComponent(key)}/${stop ? 'drain' : 'resume'}`)
      reloadSaying(`Worker ${key.slice(0, 12)}… ${stop ? 'drained' : 'resumed'}`)
    } catch (err) {
      if (sessionGone(err)) return
      button.disabled = false
      toast(describeError(err))
    }
  }

  document.addEventListener('click', (ev) => {
    const button = ev.target.closest('button[data-drain-worker]')
    if (button) drain(button)
  })
})()
