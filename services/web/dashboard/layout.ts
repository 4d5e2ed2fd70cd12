import { esc } from './escape.ts'
import type { SessionUser } from './session.ts'

// The one page head of the web service (htmlDocument, used by the landing page too) and the
// dashboard's frame around it: header, navigation, main column and the toast app.js writes into.

/** The dashboard's stylesheet and script, served by its routes under /dashboard/assets/. */
const DASHBOARD_ASSETS = `<link rel="stylesheet" href="/dashboard/assets/app.css">
<script src="/dashboard/assets/app.js" defer></script>`

export interface DocumentHead {
  /** the page's name, shown before the site's; none on the home page */
  title?: string
  /** a self-contained page's own stylesheet, instead of the dashboard's stylesheet and script */
  inlineCss?: string
}

export function htmlDocument (head: DocumentHead, body: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>${head.title ? `${esc(head.title)} · ` : ''}hyperinfer</title>
${head.inlineCss === undefined ? DASHBOARD_ASSETS : `<style>\n${head.inlineCss}</style>`}
</head>
<body>
${body}
</body>
</html>
`
}

export type NavItem = 'overview' | 'requests' | 'keys' | 'models' | 'compare' | 'operator' | 'admin'

export interface Frame {
  title: string
  user?: SessionUser | null
  active?: NavItem
  body: string
  /** a narrow, centred page (log in, register) */
  narrow?: boolean
}

const NAV: Array<{ id: NavItem, href: string, label: string, admin?: boolean }> = [
  { id: 'overview', href: '/dashboard', label: 'Usage' },
  { id: 'requests', href: '/dashboard/requests', label: 'Requests' },
  { id: 'keys', href: '/dashboard/keys', label: 'API keys' },
  { id: 'models', href: '/dashboard/models', label: 'Models' },
  { id: 'compare', href: '/dashboard/compare', label: 'Compare' },
  { id: 'operator', href: '/dashboard/operator', label: 'Operator' },
  { id: 'admin', href: '/dashboard/admin', label: 'Admin', admin: true }
]

/** A dashboard page: the navigation for whoever is logged in (log in / sign up for nobody). */
export function page (f: Frame): string {
  const user = f.user ?? null
  const nav = user
    ? `<nav class="nav" aria-label="Dashboard">${NAV.filter((n) => !n.admin || user.role === 'admin')
        .map((n) => `<a href="${n.href}"${n.id === f.active ? ' aria-current="page"' : ''}>${n.label}</a>`).join('')}</nav>
    <div class="who"><span class="who-name" data-testid="username">${esc(user.username)}</span>${user.role === 'admin' ? '<span class="badge">admin</span>' : ''}
      <button type="button" class="btn btn-quiet" data-action="logout">Log out</button></div>`
    : '<div class="who"><a href="/login">Log in</a><a class="btn btn-small" href="/register">Sign up</a></div>'
  return htmlDocument({ title: f.title }, `<header class="top"><div class="top-in">
  <a class="brand" href="${user ? '/dashboard' : '/'}">hyper<span>infer</span></a>
  ${nav}
</div></header>
<main class="${f.narrow ? 'wrap narrow' : 'wrap'}">
${f.body}
</main>
<div class="toast" role="status" aria-live="polite" hidden></div>`)
}

/** A section heading with an optional line of help under it. */
export function heading (title: string, sub?: string, aside = ''): string {
  return `<div class="head"><div><h1>${esc(title)}</h1>${sub ? `<p class="sub">${sub}</p>` : ''}</div>${aside}</div>`
}

export function empty (title: string, text: string): string {
  return `<div class="empty"><p class="empty-title">${esc(title)}</p><p>${text}</p></div>`
}
