// hyperinfer dashboard: forms and buttons. The session lives in an HttpOnly cookie this script
// cannot read; every state-changing call carries the CSRF header the server requires.
'use strict'

const CSRF_HEADER = 'x-hyperinfer-csrf'

async function api (method, path, body) {
  const headers = { [CSRF_HEADER]: '1', accept: 'application/json' }
  if (body !== undefined) headers['content-type'] = 'application/json'
  let res
  try {
    res = await fetch(path, { method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body) })
  } catch {
    throw Object.assign(new Error('Could not reach the server. Check your connection and try again.'), { code: 'NETWORK' })
  }
  let data = null
  try { data = await res.json() } catch {}
  if (!res.ok) {
    const err = data && data.error ? data.error : {}
    throw Object.assign(new Error(err.message || `Request failed (HTTP ${res.status})`), { code: err.code || `HTTP_${res.status}`, status: res.status, param: err.param || null })
  }
  return data
}

function showError (form, err) {
  const box = form.querySelector('[data-error]')
  if (!box) return
  box.textContent = describeError(err)
  box.hidden = false
}

// what to do about an error, after the service's own message
const HINTS = {
  INSUFFICIENT_CREDITS: 'Your credits cannot cover this; an administrator can add more.',
  BUDGET_EXCEEDED: 'This key has spent its budget; create a key with a new budget, or use another key.',
  QUOTA_EXCEEDED: 'A token limit of your tier is reached; the Usage page shows when it resets.',
  RATE_LIMITED: 'Too many requests this hour; the Usage page shows when the limit resets.',
  FORBIDDEN: 'Your account is not allowed to do this.'
}

function friendly (err) {
  const msg = String(err.message || 'Something went wrong')
  return msg.charAt(0).toUpperCase() + msg.slice(1)
}

/** The message a person reads: the service's reason, a hint for the codes that have one, and the code. */
function describeError (err) {
  const text = friendly(err)
  const hint = HINTS[err.code]
  return `${text}${hint && !text.includes(hint) ? (/[.!?]$/.test(text) ? ' ' : '. ') + hint : ''} [${err.code}]`
}

function clearError (form) {
  const box = form.querySelector('[data-error]')
  if (box) { box.hidden = true; box.textContent = '' }
}

function bumpActive (by) {
  const el = document.querySelector('[data-active-count]')
  if (el) el.textContent = String(Math.max(0, Number(el.textContent) + by))
}

let toastTimer = null
function toast (text) {
  const el = document.querySelector('.toast')
  if (!el) return
  el.textContent = text
  el.hidden = false
  clearTimeout(toastTimer)
  toastTimer = setTimeout(() => { el.hidden = true }, 3500)
}

function nextTarget () {
  const next = new URLSearchParams(location.search).get('next')
  return next && /^\/dashboard(\/[A-Za-z0-9/_-]*)?(\?[A-Za-z0-9=&_-]*)?$/.test(next) ? next : '/dashboard'
}

function sessionGone (err) {
  if (err.status === 401 && err.code === 'UNAUTHENTICATED') {
    location.assign('/login?next=' + encodeURIComponent(location.pathname))
    return true
  }
  return false
}

async function submitting (form, fn) {
  const button = form.querySelector('button[type="submit"]')
  clearError(form)
  if (button) button.disabled = true
  try {
    await fn()
  } catch (err) {
    if (!sessionGone(err)) showError(form, err)
  } finally {
    if (button) button.disabled = false
  }
}

