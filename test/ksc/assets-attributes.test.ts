import { afterEach, beforeEach, expect, test } from 'vitest';
import { KscIntegration, assetIdFor, KscClient } from '../../src/ksc/index.js';
import { parseInstallDate } from '../../src/ksc/client.js';
import { vulnerabilityFromRow } from '../../src/ksc/attributes.js';
import { startKscEmulator, defaultModel, type KscEmulator, type EmuVulnerability } from '../helpers/ksc-emulator/index.js';
import { memoryLogger, tempDir } from '../helpers/ksc-emulator/testkit.js';

let emu: KscEmulator;
let k: KscIntegration;
let cleanup: () => void;
let log = memoryLogger();

async function open(o: { concurrency?: number; budgetMs?: number; timeoutMs?: number } = {}): Promise<void> {
  await k?.close();
  k = KscIntegration.open({
    stateDir: dir,
    env: {},
    logger: log,
    client: { retries: 1, backoffMs: 5, timeoutMs: o.timeoutMs ?? 3000 },
    attributes: { concurrency: o.concurrency ?? 2, ...(o.budgetMs !== undefined ? { budgetMs: o.budgetMs } : {}), pageSize: 2 },
  });
}

let dir: string;
beforeEach(async () => {
  log = memoryLogger();
  emu = await startKscEmulator({ model: defaultModel() });
  const t = tempDir();
  dir = t.dir;
  cleanup = t.cleanup;
  k = undefined as unknown as KscIntegration;
  await open();
  k.addConnection({ name: 'main', url: emu.url, tls: { pinSha256: emu.cert.fingerprint256 }, secret: { user: 'kuma', password: 'S3cret-KSC-pass!w0rd' } });
  await k.syncAssets();
});
afterEach(async () => {
  await emu.close();
  await k.close();
  cleanup();
});

const WS42 = 'c2b22f83-307c-45aa-8533-5ffffbcc6bf1';
const WS77 = '7d1e0a51-93c6-4a2b-9d0e-2b9c5d3e0177';
const LNX = 'e4b8d2f0-1c3a-4b5d-8e9f-0a1b2c3d4e5f';
const id = (host: string): string => assetIdFor(k.getConnection('main').id, host);
const inventoryHosts = (from = 0): string[] => emu.calls.slice(from).filter((c) => c.method === 'InventoryApi.GetHostInvProducts').map((c) => String(c.body['szwHostId']));

test('InstallDate YYYYMMDD and vulnerability rows', () => {
  expect(parseInstallDate('20240502')).toBe('2024-05-02');
  expect(parseInstallDate('20240231')).toBeNull();
  expect(parseInstallDate('')).toBeNull();
  expect(parseInstallDate(20240502)).toBeNull();
  expect(parseInstallDate('2024-05-02T00:00:00.000Z')).toBe('2024-05-02');
  expect(vulnerabilityFromRow({ VulnerabilityId: 'KLA1', SeverityRating: 2, ProductName: 'X', ProductVersion: '1.0', DescriptionURL: 'https://x/', DetectionTime: '2024-01-01T00:00:00.000Z', bIgnore: true })).toEqual({
    id: 'KLA1', severity: 2, product: 'X 1.0', url: 'https://x/', detectedAt: '2024-01-01T00:00:00.000Z', ignored: true,
  });
  expect(vulnerabilityFromRow({ strVulnUid: 'u-1' })).toMatchObject({ id: 'u-1', severity: null, product: null, url: null, ignored: false });
  expect(vulnerabilityFromRow({ SeverityRating: 1 })).toBeUndefined();
});

