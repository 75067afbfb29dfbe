/**
 * The set-up the sql source's server tests share: a real database server (db-servers.ts)
 * with KSC's views (ksc-sql-schema.ts), a temp folder, and the `cefd run` children started
 * in it; all stopped and removed after the suite. Call `sqlBed` inside a `describe`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import type { ChildDaemon } from './child.js';
import type { DbServer } from './db-servers.js';
import { createKscSchema, type KscSchema } from './ksc-sql-schema.js';

export interface SqlBed {
  readonly db: DbServer;
  readonly schema: KscSchema;
  readonly dir: string;
  /** cefd children of the suite: killed (if still running) after it. */
  readonly children: ChildDaemon[];
}

export function sqlBed(start: () => Promise<DbServer>, prefix: string, seed?: (schema: KscSchema) => Promise<void>): SqlBed {
  const bed = { children: [] as ChildDaemon[] } as { db: DbServer; schema: KscSchema; dir: string; children: ChildDaemon[] };
  beforeAll(async () => {
    bed.db = await start();
    bed.schema = await createKscSchema(bed.db);
    await seed?.(bed.schema);
    bed.dir = mkdtempSync(join(tmpdir(), prefix));
  }, 120_000);
  afterAll(async () => {
    for (const c of bed.children) if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
    await Promise.all(bed.children.map((c) => c.exit));
    await bed.db?.stop();
    if (bed.dir !== undefined) rmSync(bed.dir, { recursive: true, force: true });
  }, 120_000);
  return bed;
}

/** A `cefd run` configuration with no listeners, metrics on `metricsPort`, one output line and the `sql_sources` text. */
export function sqlDaemonYaml(metricsPort: number, output: string, sources: string): string {
  return [
    'state_dir: ./state',
    'decode_workers: 0',
    'listeners: []',
    'logging: { level: info, repeat_interval: 0s }',
    `metrics: { enabled: true, host: 127.0.0.1, port: ${metricsPort} }`,
    'outputs:',
    output,
    'dead_letter: { path: ./dead.ndjson }',
    'sql_sources:',
    sources,
  ].join('\n');
}

/** The file output the sql server tests write to. */
export const FILE_OUTPUT = '  - { name: events, type: file, path: ./events.ndjson, buffer: { type: disk, fsync: never } }';
