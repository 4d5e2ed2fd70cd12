// The dashboard's pages, rendered on the server from what auth and the gateway return, one file a
// page. Forms and buttons post to /api/dashboard/* from app.js; nothing here ever holds a secret.

export { loginPage } from './login.ts'
export { registerPage } from './register.ts'
export { overviewPage, type ModelUsage, type UsageView } from './overview.ts'
export type { AccountQuotaView, CreditsView } from './account.ts'
export { keysPage } from './keys.ts'
export { keyPage } from './key.ts'
export { modelsPage } from './models.ts'
export { comparePage } from './compare.ts'
export { operatorPage, type OperatorView } from './operator.ts'
export { receiptPage, requestsPage } from './requests.ts'
export { adminPage, type AdminView, type WebHealth } from './admin.ts'
export { workersFromHealth } from './workers.ts'
export { errorPage } from './error.ts'
export type { Maybe } from '../maybe.ts'
