import { afterEach, beforeEach, expect, test } from 'vitest';
import fc from 'fast-check';
import { dirname } from 'node:path';
import { AssetIndex, KscIntegration, assetIdFor, decodeIpLong, encodeIpLong } from '../../src/ksc/index.js';
import { hostFromRow, platformOf, productPlatform } from '../../src/ksc/assets.js';
import { decodeFrame } from '../../src/codecs/decode.js';
import type { CefdEvent } from '../../src/event.js';
import { startKscEmulator, defaultModel, KES_WIN, NAGENT, type KscEmulator } from '../helpers/ksc-emulator/index.js';
import { memoryLogger, tempDir } from '../helpers/ksc-emulator/testkit.js';

let emu: KscEmulator;
let k: KscIntegration;
let cleanup: () => void;
let clock: Date | undefined;
const log = memoryLogger();

beforeEach(async () => {
  emu = await startKscEmulator({ model: defaultModel() });
  const t = tempDir();
  clock = undefined;
  k = KscIntegration.open({ stateDir: t.dir, env: {}, logger: log, now: () => clock ?? new Date(), client: { retries: 1, backoffMs: 5, timeoutMs: 3000 } });
  k.addConnection({ name: 'main', url: emu.url, tls: { pinSha256: emu.cert.fingerprint256 }, secret: { user: 'kuma', password: 'S3cret-KSC-pass!w0rd' } });
  cleanup = t.cleanup;
});
afterEach(async () => {
  await k.close();
  await emu.close();
  cleanup();
});

const WS42 = 'c2b22f83-307c-45aa-8533-5ffffbcc6bf1';
const SRV = '0a3f6c2e-5b1d-4e8f-a7c9-3d2e1f0a1111';

function event(line: string): CefdEvent {
  const r = decodeFrame(Buffer.from(line), false, Date.parse('2024-05-06T07:00:00Z'));
  if (!r.ok) throw new Error('fixture line did not decode');
  return r.event;
}

test('KLHST_WKS_IP_LONG decodes as a·2^24+b·2^16+c·2^8+d (OPEN-API.md §3.1)', () => {
  expect(decodeIpLong(174286280)).toBe('10.99.101.200');
  expect(decodeIpLong(167772210)).toBe('10.0.0.50');
  expect(decodeIpLong(-1062731775)).toBe('192.168.0.1'); // signed 32-bit view
  expect(decodeIpLong('3232235521')).toBe('192.168.0.1');
  expect(decodeIpLong(0)).toBeNull();
  expect(decodeIpLong(2 ** 32)).toBeNull();
  expect(decodeIpLong(1.5)).toBeNull();
  expect(decodeIpLong('x')).toBeNull();
  fc.assert(fc.property(fc.integer({ min: 1, max: 2 ** 32 - 1 }), (n) => encodeIpLong(decodeIpLong(n)!) === n));
});

test('platforms from OS names and product keys', () => {
  expect(platformOf('Microsoft Windows Server 2019 Standard')).toBe('windows');
  expect(platformOf('Ubuntu 22.04 LTS')).toBe('linux');
  expect(platformOf('Astra Linux SE 1.7')).toBe('linux');
  expect(platformOf('macOS 14')).toBe('macos');
  expect(platformOf(null, [{ product: 'KESL' }])).toBe('linux');
  expect(platformOf('', [])).toBe('other');
  expect(productPlatform('KES')).toBe('windows');
  expect(productPlatform('KESL')).toBe('linux');
  expect(productPlatform('1103')).toBeNull();
  expect(hostFromRow({ KLHST_WKS_DN: 'no id' })).toBeUndefined();
});

test('import: every host with id, names, IPs, OS, group, agent, last visible and products', async () => {
  const [r] = await k.syncAssets();
  expect(r).toMatchObject({ ok: true, hosts: 5, created: 5, updated: 0, archived: 1, removed: 0, productErrors: 0 });
  const conn = k.getConnection('main');
  expect(conn.lastSync).toMatchObject({ ok: true, hosts: 5 });
  const ws = k.getAsset(assetIdFor(conn.id, WS42))!;
  expect(ws).toMatchObject({
    tenant: 'default',
    kscHostId: WS42,
    displayName: 'WS-0142',
    fqdn: 'ws-0142.corp.example',
    domain: 'CORP',
    ips: ['10.0.12.42'],
    os: 'Microsoft Windows 10 Pro',
    platform: 'windows',
    group: { id: 1, name: 'Workstations' },
    nagent: true,
    status: 'active',
  });
  expect(Date.parse(ws.lastVisible!)).toBeGreaterThan(Date.now() - 86_400_000);
  expect(ws.products).toEqual([
    { product: NAGENT.product, version: NAGENT.version, displayName: NAGENT.displayName, build: NAGENT.build },
    { product: KES_WIN.product, version: KES_WIN.version, displayName: KES_WIN.displayName, build: KES_WIN.build },
  ]);
  expect(k.getAsset(assetIdFor(conn.id, SRV))?.ips).toEqual(['10.0.20.11', '192.168.50.11']);
  const lnx = k.listAssets().find((a) => a.displayName === 'lnx-web01')!;
  expect(lnx.platform).toBe('linux');
  expect(lnx.products.map((p) => p.product)).toEqual(['1103', 'KESL']);
  // Unseen for 40 days: imported as archived, hidden from lists by default.
  expect(k.listAssets().map((a) => a.displayName)).toEqual(['lnx-web01', 'SRV-FILE01', 'WS-0142', 'WS-0177']);
  const old = k.listAssets({ includeArchived: true }).find((a) => a.displayName === 'OLD-LAPTOP')!;
  expect(old).toMatchObject({ status: 'archived', nagent: true, products: [expect.objectContaining({ product: '1103' })] });
  expect(emu.calls.filter((c) => c.method === 'HostGroup.GetHostProducts').length).toBe(5);
  expect(emu.openAccessors()).toBe(0);
});

