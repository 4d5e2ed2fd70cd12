import path from 'node:path'
import type pg from 'pg'
import { MIGRATIONS_DIR } from '../shared/db.ts'

// The schema a migrated database holds, as readable SQL built from the catalog: tables (columns,
// constraints, indexes), functions with their full bodies, triggers. Every list is sorted by name in
// the "C" collation, never by oid, so two fresh databases give the same bytes. Owners, grants,
// tablespaces and row data are left out: they belong to a server, not to the schema.

export const SCHEMA_FILE = path.join(MIGRATIONS_DIR, 'schema.sql')
export const SCHEMA_COMMAND = 'npm run schema'

const HEADER = `-- GENERATED FILE, DO NOT EDIT BY HAND: regenerate with \`${SCHEMA_COMMAND}\` (scripts/schema.ts).
-- The whole schema that migrations/NNN_*.sql build, as of the migrations listed below, so today's
-- tables and SQL functions read in one place. The numbered migrations stay the source of truth; this
-- file is never applied, and test/schema.test.ts fails when it no longer matches them.`

/** Object kinds this dump does not render: a migration adding one must teach the dump first. */
const UNRENDERED = `
  SELECT 'schema ' || nspname AS what FROM pg_namespace
    WHERE nspname NOT IN ('public', 'pg_catalog', 'information_schema', 'pg_toast')
      AND nspname NOT LIKE 'pg\\_temp\\_%' AND nspname NOT LIKE 'pg\\_toast\\_temp\\_%'
  UNION ALL SELECT format('relation %s of kind %s', relname, relkind) FROM pg_class
    WHERE relnamespace = 'public'::regnamespace AND relkind NOT IN ('r', 'i', 'S', 'v')
  UNION ALL SELECT 'row level security on ' || relname FROM pg_class
    WHERE relnamespace = 'public'::regnamespace AND relrowsecurity
  UNION ALL SELECT format('type %s of kind %s', typname, typtype) FROM pg_type t
    WHERE typnamespace = 'public'::regnamespace AND (typtype IN ('d', 'r', 'm', 'p') OR (typtype = 'b' AND typelem = 0))
      AND NOT EXISTS (SELECT 1 FROM pg_depend WHERE classid = 'pg_type'::regclass AND objid = t.oid AND deptype = 'e')
  UNION ALL SELECT 'aggregate ' || proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace AND prokind = 'a'
  UNION ALL SELECT 'policy ' || polname FROM pg_policy
  UNION ALL SELECT 'rule ' || rulename FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
    WHERE c.relnamespace = 'public'::regnamespace AND r.rulename <> '_RETURN'`

/** `WHERE` clause of an object of class `catalog` (alias `x`) in public and not part of an extension. */
const own = (catalog: string, nsColumn: string) => `x.${nsColumn} = 'public'::regnamespace
  AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = '${catalog}'::regclass AND e.objid = x.oid AND e.deptype = 'e')`

const SERIAL_TYPES: Record<string, string> = { smallint: 'smallserial', integer: 'serial', bigint: 'bigserial' }

