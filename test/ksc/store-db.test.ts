import { afterEach, expect, test } from 'vitest';
import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  KscStore,
  SCHEMA_VERSION,
  MIGRATIONS,
  STORE_FILE,
  assetIdFor,
  codePointLength,
  normalizeConnectionUrl,
  validateConnectionName,
  type ImportedHost,
} from '../../src/ksc/store.js';
import { KscConflictError, KscInputError, KscNotFoundError } from '../../src/ksc/errors.js';
import { tempDir } from '../helpers/ksc-emulator/testkit.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length > 0) cleanups.pop()!();
});

function open(now?: () => Date): { store: KscStore; dir: string } {
  const t = tempDir();
  const store = new KscStore(t.dir, now !== undefined ? { now } : {});
  cleanups.push(() => {
    store.close();
    t.cleanup();
  });
  return { store, dir: t.dir };
}

function host(id: string, o: Partial<ImportedHost> = {}): ImportedHost {
  return {
    kscHostId: id, displayName: id.toUpperCase(), fqdn: `${id}.corp.example`, domain: 'CORP', ips: ['10.0.0.1'], os: 'Microsoft Windows 10 Pro',
    platform: 'windows', groupId: 1, groupName: 'Workstations', nagent: true, lastVisible: new Date().toISOString(), products: [], ...o,
  };
}

test('a new store: WAL, schema version, the default tenant with its integration on', () => {
  const { store, dir } = open();
  expect(store.path).toBe(join(dir, STORE_FILE));
  expect(String(store.db.pragma('journal_mode', { simple: true }))).toBe('wal');
  expect(store.schemaVersion()).toBe(SCHEMA_VERSION);
  expect(store.listTenants()).toEqual([expect.objectContaining({ name: 'default', integrationEnabled: true })]);
  expect(store.setIntegrationEnabled('default', false).integrationEnabled).toBe(false);
  // The switch of a tenant that does not exist is an error: nothing is made.
  expect(() => store.setIntegrationEnabled('blue', true)).toThrow(KscNotFoundError);
  expect(store.listTenants().map((t) => t.name)).toEqual(['default']);
  store.createTenant('blue', { integrationEnabled: false });
  expect(store.setIntegrationEnabled('blue', true)).toMatchObject({ name: 'blue', integrationEnabled: true });
  // A connection makes its tenant only under the rules of createTenant ...
  expect(() => store.addConnection({ tenant: 'red/x', name: 'main', url: 'ksc:1' })).toThrow(/a tenant name must have 1 to 64 letters/);
  expect(store.listTenants().map((t) => t.name)).toEqual(['blue', 'default']);
  // ... but a tenant an older cefd made with a looser name is still found.
  store.db.prepare("INSERT INTO tenants (name, integration_enabled, created_at) VALUES ('old/name', 1, 'x')").run();
  expect(store.addConnection({ tenant: 'old/name', name: 'main', url: 'ksc:1' }).tenant).toBe('old/name');
});

test('reopening keeps the data; a store from a newer cefd is refused', () => {
  const t = tempDir();
  cleanups.push(t.cleanup);
  const a = new KscStore(t.dir);
  const c = a.addConnection({ name: 'main', url: 'ksc.corp.example' });
  a.close();
  const b = new KscStore(t.dir);
  expect(b.getConnection(c.id)?.name).toBe('main');
  b.close();
  const raw = new Database(join(t.dir, STORE_FILE));
  raw.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
  raw.close();
  expect(() => new KscStore(t.dir)).toThrow(/newer than this cefd knows/);
});

test('connection names: 1 to 128 Unicode characters, counted in code points', () => {
  const emoji128 = '🛡'.repeat(128);
  expect(emoji128.length).toBe(256);
  expect(codePointLength(emoji128)).toBe(128);
  expect(validateConnectionName(emoji128)).toBe(emoji128);
  expect(() => validateConnectionName('🛡'.repeat(129))).toThrow(/1 to 128 characters \(has 129\)/);
  expect(validateConnectionName('x'.repeat(128))).toHaveLength(128);
  expect(() => validateConnectionName('x'.repeat(129))).toThrow(KscInputError);
  expect(() => validateConnectionName('')).toThrow(KscInputError);
  expect(() => validateConnectionName('   ')).toThrow(KscInputError);
  expect(() => validateConnectionName('a\nb')).toThrow(/control/);
  expect(validateConnectionName('  Главный KSC  ')).toBe('Главный KSC');
  expect(() => validateConnectionName(42)).toThrow(KscInputError);
});