const forms = {
  // a key's safety policy (empty: the account's or the operator's default applies)
  'key-safety' (form) {
    return submitting(form, async () => {
      const f = new FormData(form)
      const safety = String(f.get('safety') || '')
      await api('PATCH', `/api/dashboard/keys/${encodeURIComponent(form.dataset.keyId)}/safety`, { safety: safety || null })
      try { sessionStorage.setItem('hyperinfer-toast', `Safety policy: ${safety || 'default'}`) } catch {}
      location.reload()
    })
  },

  // the account's own policy (empty: the operator's default applies)
  'account-safety' (form) {
    return submitting(form, async () => {
      const safety = String(new FormData(form).get('safety') || '')
      await api('PUT', '/api/dashboard/safety', { safety: safety || null })
      try { sessionStorage.setItem('hyperinfer-toast', `Account safety policy: ${safety || 'default'}`) } catch {}
      location.reload()
    })
  },

  login (form) {
    return submitting(form, async () => {
      const f = new FormData(form)
      await api('POST', '/api/dashboard/login', { email: String(f.get('email') || '').trim(), password: String(f.get('password') || '') })
      location.assign(nextTarget())
    })
  },

  register (form) {
    return submitting(form, async () => {
      const f = new FormData(form)
      await api('POST', '/api/dashboard/register', {
        username: String(f.get('username') || '').trim(),
        email: String(f.get('email') || '').trim(),
        password: String(f.get('password') || '')
      })
      location.assign('/dashboard/keys')
    })
  },

  'create-key' (form) {
    return submitting(form, async () => {
      const f = new FormData(form)
      const body = { name: String(f.get('name') || '').trim() }
      if (!body.name) throw Object.assign(new Error('Give the key a name, so you can tell your keys apart'), { code: 'BAD_REQUEST' })
      const days = String(f.get('expiresInDays') || '')
      if (days) body.expiresInDays = Number(days)
      const budget = String(f.get('budgetUsd') || '').trim()
      if (budget) {
        const n = Number(budget)
        if (!Number.isFinite(n) || n < 0) throw Object.assign(new Error('The budget must be a dollar amount of 0 or more'), { code: 'BAD_REQUEST' })
        body.budgetUsd = n
      }
      const created = await api('POST', '/api/dashboard/keys', body)
      revealKey(created.key)
      addKeyRow(created)
      bumpActive(1)
      form.reset()
    })
  }
}

function revealKey (key) {
  const panel = document.querySelector('[data-reveal]')
  const input = panel.querySelector('[data-secret]')
  input.value = key
  panel.hidden = false
  panel.querySelector('[data-copy]').textContent = 'Copy'
  input.focus()
  input.select()
}

function hideKey () {
  const panel = document.querySelector('[data-reveal]')
  if (!panel) return
  panel.querySelector('[data-secret]').value = ''
  panel.hidden = true
}

function cell (label, content, cls) {
  const td = document.createElement('td')
  td.dataset.label = label
  if (cls) td.className = cls
  if (content instanceof Node) td.append(content)
  else td.textContent = content
  return td
}

function fmtDate (iso) {
  return iso ? new Date(iso).toISOString().slice(0, 16).replace('T', ' ') + ' UTC' : 'never'
}

/** The new key's row, built from its (secret-free) metadata. */
function addKeyRow (k) {
  const tbody = document.querySelector('[data-table="keys"] tbody')
  if (!tbody) return
  const tr = document.createElement('tr')
  tr.dataset.keyId = k.id
  const link = document.createElement('a')
  link.href = '/dashboard/keys/' + encodeURIComponent(k.id)
  link.textContent = k.name
  const prefix = document.createElement('code')
  prefix.textContent = k.prefix + '…'
  const scopes = document.createElement('span')
  for (const s of k.scopes) {
    const chip = document.createElement('span')
    chip.className = 'chip'
    chip.textContent = s
    scopes.append(chip, ' ')
  }
  const status = document.createElement('span')
  status.className = 'status status-active'
  status.dataset.status = ''
  status.textContent = k.status
  const revoke = document.createElement('button')
  revoke.type = 'button'
  revoke.className = 'btn btn-danger-quiet btn-small'
  revoke.dataset.revoke = k.id
  revoke.dataset.name = k.name
  revoke.textContent = 'Revoke'
  tr.append(cell('Name', link), cell('Key', prefix), cell('Scopes', scopes), cell('Created', fmtDate(k.createdAt)),
    cell('Expires', fmtDate(k.expiresAt)), cell('Last used', 'never'), cell('Status', status), cell('', revoke, 'actions'))
  tbody.prepend(tr)
  const wrap = tbody.closest('.table-wrap')
  if (wrap) wrap.hidden = false
  const emptyState = document.querySelector('[data-empty]')
  if (emptyState) emptyState.remove()
}

async function copyKey (button) {
  const input = document.querySelector('[data-secret]')
  try {
    await navigator.clipboard.writeText(input.value)
  } catch {
    input.select()
    document.execCommand('copy')
  }
  button.textContent = 'Copied'
  toast('Key copied to the clipboard')
}

