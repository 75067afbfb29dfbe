import { afterEach, beforeEach, expect, test } from 'vitest';
import fc from 'fast-check';
import { KscIntegration, assetIdFor } from '../../src/ksc/index.js';
import { macsOf } from '../../src/ksc/assets.js';
import { macFromBytes, mergeMatches, mergeTarget, normalizeMac } from '../../src/ksc/match.js';
import { startKscEmulator, defaultModel, KES_WIN, NAGENT, type KscEmulator } from '../helpers/ksc-emulator/index.js';
import { memoryLogger, tempDir } from '../helpers/ksc-emulator/testkit.js';

let emu: KscEmulator;
let k: KscIntegration;
let cleanup: () => void;
const log = memoryLogger();

beforeEach(async () => {
  emu = await startKscEmulator({ model: defaultModel() });
  const t = tempDir();
  k = KscIntegration.open({ stateDir: t.dir, env: {}, logger: log, client: { retries: 1, backoffMs: 5, timeoutMs: 3000 } });
  k.addConnection({ name: 'main', url: emu.url, tls: { pinSha256: emu.cert.fingerprint256 }, secret: { user: 'kuma', password: 'S3cret-KSC-pass!w0rd' } });
  cleanup = t.cleanup;
});
afterEach(async () => {
  await k.close();
  await emu.close();
  cleanup();
});

const WS42 = 'c2b22f83-307c-45aa-8533-5ffffbcc6bf1';

test('MAC addresses: paramBinary(6) and the written forms normalize to aa:bb:cc:dd:ee:ff', () => {
  expect(macFromBytes(Buffer.from('001a2b3c4d42', 'hex'))).toBe('00:1a:2b:3c:4d:42');
  expect(macFromBytes(Buffer.alloc(6))).toBeNull();
  expect(macFromBytes(Buffer.from('001a2b3c4d', 'hex'))).toBeNull();
  expect(normalizeMac('00-1A-2B-3C-4D-42')).toBe('00:1a:2b:3c:4d:42');
  expect(normalizeMac('001a.2b3c.4d42')).toBe('00:1a:2b:3c:4d:42');
  expect(normalizeMac('001A2B3C4D42')).toBe('00:1a:2b:3c:4d:42');
  expect(normalizeMac('0:1a:2b:3c:4d:42')).toBe('00:1a:2b:3c:4d:42');
  expect(normalizeMac('00:1a:2b-3c:4d:42')).toBeNull(); // mixed separators
  expect(normalizeMac('00:00:00:00:00:00')).toBeNull();
  expect(normalizeMac('zz:1a:2b:3c:4d:42')).toBeNull();
  expect(normalizeMac(undefined)).toBeNull();
  expect(macsOf([Buffer.from('001a2b3c4d42', 'hex'), Buffer.from('001a2b3c4d42', 'hex'), 'x', Buffer.alloc(6)])).toEqual(['00:1a:2b:3c:4d:42']);
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 6, maxLength: 6 }).filter((b) => b.some((x) => x !== 0)), (b) => {
      const m = macFromBytes(b)!;
      return normalizeMac(m.toUpperCase().replace(/:/g, '-')) === m && normalizeMac(m.replace(/:/g, '')) === m;
    }),
  );
});

test("KUMA's merge rule: two of IP/MAC/FQDN match and the third is empty on one side", () => {
  const a = { ips: ['10.0.0.1'], macs: ['00:00:00:00:00:01'], fqdn: 'a.corp' };
  expect(mergeMatches(a, { ips: ['10.0.0.1'], macs: ['00:00:00:00:00:01'], fqdn: 'A.corp.' })).toBe(true); // all three
  expect(mergeMatches(a, { ips: ['10.0.0.1'], macs: ['00:00:00:00:00:01'], fqdn: null })).toBe(true); // two, FQDN empty
  expect(mergeMatches(a, { ips: [], macs: ['00:00:00:00:00:01'], fqdn: 'a.corp' })).toBe(true); // two, IP empty
  expect(mergeMatches(a, { ips: ['10.0.0.1'], macs: [], fqdn: null })).toBe(false); // only one
  expect(mergeMatches(a, { ips: ['10.0.0.1'], macs: ['00:00:00:00:00:01'], fqdn: 'b.corp' })).toBe(false); // FQDN differs
  expect(mergeMatches(a, { ips: ['10.0.0.9'], macs: ['00:00:00:00:00:01'], fqdn: 'a.corp' })).toBe(false); // IP differs
  expect(mergeMatches({ ips: ['10.0.0.1', '10.0.0.2'], macs: [], fqdn: 'a.corp' }, { ips: ['10.0.0.2'], macs: ['00:00:00:00:00:09'], fqdn: 'a.corp' })).toBe(true);
  // Ambiguous: two candidates qualify, none is chosen.
  const c1 = { id: 1, ips: ['10.0.0.1'], macs: [], fqdn: 'a.corp' };
  const c2 = { id: 2, ips: ['10.0.0.1'], macs: [], fqdn: 'a.corp' };
  expect(mergeTarget(a, [c1])).toBe(c1);
  expect(mergeTarget(a, [c1, c2])).toBeUndefined();
  expect(mergeTarget(a, [])).toBeUndefined();
});