test('ids are stable across imports; paging follows the chunk size', async () => {
  await k.syncAssets();
  const ids = k.listAssets({ includeArchived: true }).map((a) => a.id).sort();
  const k2chunk = emu.calls.length;
  const [r] = await k.syncAssets();
  expect(r).toMatchObject({ ok: true, created: 0, updated: 5, archived: 0 });
  expect(k.listAssets({ includeArchived: true }).map((a) => a.id).sort()).toEqual(ids);
  expect(emu.calls.slice(k2chunk).filter((c) => c.method === 'ChunkAccessor.GetItemsChunk').length).toBe(1);
});

test('a host gone from KSC is archived, removed 30 days later; a returning host gets its id back', async () => {
  await k.syncAssets();
  const conn = k.getConnection('main');
  const gone = emu.model.hosts.splice(emu.model.hosts.findIndex((h) => h.id === SRV), 1)[0]!;
  const [r1] = await k.syncAssets();
  expect(r1).toMatchObject({ ok: true, hosts: 4, archived: 1, removed: 0 });
  expect(k.getAsset(assetIdFor(conn.id, SRV))?.status).toBe('archived');
  expect(k.listAssets().map((a) => a.displayName)).not.toContain('SRV-FILE01');
  // 31 days later: the archived host is removed; hosts KSC still returns but whose last
  // visible time is now older than 30 days get archived.
  clock = new Date(Date.now() + 31 * 86_400_000);
  const [r2] = await k.syncAssets();
  expect(r2.removed).toBe(2); // SRV-FILE01 and OLD-LAPTOP
  expect(k.getAsset(assetIdFor(conn.id, SRV))).toBeUndefined();
  expect(k.listAssets()).toEqual([]);
  clock = undefined;
  emu.model.hosts.push(gone);
  await k.syncAssets();
  expect(k.getAsset(assetIdFor(conn.id, SRV))).toMatchObject({ displayName: 'SRV-FILE01', status: 'active' });
});

test('a failed import archives nothing and is recorded on the connection', async () => {
  await k.syncAssets();
  emu.faults.failNext(503, { method: 'HostGroup.FindHosts', times: 5 });
  const [r] = await k.syncAssets();
  expect(r).toMatchObject({ ok: false, hosts: 0, archived: 0 });
  expect(r!.error).toMatch(/HostGroup\.FindHosts: HTTP 503/);
  expect(k.getConnection('main').lastSync).toMatchObject({ ok: false, error: r!.error });
  expect(k.listAssets()).toHaveLength(4);
  expect(log.lines.some((l) => l.includes('KSC asset import failed'))).toBe(true);
});

test('a host whose products cannot be read keeps the products already known', async () => {
  await k.syncAssets();
  emu.faults.failNext(200, { method: 'HostGroup.GetHostProducts', body: JSON.stringify({ PxgError: { code: 1150, module: 'KLSTD', message: 'Access denied' } }) });
  const [r] = await k.syncAssets();
  expect(r).toMatchObject({ ok: true, productErrors: 1 });
  expect(k.listAssets().every((a) => a.products.length === 2)).toBe(true);
});

test('disabled connections and tenants with the integration off are not imported', async () => {
  k.setConnectionDisabled('main', true);
  expect(await k.syncAssets()).toEqual([]);
  expect(await k.syncAssets({ connection: 'main' })).toEqual([expect.objectContaining({ ok: false, error: 'KSC connection "main" is disabled' })]);
  k.setConnectionDisabled('main', false);
  k.setIntegrationEnabled('default', false);
  expect(await k.syncAssets()).toEqual([]);
  k.setIntegrationEnabled('default', true);
  expect((await k.syncAssets())[0]?.ok).toBe(true);
});