test.each([
  ['ksc.corp.example', 'ksc.corp.example:13299'],
  ['KSC.Corp.Example:13291', 'ksc.corp.example:13291'],
  ['10.0.0.1:13299', '10.0.0.1:13299'],
  ['10.0.0.1', '10.0.0.1:13299'],
  ['https://ksc:13299/', 'ksc:13299'],
  ['ksc-01', 'ksc-01:13299'],
  ['255.255.255.255:1', '255.255.255.255:1'],
])('URL %s is accepted as %s', (input, want) => {
  expect(normalizeConnectionUrl(input)).toBe(want);
});

test.each(['999.1.1.1:13299', '10.0.0:13299', 'ksc:0', 'ksc:70000', 'ksc:port', 'a_b:1', '-ksc:1', 'ksc-:1', '[::1]:13299', '', 'ksc.local:13299/path', 'http://ksc:1', 'host.123:1', 'a b'])(
  'URL %j is refused',
  (input) => {
    expect(() => normalizeConnectionUrl(input)).toThrow(KscInputError);
  },
);

test('connections: unique name per tenant, rename conflicts, TLS settings normalized', () => {
  const { store } = open();
  const pinColons = 'AB:'.repeat(31) + 'AB';
  const a = store.addConnection({ name: 'main', url: 'ksc.corp.example', tls: { pinSha256: pinColons } });
  expect(a).toMatchObject({ tenant: 'default', name: 'main', url: 'ksc.corp.example:13299', disabled: false, tls: { pinSha256: 'ab'.repeat(32) }, lastSync: null });
  expect(() => store.addConnection({ name: 'main', url: 'other:1' })).toThrow(KscConflictError);
  const b = store.addConnection({ tenant: 'blue', name: 'main', url: 'other:1', disabled: true, tls: { caFile: 'certs/ca.pem' } });
  expect(b.tls.caFile).toMatch(/^\/.*certs\/ca\.pem$/);
  expect(b.disabled).toBe(true);
  const c = store.addConnection({ name: 'second', url: '10.1.1.1' });
  expect(() => store.updateConnection(c.id, { name: 'main' })).toThrow(KscConflictError);
  expect(store.updateConnection(c.id, { name: 'third', disabled: true }).name).toBe('third');
  expect(() => store.addConnection({ name: 'x', url: 'ksc', tls: { pinSha256: 'nope' } })).toThrow(KscInputError);
  expect(store.listConnections({ tenant: 'default' }).map((x) => x.name)).toEqual(['main', 'third']);
  expect(store.resolveConnection('main').id).toBe(a.id);
  expect(store.resolveConnection('main', 'blue').id).toBe(b.id);
  expect(store.resolveConnection(b.id).name).toBe('main');
  expect(() => store.resolveConnection('nope')).toThrow(KscNotFoundError);
  expect(() => store.updateConnection('no-such-id', {})).toThrow(KscNotFoundError);
});

test('asset ids are stable: derived from the connection and KLHST_WKS_HOSTNAME', () => {
  const id = assetIdFor('conn-1', 'c2b22f83-307c-45aa-8533-5ffffbcc6bf1');
  expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  expect(assetIdFor('conn-1', 'c2b22f83-307c-45aa-8533-5ffffbcc6bf1')).toBe(id);
  expect(assetIdFor('conn-2', 'c2b22f83-307c-45aa-8533-5ffffbcc6bf1')).not.toBe(id);
  const { store } = open();
  const c = store.addConnection({ name: 'main', url: 'ksc' });
  const r1 = store.upsertAsset(c, host('ws1'), false);
  expect(r1.created).toBe(true);
  expect(r1.asset.id).toBe(assetIdFor(c.id, 'ws1'));
  const r2 = store.upsertAsset(c, host('ws1', { ips: ['10.0.0.2'] }), false);
  expect(r2).toMatchObject({ created: false, asset: { id: r1.asset.id, ips: ['10.0.0.2'] } });
});