test('hourly import: MACs, protection status, AV bases date, Network Agent connection time, hardware codes', async () => {
  const [r] = await k.syncAssets();
  expect(r).toMatchObject({ ok: true, hosts: 5, skippedNoAgent: 0 });
  const ws = k.getAsset(assetIdFor(k.getConnection('main').id, WS42))!;
  expect(ws.macs).toEqual(['00:1a:2b:3c:4d:42', '00:1a:2b:3c:4d:43']);
  expect(ws.protection).toEqual({
    status: 'warning',
    rtpInstalled: true,
    avVersion: KES_WIN.build,
    avBasesAt: '2024-05-01T04:00:00.000Z',
    lastUpdateAt: '2024-05-01T04:00:00.000Z',
    virusCount: 0,
    nagentVersion: NAGENT.build,
  });
  expect(Date.parse(ws.nagentConnectedAt!)).toBeGreaterThan(Date.now() - 86_400_000);
  expect(ws.hardware).toEqual({ computerType: 1, platformType: 1, osVersion: '10.0', osBuild: 19045, server: false });
  const findHosts = emu.calls.find((c) => c.method === 'HostGroup.FindHosts')!;
  expect(findHosts.body['vecFieldsToReturn']).toEqual(expect.arrayContaining(['KLHST_WKS_MAC_ADDRESSES', 'KLHST_WKS_LAST_NAGENT_CONNECTED', 'KLHST_WKS_RTP_AV_BASES_TIME', 'KLHST_WKS_STATUS_ID']));
});

test('a device whose Network Agent never connected is not imported (KLHST_WKS_LAST_NAGENT_CONNECTED empty)', async () => {
  emu.model.hosts.push({ id: 'never-connected', displayName: 'NEW-PC', ip: '10.0.12.99', os: 'Microsoft Windows 11 Pro', groupId: 1, lastVisible: new Date(), nagent: false, products: [] });
  emu.model.hosts.push({ id: 'agent-no-conn', displayName: 'NEW-PC2', ip: '10.0.12.98', os: 'Microsoft Windows 11 Pro', groupId: 1, lastVisible: new Date(), nagent: true, products: [NAGENT] });
  const [r] = await k.syncAssets();
  expect(r).toMatchObject({ ok: true, hosts: 5, skippedNoAgent: 2 });
  const names = k.listAssets({ includeArchived: true }).map((a) => a.displayName);
  expect(names).not.toContain('NEW-PC');
  expect(names).not.toContain('NEW-PC2');
  // Its agent connects: the next import has it.
  emu.model.hosts.at(-1)!.nagentConnected = new Date();
  const [r2] = await k.syncAssets();
  expect(r2).toMatchObject({ ok: true, hosts: 6, skippedNoAgent: 1, created: 1 });
});

test('a server that refuses the detail attributes still gets the basic import (agent bit decides)', async () => {
  emu.faults.rejectAttributes.add('KLHST_WKS_MAC_ADDRESSES');
  const [r] = await k.syncAssets();
  expect(r).toMatchObject({ ok: true, hosts: 5 });
  expect(k.listAssets().every((a) => a.macs.length === 0)).toBe(true);
  expect(emu.calls.filter((c) => c.method === 'HostGroup.FindHosts')).toHaveLength(2);
  expect(log.lines.some((l) => l.includes('refused the detail host attributes'))).toBe(true);
  expect(emu.openAccessors()).toBe(0);
});