test('the scheduler imports on its interval; runNow does not start a second overlapping sync', async () => {
  const s = k.startScheduler({ intervalMs: 60_000 });
  try {
    const [a, b] = await Promise.all([s.runNow(), s.runNow()]);
    expect(a).toBe(b);
    expect(emu.calls.filter((c) => c.method === 'HostGroup.FindHosts').length).toBe(1);
  } finally {
    s.stop();
  }
});

test('enrichment: assets.device/destination for a KSC event; source/destination for others; by name, FQDN, IP', async () => {
  await k.syncAssets();
  const conn = k.getConnection('main');
  const ws42 = assetIdFor(conn.id, WS42);
  const ksc = event(
    'CEF:0|KasperskyLab|SecurityCenter|13.2.0.1511|KLPRCI_TaskState|Completed successfully|1|rt=1714978961000 cs9=Managed devices/Workstations cs9Label=GroupName dhost=WS-0142 dst=10.0.12.42 cs2=KES cs2Label=ProductName cs3=11.0.0.0 cs3Label=ProductVersion cs10=Update cs10Label=TaskName cs4=17 cs4Label=TaskId cn2=4 cn2Label=TaskNewState cn1=1 cn1Label=TaskOldState',
  );
  expect(k.enrich(ksc)).toEqual({ destination: ws42, device: ws42 });
  expect(ksc['assets']).toEqual({ destination: ws42, device: ws42 });
  const fw = event('CEF:0|Vendor|FW|1|100|conn|5|shost=ws-0142.corp.example src=10.0.12.42 dst=10.0.20.11 dvchost=lnx-web01');
  const idx = k.assetIndex();
  expect(k.enrich(fw)).toEqual({ source: ws42, destination: assetIdFor(conn.id, SRV), device: idx.lookup({ host: 'LNX-WEB01' }) });
  expect(idx.lookup({ host: 'ws-0142' })).toBe(ws42);
  expect(idx.lookup({ host: 'WS-0142.corp.example.' })).toBe(ws42);
  expect(idx.lookup({ ip: '192.168.50.11' })).toBe(assetIdFor(conn.id, SRV));
  expect(idx.lookup({ host: 'old-laptop' })).toBeUndefined(); // archived
  expect(idx.lookup({ host: 'nobody', ip: '1.2.3.4' })).toBeUndefined();
  expect(idx.lookup({ host: 'ws-0142' }, 'other-tenant')).toBeUndefined();
  expect(idx.lookup({ host: 'ws-0142' }, 'default')).toBe(ws42);
  // Syslog (RFC 5424) KSC event: hdn/hip name the device.
  const sys = event('<14>1 2024-05-06T07:02:41.000Z WS-0142.corp.example KES|11.0.0.0 - KLPRCI_TaskState [event@23668 et="KLPRCI_TaskState" tdn="Update" hdn="WS-0177" hip="10.0.12.77"] Completed');
  expect(k.enrich(sys).device).toBe(assetIdFor(conn.id, '7d1e0a51-93c6-4a2b-9d0e-2b9c5d3e0177'));
  const none = event('CEF:0|Vendor|FW|1|100|conn|5|src=8.8.8.8');
  expect(k.enrich(none)).toEqual({});
  expect(none['assets']).toBeUndefined();
});

test('the enrichment index follows the store: a new host is found after the next import', async () => {
  await k.syncAssets();
  const idx = k.assetIndex();
  expect(idx.lookup({ host: 'WS-NEW' })).toBeUndefined();
  emu.model.hosts.push({ id: 'new-host-guid', displayName: 'WS-NEW', ip: '10.9.9.9', groupId: 1, nagent: true, nagentConnected: new Date(), lastVisible: new Date(), products: [NAGENT, KES_WIN] });
  await k.syncAssets();
  expect(idx.lookup({ host: 'ws-new' })).toBe(assetIdFor(k.getConnection('main').id, 'new-host-guid'));
  // Another connection writing the same file (a CLI sync) is seen through PRAGMA data_version.
  const live = new AssetIndex(k.store, { checkEveryMs: 0 });
  expect(live.lookup({ ip: '10.8.8.8' })).toBeUndefined();
  const rebuilds = live.rebuilds;
  const other = KscIntegration.open({ stateDir: dirname(k.store.path), env: {} });
  other.store.upsertAsset(other.store.resolveConnection('main'), {
    kscHostId: 'from-cli', displayName: 'CLI-HOST', fqdn: null, domain: null, ips: ['10.8.8.8'], os: null, platform: 'other', groupId: null, groupName: null, nagent: false, lastVisible: new Date().toISOString(), products: [],
  }, false);
  await other.close();
  expect(live.lookup({ ip: '10.8.8.8' })).toBe(assetIdFor(k.getConnection('main').id, 'from-cli'));
  expect(live.rebuilds).toBe(rebuilds + 1);
  expect(live.lookup({ host: 'cli-host' })).toBe(assetIdFor(k.getConnection('main').id, 'from-cli'));
  expect(live.rebuilds).toBe(rebuilds + 1);
});