async function revokeKey (button) {
  // two steps instead of a dialog: the first click arms the button for a few seconds
  if (button.dataset.armed !== '1') {
    button.dataset.armed = '1'
    button.textContent = 'Confirm revoke'
    button.classList.add('btn-danger')
    setTimeout(() => {
      if (!button.isConnected || button.disabled) return
      button.dataset.armed = ''
      button.textContent = button.dataset.label || 'Revoke'
      button.classList.remove('btn-danger')
    }, 5000)
    return
  }
  button.disabled = true
  try {
    const k = await api('DELETE', '/api/dashboard/keys/' + encodeURIComponent(button.dataset.revoke))
    for (const badge of document.querySelectorAll(`[data-key-id="${CSS.escape(k.id)}"] [data-status]`)) {
      badge.textContent = k.status
      badge.className = 'status status-' + k.status
    }
    const foot = button.closest('.card-foot')
    if (foot) foot.remove()
    else button.remove()
    bumpActive(-1)
    toast(`Key "${k.name}" revoked`)
  } catch (err) {
    if (sessionGone(err)) return
    button.disabled = false
    toast(describeError(err))
  }
}

/** A worker's approval, by an admin (the server and the gateway both check the role). */
async function workerAction (button) {
  const action = button.dataset.workerAction
  // revoking (or rejecting) cuts a worker off: two steps, like revoking a key
  if (action === 'revoke' && button.dataset.armed !== '1') {
    button.dataset.armed = '1'
    button.textContent = button.dataset.label === 'Reject' ? 'Confirm reject' : 'Confirm revoke'
    button.classList.add('btn-danger')
    setTimeout(() => {
      if (!button.isConnected || button.disabled) return
      button.dataset.armed = ''
      button.textContent = button.dataset.label
      button.classList.remove('btn-danger')
    }, 5000)
    return
  }
  button.disabled = true
  const key = button.dataset.workerKey
  try {
    await api('POST', `/api/dashboard/admin/workers/${encodeURIComponent(key)}/${action}`)
    // the page is rendered on the server: show the new state, and say what happened after the reload
    try { sessionStorage.setItem('hyperinfer-toast', `Worker ${key.slice(0, 12)}… ${action === 'approve' ? 'approved' : 'revoked'}`) } catch {}
    location.reload()
  } catch (err) {
    if (sessionGone(err)) return
    button.disabled = false
    toast(describeError(err))
  }
}

async function copyFrom (button) {
  const source = document.querySelector(button.dataset.copyFrom)
  if (!source) return
  const text = 'value' in source ? source.value : source.textContent.trim()
  try {
    await navigator.clipboard.writeText(text)
  } catch {
    const range = document.createRange()
    range.selectNodeContents(source)
    getSelection().removeAllRanges()
    getSelection().addRange(range)
    document.execCommand('copy')
  }
  button.textContent = 'Copied'
  toast('Copied to the clipboard')
}

async function logout () {
  // logging out ends the session everywhere (auth refuses the token from now on); if auth could not
  // be told, the server still clears the cookie and says so
  let everywhere = true
  try {
    const res = await api('POST', '/api/dashboard/logout')
    everywhere = !res || res.everywhere !== false
  } catch (err) {
    // nothing reached the server: nothing is logged out, so do not pretend
    if (err.code === 'NETWORK') { toast(describeError(err)); return }
    everywhere = err.status === 401
  }
  location.assign(everywhere ? '/login?logged_out=1' : '/login?logged_out=here')
}

document.addEventListener('submit', (ev) => {
  const form = ev.target.closest('form[data-form]')
  if (!form || !forms[form.dataset.form]) return
  ev.preventDefault()
  forms[form.dataset.form](form)
})

document.addEventListener('click', (ev) => {
  const el = ev.target.closest('button')
  if (!el) return
  if (el.dataset.action === 'logout') logout()
  else if (el.hasAttribute('data-copy')) copyKey(el)
  else if (el.hasAttribute('data-dismiss')) hideKey()
  else if (el.dataset.copyFrom) copyFrom(el)
  else if (el.dataset.workerAction) {
    if (!el.dataset.label) el.dataset.label = el.textContent
    workerAction(el)
  }
  else if (el.dataset.revoke) {
    if (!el.dataset.label) el.dataset.label = el.textContent
    revokeKey(el)
  }
})

// a message left by the action that reloaded the page
try {
  const pending = sessionStorage.getItem('hyperinfer-toast')
  if (pending) {
    sessionStorage.removeItem('hyperinfer-toast')
    toast(pending)
  }
} catch {}

// leaving the page (or going back to it from the cache) never shows a key again
window.addEventListener('pagehide', hideKey)
window.addEventListener('pageshow', (ev) => { if (ev.persisted) hideKey() })
