/**
 * `cefd sql test` (src/sources/sql/cli.ts) with a stand-in SQL Server driver whose
 * connection is lost mid-query and whose close() never settles (tedious emits `end` only
 * once: drivers.ts closeTedious): the next source is still tested and the exit code is 1.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { sqlTest } from '../../../src/sources/sql/cli.js';
import { DRIVERS, type SqlDriver } from '../../../src/sources/sql/drivers.js';
import { tempDir } from '../../helpers/temp.js';

const real = DRIVERS.mssql;
afterEach(() => {
  DRIVERS.mssql = real;
});

test('a connection lost mid-query whose close never settles: every source tested, exit 1', async () => {
  const connected: string[] = [];
  const stub: SqlDriver = {
    kind: 'mssql',
    module: 'tedious',
    connect: async (o) => {
      connected.push(o.target.host);
      return {
        query: () => Promise.reject(Object.assign(new Error('Connection lost - read ECONNRESET'), { code: 'ESOCKET' })),
        close: () => new Promise<void>(() => undefined),
      };
    },
  };
  DRIVERS.mssql = stub;
  const dir = tempDir('cefd-sqlcli-');
  const cfg = join(dir, 'cefd.yaml');
  const source = (name: string, host: string) => [`  - name: ${name}`, `    url: "sqlserver://u:pw@${host}:1433?database=KAV"`, '    normalizers: []'];
  writeFileSync(cfg, ['state_dir: ./state', 'listeners: []', 'outputs:', '  - { name: o, type: stdout }', 'sql_sources:', ...source('a', 'ksc-a'), ...source('b', 'ksc-b')].join('\n') + '\n');
  let err = '';
  const code = await sqlTest(cfg, undefined, 3, () => undefined, (t) => (err += t));
  expect(connected).toEqual(['ksc-a', 'ksc-b']);
  expect(err).toContain('sql source a: connect error: Connection lost');
  expect(err).toContain('sql source b: connect error: Connection lost');
  expect(code).toBe(1);
}, 20_000);
