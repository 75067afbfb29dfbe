import { afterAll, afterEach, beforeAll, expect, test } from 'vitest';
import https from 'node:https';
import { startKscEmulator, parseFilter, matchFilter, taskStateCef, type KscEmulator } from '../helpers/ksc-emulator/index.js';
import { LineCollector, kscBasic, rawPost, waitFor } from '../helpers/ksc-emulator/testkit.js';

let emu: KscEmulator;
let token: string;
const USER = 'kuma';
const PASS = 'S3cret-KSC-pass!w0rd';

beforeAll(async () => {
  emu = await startKscEmulator();
  const r = await rawPost(emu.port, '/api/v1.0/Session.StartSession', {}, { Authorization: kscBasic(USER, PASS) });
  token = String(r.json?.['PxgRetVal']);
});
afterAll(async () => {
  await emu.close();
});
afterEach(() => emu.faults.clear());

const call = (method: string, body: unknown, headers: Record<string, string> = {}) => rawPost(emu.port, `/api/v1.0/${method}`, body, { 'X-KSC-Session': token, ...headers });

test('auth: 401 without credentials or with wrong ones (no JSON), 403 for an unknown or ended session', async () => {
  const none = await rawPost(emu.port, '/api/v1.0/Session.Ping', {});
  expect(none.status).toBe(401);
  const bad = await rawPost(emu.port, '/api/v1.0/login', '', { Authorization: kscBasic(USER, 'wrong') });
  expect(bad.status).toBe(401);
  expect(bad.json).toBeUndefined();
  expect((await rawPost(emu.port, '/api/v1.0/Session.StartSession', {}, { Authorization: kscBasic('nobody', PASS) })).status).toBe(401);
  expect((await rawPost(emu.port, '/api/v1.0/Session.Ping', {}, { 'X-KSC-Session': 'bm9wZQ==' })).status).toBe(403);
  const s = await rawPost(emu.port, '/api/v1.0/Session.StartSession', {}, { Authorization: kscBasic(USER, PASS) });
  expect(s.status).toBe(200);
  const t = String(s.json?.['PxgRetVal']);
  expect((await rawPost(emu.port, '/api/v1.0/Session.Ping', {}, { 'X-KSC-Session': t })).json).toEqual({});
  expect((await rawPost(emu.port, '/api/v1.0/Session.EndSession', {}, { 'X-KSC-Session': t })).status).toBe(200);
  expect((await rawPost(emu.port, '/api/v1.0/Session.Ping', {}, { 'X-KSC-Session': t })).status).toBe(403);
});

test('KSCBasic is parsed leniently: unquoted values, domain, internal=true, no internal', async () => {
  const b = (x: string) => Buffer.from(x).toString('base64');
  for (const h of [
    `KSCBasic user=${b(USER)}, pass=${b(PASS)}, internal=true`,
    `KSCBasic user="${b(USER)}", pass="${b(PASS)}", domain="", internal="0"`,
    `KSCBasic user="${b(USER)}", pass="${b(PASS)}"`,
  ]) {
    expect((await rawPost(emu.port, '/api/v1.0/Session.StartSession', {}, { Authorization: h })).status).toBe(200);
  }
});

test('connection-bound login: the login holds for the keep-alive connection only', async () => {
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    expect((await rawPost(emu.port, '/api/v1.0/login', '', { Authorization: kscBasic(USER, PASS) }, agent)).status).toBe(200);
    const r = await rawPost(emu.port, '/api/v1.0/Session.Ping', {}, {}, agent);
    expect(r.status).toBe(200);
    expect(emu.calls.at(-1)!.auth).toBe('connection');
    // Another connection is not logged in.
    expect((await rawPost(emu.port, '/api/v1.0/Session.Ping', {})).status).toBe(401);
    emu.expireSessions();
    expect((await rawPost(emu.port, '/api/v1.0/Session.Ping', {}, {}, agent)).status).toBe(403);
  } finally {
    agent.destroy();
  }
  const s = await rawPost(emu.port, '/api/v1.0/Session.StartSession', {}, { Authorization: kscBasic(USER, PASS) });
  token = String(s.json?.['PxgRetVal']);
});