test('KSC re-creates a device under a new id: merged into its asset when two of IP/MAC/FQDN match', async () => {
  await k.syncAssets();
  const conn = k.getConnection('main');
  const oldId = assetIdFor(conn.id, WS42);
  const before = k.getAsset(oldId)!;
  const h = emu.model.hosts.find((x) => x.id === WS42)!;
  h.id = 'a1a1a1a1-0000-4000-8000-000000000142'; // same IP and MACs, new KLHST_WKS_HOSTNAME
  h.fqdn = undefined;
  const [r] = await k.syncAssets();
  expect(r).toMatchObject({ ok: true, merged: 1, created: 0, archived: 0 });
  const after = k.getAsset(oldId)!;
  expect(after).toMatchObject({ id: oldId, kscHostId: 'a1a1a1a1-0000-4000-8000-000000000142', status: 'active', firstImportedAt: before.firstImportedAt, fqdn: null });
  expect(k.getAsset(assetIdFor(conn.id, 'a1a1a1a1-0000-4000-8000-000000000142'))).toBeUndefined();
  // What a cluster owner looks up for another processor's rule trigger (it sends the KSC host id).
  expect(k.store.assetIdOfHost(conn.id, 'a1a1a1a1-0000-4000-8000-000000000142')).toBe(oldId);
  expect(k.store.assetIdOfHost(conn.id, WS42)).toBeUndefined();
  // The next import finds it by its new host id, no new asset.
  const [r2] = await k.syncAssets();
  expect(r2).toMatchObject({ ok: true, created: 0, merged: 0 });
  expect(k.listAssets().filter((a) => a.displayName === 'WS-0142')).toHaveLength(1);
  // Only the IP in common (MACs changed, FQDN differs): a new asset, the old one archived.
  h.id = 'b2b2b2b2-0000-4000-8000-000000000142';
  h.macs = ['00:aa:bb:cc:dd:ee'];
  h.fqdn = 'other.corp.example';
  const [r3] = await k.syncAssets();
  expect(r3).toMatchObject({ ok: true, merged: 0, created: 1, archived: 1 });
  expect(k.getAsset(oldId)?.status).toBe('archived');
});

test('enrichment by MAC: smac/dmac/dvcmac in any notation find their asset; a name still wins', async () => {
  await k.syncAssets();
  const conn = k.getConnection('main');
  const ws42 = assetIdFor(conn.id, WS42);
  const lnx = assetIdFor(conn.id, 'e4b8d2f0-1c3a-4b5d-8e9f-0a1b2c3d4e5f');
  const { decodeFrame } = await import('../../src/codecs/decode.js');
  const ev = (line: string) => {
    const r = decodeFrame(Buffer.from(line), false, Date.parse('2024-05-06T07:00:00Z'));
    if (!r.ok) throw new Error('fixture did not decode');
    return r.event;
  };
  const e = ev('CEF:0|Vendor|Switch|1|200|port|3|smac=00-1A-2B-3C-4D-43 dmac=5254.0012.3405 dvcmac=00:00:00:00:00:07 src=192.0.2.1');
  expect(k.enrich(e)).toEqual({ source: ws42, destination: lnx });
  expect(e['assets']).toEqual({ source: ws42, destination: lnx });
  const idx = k.assetIndex();
  expect(idx.lookup({ mac: '00:1a:2b:3c:4d:42' })).toBe(ws42);
  expect(idx.lookup({ mac: '00:1a:2b:3c:4d:42', ip: '10.0.30.5' })).toBe(ws42); // the MAC before the IP
  expect(idx.lookup({ host: 'lnx-web01', mac: '00:1a:2b:3c:4d:42' })).toBe(lnx); // the name before the MAC
  expect(idx.lookup({ mac: 'not-a-mac', ip: '10.0.30.5' })).toBe(lnx);
  expect(idx.lookup({ mac: '00:1a:2b:3c:4d:42' }, 'other-tenant')).toBeUndefined();
});

test('task applicability by platform: a vulnerability/software task only for Windows devices', async () => {
  emu.model.tasks.push({ id: '70', displayName: 'KUMA Fix vulnerabilities', taskType: 'KLNAG_TASK_FIX_VULNERABILITIES', product: '1103', version: '1.0.0.0', groupId: 0 });
  await k.syncAssets();
  const conn = k.getConnection('main');
  const lnx = assetIdFor(conn.id, 'e4b8d2f0-1c3a-4b5d-8e9f-0a1b2c3d4e5f');
  const e = await k.startTask({ assetId: lnx, tasks: ['KUMA Fix vulnerabilities'] }).catch((x: unknown) => x);
  expect(e).toMatchObject({ code: 'ksc_task_not_applicable' });
  expect((e as Error).message).toMatch(/"KUMA Fix vulnerabilities": a vulnerability or software task applies to Windows devices only \(the asset is linux\)/);
  expect(emu.calls.some((c) => c.method === 'Tasks.RunTask')).toBe(false);
  // The Linux device still gets its Linux task, first of the list that applies.
  const ok = await k.startTask({ assetId: lnx, tasks: ['KUMA Fix vulnerabilities', 'kuma virus scan (Linux)'] });
  expect(ok.task.displayName).toBe('kuma virus scan (Linux)');
  const win = await k.startTask({ assetId: assetIdFor(conn.id, WS42), tasks: ['KUMA Fix vulnerabilities'] });
  expect(win.task.taskId).toBe('70');
});