const Q = {
  migrations: `SELECT name FROM schema_migrations ORDER BY name COLLATE "C"`,
  extensions: `SELECT format('CREATE EXTENSION IF NOT EXISTS %I;', extname) AS sql FROM pg_extension
    WHERE extname <> 'plpgsql' ORDER BY extname COLLATE "C"`,
  enums: `SELECT format('CREATE TYPE %I AS ENUM (%s);', x.typname, string_agg(quote_literal(l.enumlabel), ', ' ORDER BY l.enumsortorder)) AS sql
    FROM pg_type x JOIN pg_enum l ON l.enumtypid = x.oid WHERE ${own('pg_type', 'typnamespace')}
    GROUP BY x.typname ORDER BY x.typname COLLATE "C"`,
  // sequences behind identity columns are part of their column; serial ones are filtered by name later
  sequences: `SELECT x.relname AS name, format('CREATE SEQUENCE %I AS %s START WITH %s INCREMENT BY %s MINVALUE %s MAXVALUE %s CACHE %s%s;',
      x.relname, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache,
      CASE WHEN s.seqcycle THEN ' CYCLE' ELSE '' END) AS sql,
      (SELECT format('ALTER SEQUENCE %I OWNED BY %I.%I;', x.relname, t.relname, a.attname)
         FROM pg_depend d JOIN pg_class t ON t.oid = d.refobjid JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
         WHERE d.classid = 'pg_class'::regclass AND d.objid = x.oid AND d.deptype = 'a') AS owned
    FROM pg_class x JOIN pg_sequence s ON s.seqrelid = x.oid
    WHERE x.relkind = 'S' AND ${own('pg_class', 'relnamespace')}
      AND NOT EXISTS (SELECT 1 FROM pg_depend i WHERE i.classid = 'pg_class'::regclass AND i.objid = x.oid AND i.deptype = 'i')
    ORDER BY x.relname COLLATE "C"`,
  tables: `SELECT x.oid, quote_ident(x.relname) AS name, x.relpersistence = 'u' AS unlogged, array_to_string(x.reloptions, ', ') AS options
    FROM pg_class x WHERE x.relkind = 'r' AND ${own('pg_class', 'relnamespace')} ORDER BY x.relname COLLATE "C"`,
  // a column whose default is nextval() of its own sequence with default settings is shown as serial
  columns: `SELECT a.attrelid AS rel, quote_ident(a.attname) AS name, format_type(a.atttypid, a.atttypmod) AS type,
      a.attnotnull AS "notNull", a.attidentity AS identity, a.attgenerated AS generated, pg_get_expr(d.adbin, d.adrelid) AS def,
      CASE WHEN a.attcollation <> ty.typcollation THEN quote_ident(co.collname) END AS collation, ser.relname AS serial
    FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    LEFT JOIN pg_collation co ON co.oid = a.attcollation
    LEFT JOIN LATERAL (
      SELECT sc.relname FROM pg_depend dep JOIN pg_class sc ON sc.oid = dep.objid JOIN pg_sequence sq ON sq.seqrelid = sc.oid
      WHERE dep.classid = 'pg_class'::regclass AND dep.refobjid = a.attrelid AND dep.refobjsubid = a.attnum AND dep.deptype = 'a'
        AND sq.seqtypid = a.atttypid AND sq.seqstart = 1 AND sq.seqincrement = 1 AND sq.seqmin = 1 AND sq.seqcache = 1 AND NOT sq.seqcycle
        AND sq.seqmax = CASE a.atttypid WHEN 'int2'::regtype THEN 32767 WHEN 'int4'::regtype THEN 2147483647 ELSE 9223372036854775807 END
        AND pg_get_expr(d.adbin, d.adrelid) = format('nextval(%L::regclass)', sc.oid::regclass)) ser ON true
    WHERE a.attrelid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
  // not-null constraints are shown on their column; constraint triggers with the triggers
  constraints: `SELECT conrelid AS rel, confrelid AS refs, contype AS kind,
      format('CONSTRAINT %I %s', conname, pg_get_constraintdef(oid, true)) AS sql
    FROM pg_constraint WHERE conrelid = ANY($1) AND contype IN ('p', 'u', 'f', 'c', 'x')
    ORDER BY position(contype IN 'pufcx'), conname COLLATE "C"`,
  indexes: `SELECT i.indrelid AS rel, pg_get_indexdef(i.indexrelid) || ';' AS sql
    FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
    WHERE i.indrelid = ANY($1) AND NOT EXISTS (SELECT 1 FROM pg_constraint c
      WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid AND c.contype IN ('p', 'u', 'x'))
    ORDER BY ic.relname COLLATE "C"`,
  tableComments: `SELECT d.objoid AS rel, CASE WHEN d.objsubid = 0
        THEN format('COMMENT ON TABLE %I IS %L;', c.relname, d.description)
        ELSE format('COMMENT ON COLUMN %I.%I IS %L;', c.relname, a.attname, d.description) END AS sql
    FROM pg_description d JOIN pg_class c ON c.oid = d.objoid
    LEFT JOIN pg_attribute a ON a.attrelid = d.objoid AND a.attnum = d.objsubid
    WHERE d.classoid = 'pg_class'::regclass AND d.objoid = ANY($1) ORDER BY d.objsubid`,
  views: `SELECT format(E'CREATE VIEW %I AS\\n%s', x.relname, pg_get_viewdef(x.oid, true)) AS sql
    FROM pg_class x WHERE x.relkind = 'v' AND ${own('pg_class', 'relnamespace')} ORDER BY x.relname COLLATE "C"`,
  functions: `SELECT pg_get_functiondef(x.oid) AS sql,
      CASE WHEN obj_description(x.oid, 'pg_proc') IS NOT NULL THEN format('COMMENT ON FUNCTION %I(%s) IS %L;',
        x.proname, pg_get_function_identity_arguments(x.oid), obj_description(x.oid, 'pg_proc')) END AS comment
    FROM pg_proc x WHERE ${own('pg_proc', 'pronamespace')}
    ORDER BY x.proname COLLATE "C", pg_get_function_identity_arguments(x.oid) COLLATE "C"`,
  triggers: `SELECT pg_get_triggerdef(t.oid, true) || ';' AS sql FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
    WHERE c.relnamespace = 'public'::regnamespace AND NOT t.tgisinternal ORDER BY c.relname COLLATE "C", t.tgname COLLATE "C"`
}

interface Table { oid: number, name: string, unlogged: boolean, options: string | null }
interface Column { rel: number, name: string, type: string, notNull: boolean, identity: string, generated: string, def: string | null, collation: string | null, serial: string | null }
interface Constraint { rel: number, refs: number, kind: string, sql: string }
interface ByTable { rel: number, sql: string }

/** The schema of the database `pool` reaches, as the text of migrations/schema.sql. */
export async function dumpSchema (pool: pg.Pool): Promise<string> {
  const client = await pool.connect()
  try {
    // names in the public schema print unqualified; the read-only transaction ends in a rollback
    await client.query('BEGIN READ ONLY')
    await client.query('SET LOCAL search_path = public')
    const rows = async <R extends pg.QueryResultRow>(sql: string, params: unknown[] = []) => (await client.query<R>(sql, params)).rows
    const unrendered = await rows<{ what: string }>(UNRENDERED)
    if (unrendered.length) throw new Error(`schema dump: cannot render ${unrendered.map((r) => r.what).join(', ')}`)

    const tables = await rows<Table>(Q.tables)
    const oids = tables.map((t) => t.oid)
    const columns = await rows<Column>(Q.columns, [oids])
    const serials = new Set(columns.flatMap((c) => c.serial ?? []))
    const sequences = (await rows<{ name: string, sql: string, owned: string | null }>(Q.sequences)).filter((s) => !serials.has(s.name))
    const constraints = await rows<Constraint>(Q.constraints, [oids])
    const perTable = {
      columns: group(columns),
      constraints: group(constraints),
      indexes: group(await rows<ByTable>(Q.indexes, [oids])),
      comments: group(await rows<ByTable>(Q.tableComments, [oids]))
    }
    const functions = await rows<{ sql: string, comment: string | null }>(Q.functions)
    const migrations = await rows<{ name: string }>(Q.migrations)

    const tableBlocks = byDependency(tables, constraints).map((t) => [
      createTable(t, perTable.columns.get(t.oid) ?? [], (perTable.constraints.get(t.oid) ?? []).map((c) => c.sql)),
      // pg_get_indexdef always qualifies the table; everything else here is unqualified
      ...(perTable.indexes.get(t.oid) ?? []).map((i) => i.sql.replace(/ ON (ONLY )?public\./, ' ON $1')),
      ...(perTable.comments.get(t.oid) ?? []).map((c) => c.sql)
    ].join('\n'))
    const functionBlocks = functions.map((f) => [
      // likewise pg_get_functiondef the function's name
      f.sql.trimEnd().replace(/^(CREATE OR REPLACE (?:FUNCTION|PROCEDURE) )public\./, '$1') + ';',
      ...(f.comment ? [f.comment] : [])
    ].join('\n'))

    const sections: Array<[string, string[]]> = [
      ['Extensions', [(await rows<{ sql: string }>(Q.extensions)).map((r) => r.sql).join('\n')]],
      ['Types', (await rows<{ sql: string }>(Q.enums)).map((r) => r.sql)],
      ['Sequences', [sequences.map((s) => s.sql).join('\n')]],
      ['Tables', tableBlocks],
      ['Sequence owners', [sequences.flatMap((s) => s.owned ?? []).join('\n')]],
      ['Functions', functionBlocks],
      ['Views', (await rows<{ sql: string }>(Q.views)).map((r) => r.sql)],
      ['Triggers', [(await rows<{ sql: string }>(Q.triggers)).map((r) => r.sql).join('\n')]]
    ]
    const header = `${HEADER}\n--\n-- Migrations: ${migrations.map((m) => m.name).join(', ') || 'none'}`
    const body = sections
      .map(([title, blocks]) => [title, blocks.filter((b) => b !== '')] as const)
      .filter(([, blocks]) => blocks.length > 0)
      .map(([title, blocks]) => `-- ${title}\n\n${blocks.join('\n\n')}`)
    return [header, ...body].join('\n\n\n') + '\n'
  } finally {
    // the transaction only read, so a failed rollback loses nothing; an error above is the one to report
    await client.query('ROLLBACK').catch(() => {})
    client.release()
  }
}

function group<R extends { rel: number }> (rows: R[]): Map<number, R[]> {
  const out = new Map<number, R[]>()
  for (const r of rows) {
    const list = out.get(r.rel)
    if (list) list.push(r)
    else out.set(r.rel, [r])
  }
  return out
}

function createTable (t: Table, columns: Column[], constraints: string[]): string {
  const width = Math.max(0, ...columns.map((c) => c.name.length))
  const lines = columns.map((c) => {
    const serial = c.serial ? SERIAL_TYPES[c.type] : undefined
    const parts = [c.name.padEnd(width), serial ?? c.type]
    if (c.collation) parts.push(`COLLATE ${c.collation}`)
    if (c.identity) parts.push(`GENERATED ${c.identity === 'a' ? 'ALWAYS' : 'BY DEFAULT'} AS IDENTITY`)
    if (c.generated) parts.push(`GENERATED ALWAYS AS (${c.def}) ${c.generated === 's' ? 'STORED' : 'VIRTUAL'}`)
    else if (c.def !== null && !serial) parts.push(`DEFAULT ${c.def}`)
    if (c.notNull) parts.push('NOT NULL')
    return '  ' + parts.join(' ')
  })
  const head = `CREATE ${t.unlogged ? 'UNLOGGED ' : ''}TABLE ${t.name} (`
  const tail = t.options ? `) WITH (${t.options});` : ');'
  return [head, [...lines, ...constraints.map((c) => '  ' + c)].join(',\n'), tail].join('\n')
}

/** Tables in name order, except that a table comes after the tables its foreign keys reference. */
function byDependency (tables: Table[], constraints: Constraint[]): Table[] {
  const needs = new Map(tables.map((t) => [t.oid, new Set<number>()]))
  for (const c of constraints) if (c.kind === 'f' && c.refs !== c.rel) needs.get(c.rel)?.add(c.refs)
  const done = new Set<number>()
  const out: Table[] = []
  while (out.length < tables.length) {
    const left = tables.filter((t) => !done.has(t.oid))
    // a cycle of foreign keys cannot be ordered: then the first remaining table by name goes next
    const next = left.find((t) => [...needs.get(t.oid)!].every((r) => done.has(r))) ?? left[0]!
    done.add(next.oid)
    out.push(next)
  }
  return out
}