test('attribute import: software, patches, vulnerabilities and owners of Windows devices; a Linux device has none', async () => {
  const [r] = await k.syncAttributes();
  expect(r).toMatchObject({ ok: true, due: 4, imported: 4, failed: 0, remaining: 0, budgetExhausted: false });
  const d = k.getAssetDetail(id(WS42))!;
  expect(d.software).toEqual([
    { name: '7-Zip 23.01 (x64)', version: '23.01', publisher: 'Igor Pavlov', installDate: '2023-11-15' },
    { name: 'Microsoft Edge', version: '124.0.2478.80', publisher: 'Microsoft Corporation', installDate: '2024-05-02' },
    { name: 'Mozilla Firefox (x64 en-US)', version: '115.0', publisher: 'Mozilla', installDate: '2023-07-10' },
  ]);
  expect(d.patches).toEqual([{ name: 'Security Update for Windows (KB5036892)', version: '1', publisher: 'Microsoft Corporation', installDate: '2024-04-10' }]);
  expect(d.vulnerabilities).toEqual([
    { id: 'KLA10001', severity: 3, product: 'Mozilla Firefox 115.0', url: 'https://threats.kaspersky.com/en/vulnerability/KLA10001/', detectedAt: '2024-04-20T10:00:00.000Z', ignored: false },
    { id: 'KLA10002', severity: 1, product: 'Mozilla Firefox 115.0', url: 'https://threats.kaspersky.com/en/vulnerability/KLA10002/', detectedAt: '2024-04-21T10:00:00.000Z', ignored: true },
  ]);
  expect(d.asset.owners).toEqual([{ name: 'CORP\\j.smith', id: 'S-1-5-21-1004' }]);
  expect(d.asset.attributes).toMatchObject({ software: 3, patches: 1, vulnerabilities: 2, error: null });
  expect(d.asset.attributes.importedAt).not.toBeNull();
  const lnx = k.getAssetDetail(id(LNX))!;
  expect(lnx).toMatchObject({ software: [], patches: [], vulnerabilities: [] });
  expect(lnx.asset.attributes).toMatchObject({ software: 0, vulnerabilities: 0, error: null });
  // No inventory call for the Linux device; archived devices are left alone.
  expect(inventoryHosts()).not.toContain(LNX);
  expect(inventoryHosts()).not.toContain('f0f0f0f0-0000-4000-8000-00000000dead');
  expect(emu.openViewIterators()).toBe(0);
  // A second import replaces, it does not add up; a program removed in KSC disappears.
  emu.model.hosts.find((h) => h.id === WS42)!.software!.pop();
  await k.syncAttributes();
  expect(k.getAssetDetail(id(WS42))!.software.map((s) => s.name)).toEqual(['7-Zip 23.01 (x64)', 'Microsoft Edge']);
});

test('a vulnerability view that pages: every record is read, the iterator released', async () => {
  const many: EmuVulnerability[] = Array.from({ length: 7 }, (_, i) => ({ id: `KLA2000${i}`, severity: i % 4, product: 'App', url: `https://v/${i}`, detected: new Date('2024-01-01T00:00:00Z') }));
  emu.model.hosts.find((h) => h.id === WS77)!.vulnerabilities = many;
  emu.faults.srvViewPageMax = 1; // the server returns fewer records than asked
  const [r] = await k.syncAttributes({ connection: 'main' });
  expect(r).toMatchObject({ ok: true, failed: 0 });
  expect(k.getAssetDetail(id(WS77))!.vulnerabilities.map((v) => v.id).sort()).toEqual(many.map((v) => v.id).sort());
  const ranges = emu.calls.filter((c) => c.method === 'SrvView.GetRecordRange');
  expect(ranges.length).toBeGreaterThanOrEqual(7 + 2); // 7 for WS-0177, one each for the 2 of WS-0142
  expect(emu.openViewIterators()).toBe(0);
});

test('a failing host keeps its previous data and is retried first by the next run', async () => {
  await k.syncAttributes();
  const before = k.getAssetDetail(id(WS42))!;
  emu.faults.failHosts.add(WS42);
  emu.model.hosts.find((h) => h.id === WS42)!.software = [];
  const [r] = await k.syncAttributes();
  expect(r).toMatchObject({ ok: true, imported: 3, failed: 1 });
  const after = k.getAssetDetail(id(WS42))!;
  expect(after.software).toEqual(before.software);
  expect(after.vulnerabilities).toEqual(before.vulnerabilities);
  expect(after.asset.owners).toEqual(before.asset.owners);
  expect(after.asset.attributes.error).toMatch(/not (reachable|available)/);
  expect(after.asset.attributes.importedAt).toBe(before.asset.attributes.importedAt);
  expect(log.lines.some((l) => l.includes('cannot read the attributes of a KSC device'))).toBe(true);
  // The host answers again: the next scheduled check (devices not done for an hour, or
  // failed) takes only it.
  emu.faults.failHosts.clear();
  const from = emu.calls.length;
  const [r2] = await k.syncAttributes({ olderThanMs: 3_600_000 });
  expect(r2).toMatchObject({ ok: true, due: 1, imported: 1, failed: 0 });
  expect(inventoryHosts(from)).toEqual([WS42]);
  expect(k.getAssetDetail(id(WS42))!.software).toEqual([]);
  expect(k.getAssetDetail(id(WS42))!.asset.attributes.error).toBeNull();
});