test('a count that is not a number, or a chunk with no items before the count is reached, fails the import: nothing archived', async () => {
  await k.syncAssets();
  const active = k.listAssets().map((a) => a.displayName).sort();
  const answers: [string, string][] = [
    ['ChunkAccessor.GetItemsCount', '{}'],
    ['ChunkAccessor.GetItemsCount', '{"PxgRetVal":"four"}'],
    ['ChunkAccessor.GetItemsChunk', '{"pChunk":{"KLCSP_ITERATOR_ARRAY":[]}}'],
    ['ChunkAccessor.GetItemsChunk', '{}'],
  ];
  for (const [method, body] of answers) {
    emu.faults.failNext(200, { method, body });
    const [r] = await k.syncAssets();
    expect(r, `${method} ${body}`).toMatchObject({ ok: false, archived: 0 });
    expect(r!.error, `${method} ${body}`).toMatch(/not a count|returned no items/);
    expect(k.listAssets().map((a) => a.displayName).sort()).toEqual(active);
  }
  // A count KSC writes as a typed long is a count.
  emu.faults.failNext(200, { method: 'ChunkAccessor.GetItemsCount', body: `{"PxgRetVal":{"type":"long","value":${emu.model.hosts.length}}}` });
  const [ok] = await k.syncAssets();
  expect(ok).toMatchObject({ ok: true, archived: 0 });
  expect(emu.openAccessors()).toBe(0);
});

test('a KSC that returns short chunks (fewer than nCount, OPEN-API.md §2.1): every host is imported, none archived as missing', async () => {
  await k.syncAssets();
  const active = k.listAssets().map((a) => a.displayName);
  emu.faults.chunkMax = 2;
  const before = emu.calls.length;
  const [r] = await k.syncAssets();
  expect(r).toMatchObject({ ok: true, hosts: 5, created: 0, updated: 5, archived: 0 });
  expect(k.listAssets().map((a) => a.displayName)).toEqual(active);
  // 5 hosts in chunks of at most 2: three calls, each starting where the last one ended.
  expect(emu.calls.slice(before).filter((c) => c.method === 'ChunkAccessor.GetItemsChunk').map((c) => c.body['nStart'])).toEqual([0, 2, 4]);
  expect(emu.openAccessors()).toBe(0);
});

test('the import asks KSC to keep its FindHosts result set for the longest lifetime allowed (7200 s, OPEN-API.md §2.1)', async () => {
  const before = emu.calls.length;
  await k.syncAssets();
  const finds = emu.calls.slice(before).filter((c) => c.method === 'HostGroup.FindHosts');
  expect(finds.map((c) => c.body['lMaxLifeTime'])).toEqual([7200]);
  expect(emu.calls.slice(before).filter((c) => c.method === 'HostGroup.GetHostProducts').length).toBe(5);
});

test('an import that outlasts the FindHosts lifetime (OPEN-API.md §2.1: the set is destroyed) imports every host: all chunks are read and the accessor released before the products', async () => {
  await k.syncAssets();
  const known = k.listAssets().map((a) => a.displayName).sort();
  // Three chunks for the 5 hosts, so a chunk is due after products were read.
  emu.faults.chunkMax = 2;
  // Twice: a failure here would repeat at every import.
  for (let run = 0; run < 2; run++) {
    // The lifetime runs out while the first GetHostProducts is under way, as 7200 s do for
    // 50,000 hosts at 150 ms a call.
    const release = emu.faults.holdNext({ method: 'HostGroup.GetHostProducts', onHeld: () => (emu.ageAccessors(7200_000), release()) });
    const before = emu.calls.length;
    const [r] = await k.syncAssets();
    expect(r, r!.error).toMatchObject({ ok: true, hosts: 5, created: 0, updated: 5, archived: 0, productErrors: 0 });
    const calls = emu.calls.slice(before).map((c) => c.method);
    expect(calls.filter((m) => m === 'ChunkAccessor.GetItemsChunk')).toHaveLength(3);
    expect(calls.filter((m) => m === 'HostGroup.GetHostProducts')).toHaveLength(5);
    expect(calls.lastIndexOf('ChunkAccessor.Release')).toBeLessThan(calls.indexOf('HostGroup.GetHostProducts'));
    expect(k.listAssets().map((a) => a.displayName).sort()).toEqual(known);
    expect(k.getConnection('main').lastSync).toMatchObject({ ok: true, hosts: 5 });
  }
  expect(emu.openAccessors()).toBe(0);
});
