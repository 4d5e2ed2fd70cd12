import { page } from '../layout.ts'

// Creating an account: the form app.js posts to /api/dashboard/register, which also logs in.

export function registerPage (): string {
  return page({
    title: 'Create an account',
    narrow: true,
    body: `<section class="card auth-card">
  <h1>Create an account</h1>
  <p class="sub">One API key, every model on the mesh.</p>
  <form data-form="register" novalidate>
    <label>Username<input name="username" autocomplete="username" required minlength="3" maxlength="50"><span class="hint">3–50 letters, digits, dot, dash or underscore</span></label>
    <label>Email<input name="email" type="email" autocomplete="email" required maxlength="254"></label>
    <label>Password<input name="password" type="password" autocomplete="new-password" required minlength="8" maxlength="256"><span class="hint">At least 8 characters</span></label>
    <p class="form-error" data-error role="alert" hidden></p>
    <button class="btn btn-block" type="submit">Create account</button>
  </form>
  <p class="alt">Already have an account? <a href="/login">Log in</a></p>
</section>`
  })
}