test('a slow inventory call and a time budget: the run stops, the next one resumes with the devices not reached', async () => {
  await open({ concurrency: 1, budgetMs: 1 });
  emu.faults.methodDelayMs['InventoryApi.GetHostInvProducts'] = 50;
  const [r] = await k.syncAttributes();
  expect(r).toMatchObject({ ok: true, budgetExhausted: true });
  expect(r!.imported).toBe(1); // one worker: its first device, then the budget is spent
  expect(r!.remaining).toBe(r!.due - r!.imported - r!.failed);
  expect(r!.remaining).toBeGreaterThan(0);
  const notReached = k.listAssets().filter((a) => a.attributes.triedAt === null).map((a) => a.kscHostId);
  expect(notReached).toHaveLength(r!.remaining);
  await open({ concurrency: 1 });
  const from = emu.calls.length;
  const [r2] = await k.syncAttributes({ olderThanMs: 3_600_000 });
  expect(r2).toMatchObject({ ok: true, due: notReached.length, imported: notReached.length, remaining: 0 });
  const windowsNotReached = notReached.filter((h) => h !== LNX);
  expect(inventoryHosts(from).sort()).toEqual(windowsNotReached.sort());
});

test('a timed-out inventory call fails that device only', async () => {
  await open({ concurrency: 1, timeoutMs: 200 });
  emu.faults.methodDelayMs['InventoryApi.GetHostInvProducts'] = 400;
  const [r] = await k.syncAttributes();
  expect(r).toMatchObject({ ok: true, imported: 1, failed: 3 }); // the Linux device needs no inventory call
  emu.faults.methodDelayMs = {};
});

test('workers: at most `concurrency` KSC sessions; the hourly import runs beside a stuck attribute import', async () => {
  await k.syncAttributes();
  const sockets = new Set(emu.calls.filter((c) => c.method.startsWith('InventoryApi.')).map((c) => c.socket));
  expect(sockets.size).toBe(2);
  const hourlySockets = new Set(emu.calls.filter((c) => c.method === 'HostGroup.FindHosts').map((c) => c.socket));
  for (const s of hourlySockets) expect(sockets.has(s)).toBe(false);
  // An attribute import stuck on KSC does not hold up the hourly import.
  emu.faults.methodDelayMs['InventoryApi.GetHostInvProducts'] = 60_000;
  let attrDone = false;
  const attr = k.syncAttributes().then((x) => {
    attrDone = true;
    return x;
  });
  const [hourly] = await k.syncAssets();
  expect(hourly).toMatchObject({ ok: true, hosts: 5 });
  expect(attrDone).toBe(false);
  // A second request joins the running import instead of starting another.
  const joined = k.syncAttributes();
  emu.faults.methodDelayMs = {};
  emu.dropConnections();
  const [a, b] = await Promise.all([attr, joined]);
  expect(b).toEqual(a);
});

test('the client reads inventory and pages a SrvView directly', async () => {
  const c = new KscClient({ url: emu.url, tls: { pinSha256: emu.cert.fingerprint256 }, credentials: { user: 'kuma', password: 'S3cret-KSC-pass!w0rd' }, retries: 0 });
  try {
    expect((await c.getHostInventory(WS42)).map((x) => x.name)).toContain('Microsoft Edge');
    expect(await c.getHostInventory(LNX)).toEqual([]);
    emu.faults.srvViewPageMax = 1;
    const pages: number[] = [];
    for await (const p of c.srvViewPaged('v_vapm_vulnerability', '', ['VulnerabilityId'], { pageSize: 10 })) pages.push(p.length);
    expect(pages).toEqual([1, 1]);
    await expect(c.getHostInventory('no-such-host')).rejects.toMatchObject({ code: 'ksc_pxg_error' });
    await expect(async () => {
      for await (const _ of c.srvViewPaged('no_such_view', '', ['x'])) void _;
    }).rejects.toMatchObject({ code: 'ksc_pxg_error' });
  } finally {
    await c.close();
  }
});
