import { esc } from '../escape.ts'
import { page } from '../layout.ts'

// Logging in: the form app.js posts to /api/dashboard/login, with a notice after logging out.

export function loginPage (notice: string | null, tone: 'ok' | 'warn' = 'ok'): string {
  return page({
    title: 'Log in',
    narrow: true,
    body: `<section class="card auth-card">
  <h1>Log in</h1>
  <p class="sub">Manage your API keys and see what they cost.</p>
  ${notice ? `<p class="notice${tone === 'warn' ? ' notice-warn' : ''}" role="status">${esc(notice)}</p>` : ''}
  <form data-form="login" novalidate>
    <label>Email<input name="email" type="email" autocomplete="email" required maxlength="254" autofocus></label>
    <label>Password<input name="password" type="password" autocomplete="current-password" required maxlength="256"></label>
    <p class="form-error" data-error role="alert" hidden></p>
    <button class="btn btn-block" type="submit">Log in</button>
  </form>
  <p class="alt">New here? <a href="/register">Create an account</a></p>
</section>`
  })
}