test('assets: archive keeps its first time, products kept when unknown, missing ones archived, old archives removed', () => {
  let now = new Date('2024-05-01T00:00:00Z');
  const { store } = open(() => now);
  const c = store.addConnection({ name: 'main', url: 'ksc' });
  store.upsertAsset(c, host('a', { products: [{ product: 'KES', version: '11.0.0.0' }] }), false);
  store.upsertAsset(c, host('b'), false);
  now = new Date('2024-05-02T00:00:00Z');
  const started = now.toISOString();
  now = new Date('2024-05-02T00:00:01Z');
  const a = store.upsertAsset(c, host('a', { products: undefined }), true);
  expect(a.asset).toMatchObject({ status: 'archived', archivedAt: '2024-05-02T00:00:01.000Z', products: [{ product: 'KES', version: '11.0.0.0' }] });
  expect(a.wasArchived).toBe(false);
  now = new Date('2024-05-03T00:00:00Z');
  expect(store.upsertAsset(c, host('a', { products: undefined }), true).asset.archivedAt).toBe('2024-05-02T00:00:01.000Z');
  expect(store.archiveMissing(c.id, started)).toBe(1); // b
  expect(store.getAsset(assetIdFor(c.id, 'b'))?.status).toBe('archived');
  expect(store.listAssets().map((x) => x.kscHostId)).toEqual([]);
  expect(store.listAssets({ includeArchived: true })).toHaveLength(2);
  expect(store.removeArchivedBefore(c.id, '2024-05-02T12:00:00Z')).toBe(1); // a, archived on 05-02
  expect(store.listAssets({ includeArchived: true }).map((x) => x.kscHostId)).toEqual(['b']);
  // Back in KSC: same id, active again.
  const back = store.upsertAsset(c, host('b'), false);
  expect(back.asset).toMatchObject({ id: assetIdFor(c.id, 'b'), status: 'active', archivedAt: null });
});

test('task runs: running check, cool-down, stale runs, and their expiry', () => {
  let now = new Date('2024-05-01T10:00:00Z');
  const { store } = open(() => now);
  const c = store.addConnection({ name: 'main', url: 'ksc' });
  const asset = store.upsertAsset(c, host('a'), false).asset;
  expect(store.isRunning('22', asset.id)).toBe(false);
  const run = store.createTaskRun({ tenant: 'default', connectionId: c.id, assetId: asset.id, taskId: '22', taskName: 'KUMA Update', origin: 'rule', rule: 'r1' });
  expect(run).toMatchObject({ state: 'requested', requestedAt: '2024-05-01T10:00:00.000Z', origin: 'rule', rule: 'r1', kscState: null });
  expect(store.isRunning('22', asset.id)).toBe(true);
  expect(store.isRunning('21', asset.id)).toBe(false);
  expect(store.inCooldown('22', asset.id, 60_000)).toBe(true);
  expect(store.inCooldown('22', asset.id, 0)).toBe(false);
  now = new Date('2024-05-01T10:00:30Z');
  const running = store.updateTaskRun(run.id, { state: 'running', kscState: 1, startedAt: now.toISOString() });
  expect(running).toMatchObject({ state: 'running', kscStateName: 'running', startedAt: '2024-05-01T10:00:30.000Z' });
  now = new Date('2024-05-01T10:02:00Z');
  expect(store.inCooldown('22', asset.id, 60_000)).toBe(false);
  expect(store.isRunning('22', asset.id, { staleAfterMs: 60_000 })).toBe(false);
  expect(store.isRunning('22', asset.id)).toBe(true);
  store.updateTaskRun(run.id, { state: 'completed', kscState: 4, finishedAt: now.toISOString() });
  expect(store.isRunning('22', asset.id)).toBe(false);
  expect(store.listTaskRuns({ assetId: asset.id })[0]).toMatchObject({ state: 'completed', kscStateName: 'completed', finishedAt: '2024-05-01T10:02:00.000Z' });
  const r2 = store.createTaskRun({ tenant: 'default', connectionId: c.id, assetId: asset.id, taskId: '21', taskName: 'KUMA Scan', origin: 'manual' });
  now = new Date('2024-05-02T12:00:00Z');
  expect(store.expireStaleRuns(24 * 3_600_000)).toBe(1);
  expect(store.getTaskRun(r2.id)).toMatchObject({ state: 'failed', error: 'no task-state event from KSC in time' });
  expect(store.listTaskRuns({ activeOnly: true })).toEqual([]);
  expect(store.listTaskRuns({ taskId: '22' })).toHaveLength(1);
});

