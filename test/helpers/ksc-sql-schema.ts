/**
 * KSC's event and host views on a test database: tables `ev` and `host` behind views
 * `v_akpub_ev_event` and `v_akpub_host` with the column names of docs/reference/ksc-open-api.md
 * §5, a table `fx` holding one row per KSC fixture event (test/helpers/ksc-rows.ts), and
 * `insertEvents(from, to)`: event rows nId from..to, row n a copy of fixture n mod |fx|.
 */
import type { DbServer } from './db-servers.js';
import { EVENT_COLUMNS, goldenKsc, rowFor } from './ksc-rows.js';
import type { KscObject } from '../../normalizers/ksc/types.js';

export interface KscSchema {
  fixtures: KscObject[];
  insertEvents(from: number, to: number): Promise<void>;
}


export async function createKscSchema(db: DbServer): Promise<KscSchema> {
  const pg = db.kind === 'postgres';
  const q = (s: string) => (pg ? `"${s}"` : `\`${s}\``);
  const ts = pg ? 'timestamp(3)' : 'datetime(3)';
  const colDefs = EVENT_COLUMNS.map((c) => `${q(c)} ${c === 'nId' ? 'bigint PRIMARY KEY' : c === 'nHostId' ? 'int' : c.startsWith('tm') ? ts : 'text'}`);
  await db.exec(`CREATE TABLE ev (${colDefs.join(', ')})`);
  await db.exec(`CREATE TABLE fx (k int PRIMARY KEY, ${colDefs.filter((d) => !d.startsWith(q('nId'))).join(', ')})`);
  await db.exec(`CREATE TABLE host (${q('nId')} int PRIMARY KEY, ${q('wstrDisplayName')} text, ${q('wstrDnsName')} text, ${q('nIp')} int)`);
  await db.exec(`CREATE VIEW v_akpub_ev_event AS SELECT * FROM ev`);
  await db.exec(`CREATE VIEW v_akpub_host AS SELECT * FROM host`);
  const fixtures = goldenKsc().map((g) => g.ksc);
  const fxCols = EVENT_COLUMNS.filter((c) => c !== 'nId');
  for (let k = 0; k < fixtures.length; k++) {
    const row = rowFor(fixtures[k]!, 0, k + 1);
    const vals = fxCols.map((c) => (c.startsWith('tm') ? (row[c] as string).replace('T', ' ').replace('Z', '') : row[c]));
    const ph = (i: number) => (pg ? `$${i}` : '?');
    await db.exec(`INSERT INTO fx (k, ${fxCols.map(q).join(', ')}) VALUES (${[k, ...vals].map((_, i) => ph(i + 1)).join(', ')})`, [k, ...vals]);
    await db.exec(`INSERT INTO host (${q('nId')}, ${q('wstrDisplayName')}, ${q('wstrDnsName')}, ${q('nIp')}) VALUES (${ph(1)}, ${ph(2)}, ${ph(3)}, ${ph(4)})`, [k + 1, row['wstrHostDisplayName'], row['wstrDnsName'], row['nIp']]);
  }
  const n = fixtures.length;
  return {
    fixtures,
    async insertEvents(from, to) {
      const series = pg ? `generate_series(${from}, ${to}) AS s(g)` : `seq_${from}_to_${to} AS s`;
      const g = pg ? 's.g' : 's.seq';
      await db.exec(`INSERT INTO ev (${EVENT_COLUMNS.map(q).join(', ')}) SELECT ${g}, ${fxCols.map((c) => `fx.${q(c)}`).join(', ')} FROM ${series} JOIN fx ON fx.k = ${g} % ${n}`);
    },
  };
}