test('method errors: HTTP 200 + PxgError {code, subcode, module, file, line, message}', async () => {
  const r = await call('Tasks.RunTask', { strTask: '999' });
  expect(r.status).toBe(200);
  expect(r.json).toEqual({ PxgError: { code: 1168, module: 'KLSTD', message: 'Object not found: task "999"', subcode: 0, file: 'emulator.ts', line: 1 } });
  expect((await call('Tasks.RunTask', {})).json?.['PxgError']).toMatchObject({ message: 'Invalid argument: strTask is required' });
  expect((await call('Nope.Nothing', {})).json?.['PxgError']).toMatchObject({ code: 1184 });
  expect((await call('HostGroup.FindHosts', { wstrFilter: '(KLHST_WKS_DN = ', vecFieldsToReturn: [] })).json?.['PxgError']).toMatchObject({ code: 1185 });
  expect((await call('HostGroup.FindHosts', { wstrFilter: '', vecFieldsToReturn: ['NOT_AN_ATTR'] })).json?.['PxgError']).toMatchObject({ code: 1185 });
  expect((await call('Session.Ping', '{not json')).status).toBe(400);
  expect((await rawPost(emu.port, '/other/path', {})).status).toBe(404);
});

test('FindHosts + ChunkAccessor: typed values in wrappers, missing nStart = 0, accessor gone after Release', async () => {
  const f = await call('HostGroup.FindHosts', {
    wstrFilter: '(KLHST_WKS_DN = "WS-0142")',
    vecFieldsToReturn: ['KLHST_WKS_HOSTNAME', 'KLHST_WKS_IP_LONG', 'KLHST_WKS_LAST_VISIBLE', 'KLHST_WKS_GROUPID', 'name'],
    vecFieldsToOrder: [{ type: 'params', value: { Name: 'KLHST_WKS_DN', Asc: true } }],
    pParams: { KLGRP_FIND_FROM_CUR_VS_ONLY: true },
    lMaxLifeTime: 100000,
  });
  expect(f.json?.['PxgRetVal']).toBe(1);
  const acc = String(f.json?.['strAccessor']);
  expect((await call('ChunkAccessor.GetItemsCount', { strAccessor: acc })).json).toEqual({ PxgRetVal: 1 });
  const chunk = await call('ChunkAccessor.GetItemsChunk', { strAccessor: acc, nCount: 10 });
  expect(chunk.json).toEqual({
    PxgRetVal: 1,
    pChunk: {
      KLCSP_ITERATOR_ARRAY: [
        {
          type: 'params',
          value: {
            KLHST_WKS_HOSTNAME: 'c2b22f83-307c-45aa-8533-5ffffbcc6bf1',
            KLHST_WKS_IP_LONG: { type: 'long', value: 167775274 },
            KLHST_WKS_LAST_VISIBLE: { type: 'datetime', value: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/) },
            KLHST_WKS_GROUPID: 1,
            name: 'Workstations',
          },
        },
      ],
    },
  });
  expect((await call('ChunkAccessor.GetItemsChunk', { strAccessor: acc })).json?.['PxgError']).toMatchObject({ message: 'Invalid argument: nCount is required' });
  expect((await call('ChunkAccessor.Release', { strAccessor: acc })).json).toEqual({});
  expect((await call('ChunkAccessor.GetItemsCount', { strAccessor: acc })).json?.['PxgError']).toMatchObject({ code: 1168 });
});

test('an accessor expires after lMaxLifeTime', async () => {
  const f = await call('HostGroup.FindHosts', { wstrFilter: '', vecFieldsToReturn: ['KLHST_WKS_DN'], lMaxLifeTime: 1 });
  const acc = String(f.json?.['strAccessor']);
  expect((await call('ChunkAccessor.GetItemsCount', { strAccessor: acc })).json).toEqual({ PxgRetVal: 5 });
  await new Promise((r) => setTimeout(r, 1100));
  expect((await call('ChunkAccessor.GetItemsCount', { strAccessor: acc })).json?.['PxgError']).toMatchObject({ code: 1168 });
});

