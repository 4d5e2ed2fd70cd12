import pg from 'pg'

// The role the services connect as. Migrations run as the database's owner; the services only read
// and write rows: no superuser, no creating databases or roles, no owning a table (so no ALTER, DROP,
// TRUNCATE or disabling a trigger), and the append-only tables take no UPDATE or DELETE.

export const APP_ROLE = 'hyperinfer_app'
const APPEND_ONLY = ['credit_ledger', 'audit_log']

/**
 * Create (or update) the app role on the database at `ownerUrl` with `password`, grant it what the
 * services need on every table there is now, and return the URL the services use.
 * Run after the migrations: grants cover the tables that exist when it runs.
 */
export async function ensureAppRole (ownerUrl: string, password: string, role = APP_ROLE): Promise<string> {
  const client = new pg.Client({ connectionString: ownerUrl })
  client.on('error', () => {}) // a dropped connection fails the query that is waiting, if any
  await client.connect()
  try {
    const r = client.escapeIdentifier(role)
    const pw = client.escapeLiteral(password)
    const { rows } = await client.query<{ db: string }>('SELECT current_database() AS db')
    const db = client.escapeIdentifier(rows[0]!.db)
    // roles are cluster-wide: two starters on one server must not both create it
    await client.query('SELECT pg_advisory_lock(727275)')
    try {
      const exists = (await client.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role])).rowCount === 1
      const attrs = 'LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT'
      await client.query(`${exists ? 'ALTER' : 'CREATE'} ROLE ${r} ${attrs} PASSWORD ${pw}`)
      await client.query(`GRANT CONNECT, TEMPORARY ON DATABASE ${db} TO ${r}`)
      await client.query(`GRANT USAGE ON SCHEMA public TO ${r}`)
      await client.query(`REVOKE CREATE ON SCHEMA public FROM ${r}`)
      await client.query(`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ${r}`)
      for (const table of APPEND_ONLY) {
        const exists = (await client.query('SELECT to_regclass($1) IS NOT NULL AS ok', [`public.${table}`])).rows[0]?.ok
        if (exists) await client.query(`REVOKE UPDATE, DELETE ON ${client.escapeIdentifier(table)} FROM ${r}`)
      }
      await client.query(`GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO ${r}`)
      await client.query(`GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO ${r}`)
    } finally {
      await client.query('SELECT pg_advisory_unlock(727275)')
    }
  } finally {
    await client.end()
  }
  const url = new URL(ownerUrl)
  url.username = role
  url.password = password
  return url.toString()
}