test('deleting a connection removes its assets, task cache and runs', () => {
  const { store } = open();
  const c = store.addConnection({ name: 'main', url: 'ksc' });
  const other = store.addConnection({ name: 'other', url: 'ksc2' });
  const a = store.upsertAsset(c, host('a'), false).asset;
  store.upsertAsset(other, host('z'), false);
  store.replaceTasks(c.id, [{ taskId: '22', displayName: 'KUMA Update', taskType: 'Updater', product: 'KES', version: '11.0.0.0', groupId: 1, platform: 'windows' }]);
  store.createTaskRun({ tenant: 'default', connectionId: c.id, assetId: a.id, taskId: '22', taskName: 'KUMA Update', origin: 'manual' });
  const stamp = store.changeStamp();
  expect(store.deleteConnection(c.id)).toBe(true);
  expect(store.changeStamp()).not.toBe(stamp);
  expect(store.listAssets({ includeArchived: true }).map((x) => x.kscHostId)).toEqual(['z']);
  expect(store.listTasks(c.id)).toEqual([]);
  expect(store.listTaskRuns()).toEqual([]);
  expect(store.deleteConnection(c.id)).toBe(false);
});

test('the task cache is replaced per connection and found by id across connections', () => {
  const { store } = open();
  const c = store.addConnection({ name: 'main', url: 'ksc' });
  store.replaceTasks(c.id, [
    { taskId: '22', displayName: 'KUMA Update', taskType: null, product: 'KES', version: null, groupId: 1, platform: 'windows' },
    { taskId: '31', displayName: 'kuma scan linux', taskType: null, product: 'KESL', version: null, groupId: 3, platform: 'linux' },
  ]);
  expect(store.listTasks(c.id).map((t) => t.taskId)).toEqual(['31', '22']);
  store.replaceTasks(c.id, [{ taskId: '31', displayName: 'kuma scan linux', taskType: null, product: 'KESL', version: null, groupId: 3, platform: 'linux' }]);
  expect(store.findTasksById('22')).toEqual([]);
  expect(store.findTasksById('31')[0]).toMatchObject({ connectionId: c.id, platform: 'linux' });
});

test('device lookups for task-state events: by name (indexed, archived too), else by IP', () => {
  const { store } = open();
  const c = store.addConnection({ name: 'main', url: 'ksc:13299' });
  store.upsertAsset(c, host('ws1', { displayName: 'WS-0001', fqdn: 'ws-0001.corp.example', ips: ['10.0.0.1'] }), false);
  store.upsertAsset(c, host('ws2', { displayName: 'srv.branch', fqdn: null, ips: ['10.0.0.2', '10.0.0.22'] }), true);
  store.upsertAsset(c, host('ws3', { displayName: 'WS-00011', fqdn: 'ws-00011.corp.example', ips: ['10.0.0.11'] }), false);
  const names = (xs: { displayName: string | null }[]) => xs.map((a) => a.displayName).sort();
  expect(names(store.findAssetsByName('ws-0001'))).toEqual(['WS-0001']);
  expect(names(store.findAssetsByName('WS-0001.CORP.EXAMPLE'))).toEqual(['WS-0001']);
  expect(names(store.findAssetsByName('srv.other.example'))).toEqual(['srv.branch']);
  // Candidates only: the caller's rule then refuses a display name's first label for a bare name.
  expect(names(store.findAssetsByName('srv'))).toEqual(['srv.branch']);
  expect(names(store.findAssetsByName('other'))).toEqual([]);
  expect(store.findAssetsByName(' ')).toEqual([]);
  expect(names(store.findAssetsByIp('10.0.0.2'))).toEqual(['srv.branch']);
  expect(names(store.findAssetsByIp('10.0.0.1'))).toEqual(['WS-0001']);
  expect(store.findAssetsByIp('10.0.0')).toEqual([]);
  expect(store.schemaVersion()).toBe(SCHEMA_VERSION);
});