test('filter subset: =, <>, <, >=, &, |, !, wildcards, bit tests, group-or-subgroup, dates', () => {
  const get = (m: Record<string, unknown>) => (a: string) => m[a] as never;
  const h = { KLHST_WKS_DN: 'WS-0142', KLHST_WKS_STATUS: 13, KLHST_WKS_GROUPID_GP: [1, 0], KLHST_WKS_LAST_VISIBLE: new Date('2024-05-01T10:00:00Z'), KLHST_INSTANCEID: 'x' };
  const t = (f: string) => matchFilter(parseFilter(f), get(h));
  expect(t('')).toBe(true);
  expect(t('(KLHST_WKS_DN = "ws-*")')).toBe(true);
  expect(t('(KLHST_WKS_DN <> "WS-0142")')).toBe(false);
  expect(t('(KLHST_WKS_STATUS&4<>0)')).toBe(true);
  expect(t('(KLHST_WKS_STATUS&2<>0)')).toBe(false);
  expect(t('(&(KLHST_WKS_GROUPID_GP = 0)(KLHST_INSTANCEID <> ""))')).toBe(true);
  expect(t('(KLHST_WKS_GROUPID_GP = 2)')).toBe(false);
  expect(t('(|(KLHST_WKS_DN = "A")(!(KLHST_WKS_STATUS < 10)))')).toBe(true);
  expect(t('(KLHST_WKS_LAST_VISIBLE >= T"2024-5-1 11:00:00")')).toBe(false);
  expect(t('(KLHST_WKS_LAST_VISIBLE < T"2024-5-1 10:00:01")')).toBe(true);
  expect(t('(KLHST_WKS_LAST_VISIBLE >= T"2024-05-01 09:00:00")')).toBe(true);
  expect(() => parseFilter('(A = 1')).toThrow(/syntax/);
  expect(() => parseFilter('(A = 1)x')).toThrow(/trailing/);
});

test('gzip when asked, plain otherwise', async () => {
  const z = await call('HostGroup.GetStaticInfo', {}, { 'Accept-Encoding': 'gzip' });
  expect(z.headers['content-encoding']).toBe('gzip');
  expect(z.json?.['PxgRetVal']).toBeTruthy();
  const p = await call('HostGroup.GetStaticInfo', {});
  expect(p.headers['content-encoding']).toBeUndefined();
});

test('tasks iterator: pTaskData with TASK_INFO_PARAMS as nested params, then an empty answer', async () => {
  const it = String((await call('Tasks.ResetTasksIterator', { nGroupId: 1, bGroupIdSignificant: true, strProductName: null, bIncludeSupergroups: true })).json?.['strTaskIteratorId']);
  const names: string[] = [];
  for (;;) {
    const n = await call('Tasks.GetNextTask', { strTaskIteratorId: it });
    const d = n.json?.['pTaskData'] as Record<string, { type: string; value: Record<string, unknown> }> | undefined;
    if (d === undefined) break;
    expect(d['TASK_INFO_PARAMS']!.type).toBe('params');
    names.push(String(d['TASK_INFO_PARAMS']!.value['DisplayName']));
  }
  // Group 1 plus its supergroup 0.
  expect(names.sort()).toEqual(['Backup data', 'KUMA Update (Windows)', 'KUMA Virus scan (Windows)', 'Update']);
  expect((await call('Tasks.ReleaseTasksIterator', { strTaskIteratorId: it })).json).toEqual({});
  expect((await call('Tasks.GetNextTask', { strTaskIteratorId: it })).json?.['PxgError']).toMatchObject({ code: 1168 });
  expect((await call('Tasks.GetTask', { strTask: '22' })).json?.['PxgRetVal']).toMatchObject({ DisplayName: 'KUMA Update (Windows)', TASK_UNIQUE_ID: '22' });
  expect((await call('Tasks.GetAllTasksOfHost', { strDomainName: '', strHostName: 'e4b8d2f0-1c3a-4b5d-8e9f-0a1b2c3d4e5f' })).json).toEqual({ PxgRetVal: ['17', '21', '31', '50'] });
});

