import { esc } from '../escape.ts'
import { page } from '../layout.ts'
import type { SessionUser } from '../session.ts'

// The page for a request that failed: its HTTP status, a title and what to do about it.

export function errorPage (status: number, title: string, message: string, user: SessionUser | null): string {
  return page({
    title,
    user,
    narrow: true,
    body: `<section class="card error-card" data-error-status="${status}">
  <p class="error-code">${status}</p>
  <h1>${esc(title)}</h1>
  <p>${esc(message)}</p>
  <p><a class="btn" href="${user ? '/dashboard' : '/'}">${user ? 'Back to the dashboard' : 'Home'}</a></p>
</section>`
  })
}