test('schema 2 → 3: existing assets get their seq and IP lookup rows; attribute data and MACs start empty', () => {
  const t = tempDir();
  cleanups.push(t.cleanup);
  const raw = new Database(join(t.dir, STORE_FILE));
  raw.exec(MIGRATIONS[0]!);
  raw.exec(MIGRATIONS[1]!);
  raw.pragma('user_version = 2');
  raw.exec(`INSERT INTO tenants VALUES ('default', 1, '2024-01-01T00:00:00Z');
    INSERT INTO connections (id, tenant, name, url, created_at, updated_at) VALUES ('c1', 'default', 'main', 'ksc:13299', 'x', 'x');
    INSERT INTO assets (id, connection_id, tenant, ksc_host_id, display_name, fqdn, ips, first_imported_at, last_imported_at)
      VALUES ('a1', 'c1', 'default', 'h1', 'WS-1', 'ws-1.corp', '["10.0.0.1"]', 'x', 'x'),
             ('a2', 'c1', 'default', 'h2', 'WS-2', null, '["10.0.0.2","10.0.0.3"]', 'x', 'x');`);
  raw.close();
  const store = new KscStore(t.dir);
  cleanups.push(() => store.close());
  expect(store.schemaVersion()).toBe(3);
  expect(store.getAsset('a1')).toMatchObject({ macs: [], owners: [], hardware: {}, protection: {}, nagentConnectedAt: null, attributes: { importedAt: null, software: 0, vulnerabilities: 0 } });
  const cands = store.findIdentityCandidates('c1', { ips: ['10.0.0.3'], macs: [], fqdn: 'ws-1.corp' }, 'new');
  expect(cands.map((a) => a.id).sort()).toEqual(['a1', 'a2']);
  // Removing an asset removes its lookup rows and attribute rows (foreign keys on seq).
  store.replaceAttributes('a2', { software: [{ name: 'X', version: '1', publisher: 'P', installDate: null }], vulnerabilities: [] });
  store.db.prepare('DELETE FROM assets WHERE id = ?').run('a2');
  expect(store.db.prepare('SELECT COUNT(*) FROM asset_addrs').pluck().get()).toBe(1);
  expect(store.db.prepare('SELECT COUNT(*) FROM asset_software').pluck().get()).toBe(0);
});

test('two processes opening an old store at the same moment (the CLI and the daemon): both open it, the migration runs once', async () => {
  // The compiled store (npm test builds first): each child opens it at the same instant.
  const storeJs = pathToFileURL(join(import.meta.dirname, '..', '..', 'dist', 'src', 'ksc', 'store.js')).href;
  const child = `const { KscStore } = await import(${JSON.stringify(storeJs)});
const at = Number(process.argv[2]);
while (Date.now() < at) {}
try { const s = new KscStore(process.argv[1]); console.log('ok ' + s.schemaVersion()); s.close(); } catch (e) { console.log('FAIL ' + e.message); }`;
  const outs: string[] = [];
  for (let round = 0; round < 8; round++) {
    const t = tempDir();
    cleanups.push(t.cleanup);
    const raw = new Database(join(t.dir, STORE_FILE));
    raw.pragma('journal_mode = WAL');
    raw.exec(MIGRATIONS[0]!);
    raw.exec(MIGRATIONS[1]!);
    raw.pragma('user_version = 2');
    raw.close();
    const at = Date.now() + 700;
    const one = () =>
      new Promise<string>((resolve) => {
        const c = spawn(process.execPath, ['--input-type=module', '-e', child, t.dir, String(at)], { stdio: ['ignore', 'pipe', 'inherit'] });
        let out = '';
        c.stdout.on('data', (d: Buffer) => (out += d.toString()));
        c.on('close', () => resolve(out.trim()));
      });
    outs.push(...(await Promise.all([one(), one()])));
  }
  expect(outs).toEqual(Array.from({ length: 16 }, () => `ok ${SCHEMA_VERSION}`));
}, 60_000);