test('RunTask sends KLPRCI_TaskState lines for the scope hosts with the product, then statistics', async () => {
  const c = await new LineCollector().listen();
  emu.taskEvents = { target: { host: '127.0.0.1', port: c.port }, runningAfterMs: 5, finishAfterMs: 10, outcome: (_t, h) => (h.displayName === 'WS-0177' ? 5 : 4) };
  try {
    expect((await call('Tasks.RunTask', { strTask: '22' })).json).toEqual({});
    await emu.flushEvents();
    await waitFor(() => c.lines.length === 4, 30_000, 'four lines');
    expect(emu.runs.at(-1)).toMatchObject({ taskId: '22', hostIds: expect.arrayContaining(['f0f0f0f0-0000-4000-8000-00000000dead']) });
    const finals = c.lines.filter((l) => / cn1=1 /.test(l));
    expect(finals.find((l) => l.includes('dhost=WS-0177'))).toMatch(/\|KLPRCI_TaskState\|Failed\|3\|.* cn2=5 cn2Label=TaskNewState cn1=1 cn1Label=TaskOldState$/);
    expect(finals.find((l) => l.includes('dhost=WS-0142'))).toMatch(/\|Completed successfully\|1\|/);
    expect(c.lines.some((l) => l.includes('OLD-LAPTOP'))).toBe(false);
    const st = (await call('Tasks.GetTaskStatistics', { strTask: '22' })).json?.['PxgRetVal'] as Record<string, number>;
    expect(st).toMatchObject({ '1': 1, '4': 1, '16': 1, GNRL_COMPLETED_PERCENT: 67 });
    // The read-only user may not start tasks.
    const v = await rawPost(emu.port, '/api/v1.0/Session.StartSession', {}, { Authorization: kscBasic('viewer', 'viewer-pass-123') });
    const denied = await rawPost(emu.port, '/api/v1.0/Tasks.RunTask', { strTask: '22' }, { 'X-KSC-Session': String(v.json?.['PxgRetVal']) });
    expect(denied.json?.['PxgError']).toMatchObject({ code: 1150 });
  } finally {
    emu.taskEvents = {};
    await c.close();
  }
});

test('task-state lines escape CEF extension values', () => {
  const l = taskStateCef({ time: new Date(0), groupName: 'a=b', host: 'h', product: 'KES', version: '1', taskName: 'x\\y', taskId: '1', oldState: 1, newState: 4 });
  expect(l).toContain('cs9=a\\=b cs9Label=GroupName');
  expect(l).toContain('cs10=x\\\\y cs10Label=TaskName');
});

test('fault knobs: status faults, hang-ups and delays, per method', async () => {
  emu.faults.failNext(502, { method: 'Session.Ping', times: 2 });
  expect((await call('Session.Ping', {})).status).toBe(502);
  expect((await call('HostGroup.GetStaticInfo', {})).status).toBe(200);
  expect((await call('Session.Ping', {})).status).toBe(502);
  expect((await call('Session.Ping', {})).status).toBe(200);
  emu.faults.hangUpNext();
  await expect(call('Session.Ping', {})).rejects.toThrow(/socket hang up|ECONNRESET/);
  emu.faults.methodDelayMs['Session.Ping'] = 150;
  const t0 = Date.now();
  await call('Session.Ping', {});
  expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
});

test('inventory and SrvView on the wire (OPEN-API.md §2.8): shapes, MACs as paramBinary, a released iterator is gone', async () => {
  const WS42 = 'c2b22f83-307c-45aa-8533-5ffffbcc6bf1';
  const LNX = 'e4b8d2f0-1c3a-4b5d-8e9f-0a1b2c3d4e5f';
  const inv = await call('InventoryApi.GetHostInvProducts', { szwHostId: WS42, pParams: {} });
  const list = (inv.json?.['PxgRetVal'] as { GNRL_EA_PARAM_1: { type: string; value: Record<string, unknown> }[] }).GNRL_EA_PARAM_1;
  expect(list[0]).toMatchObject({ type: 'params', value: { DisplayName: 'Microsoft Edge', DisplayVersion: '124.0.2478.80', Publisher: 'Microsoft Corporation', InstallDate: '20240502' } });
  expect((await call('InventoryApi.GetHostInvProducts', { szwHostId: LNX, pParams: {} })).json).toEqual({ PxgRetVal: { GNRL_EA_PARAM_1: [] } });
  expect((await call('InventoryApi.GetHostInvPatches', { szwHostId: 'nope' })).json?.['PxgError']).toMatchObject({ code: 1168 });
  emu.faults.failHosts.add(WS42);
  expect((await call('InventoryApi.GetHostInvProducts', { szwHostId: WS42 })).json?.['PxgError']).toMatchObject({ code: 1150 });
  emu.faults.failHosts.clear();

  const it = await call('SrvView.ResetIterator', {
    wstrViewName: 'v_vapm_vulnerability', wstrFilter: `(KLHST_WKS_HOSTNAME = "${WS42}")`, vecFieldsToReturn: ['VulnerabilityId', 'SeverityRating', 'DetectionTime', 'bIgnore'],
    vecFieldsToOrder: [], pParams: {}, lifetimeSec: 60,
  });
  const id = String(it.json?.['wstrIteratorId']);
  expect((await call('SrvView.GetRecordCount', { wstrIteratorId: id })).json).toEqual({ PxgRetVal: 2 });
  emu.faults.srvViewPageMax = 1;
  expect((await call('SrvView.GetRecordRange', { wstrIteratorId: id, nStart: 0, nEnd: 2 })).json).toEqual({
    pRecords: { KLCSP_ITERATOR_ARRAY: [{ type: 'params', value: { VulnerabilityId: 'KLA10001', SeverityRating: 3, DetectionTime: { type: 'datetime', value: '2024-04-20T10:00:00Z' }, bIgnore: false } }] },
  });
  expect((await call('SrvView.ReleaseIterator', { wstrIteratorId: id })).json).toEqual({});
  expect((await call('SrvView.GetRecordCount', { wstrIteratorId: id })).json?.['PxgError']).toMatchObject({ code: 1168 });
  expect((await call('SrvView.ResetIterator', { wstrViewName: 'nope', vecFieldsToReturn: [] })).json?.['PxgError']).toMatchObject({ code: 1168 });
  expect((await call('SrvView.ResetIterator', { wstrViewName: 'v_vapm_vulnerability', vecFieldsToReturn: ['NoSuchAttr'] })).json?.['PxgError']).toMatchObject({ code: 1185 });

  const fh = await call('HostGroup.FindHosts', { wstrFilter: `(KLHST_WKS_HOSTNAME = "${WS42}")`, vecFieldsToReturn: ['KLHST_WKS_MAC_ADDRESSES', 'KLHST_WKS_RTP_AV_BASES_TIME'], vecFieldsToOrder: [], pParams: {}, lMaxLifeTime: 60 });
  const chunk = await call('ChunkAccessor.GetItemsChunk', { strAccessor: String(fh.json?.['strAccessor']), nStart: 0, nCount: 10 });
  expect(chunk.json?.['pChunk']).toEqual({
    KLCSP_ITERATOR_ARRAY: [{ type: 'params', value: {
      KLHST_WKS_MAC_ADDRESSES: [{ type: 'binary', value: Buffer.from('001a2b3c4d42', 'hex').toString('base64') }, { type: 'binary', value: Buffer.from('001a2b3c4d43', 'hex').toString('base64') }],
      KLHST_WKS_RTP_AV_BASES_TIME: { type: 'datetime', value: '2024-05-01T04:00:00Z' },
    } }],
  });
  await call('ChunkAccessor.Release', { strAccessor: String(fh.json?.['strAccessor']) });
});
