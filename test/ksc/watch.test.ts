/**
 * The KSC watch (watch.ts) and the asset snapshot it matches against (asset-index.ts):
 * what the decode workers do to each event, with the findings that go back to the main
 * thread. The daemon-level loop (enrichment, rules, task runs over real sockets) is in
 * loop-daemon.test.ts.
 */
import { expect, test } from 'vitest';
import { buildSnapshot, lookupAsset, type IndexedAsset } from '../../src/ksc/asset-index.js';
import { KscWatch, type KscWatchSpec } from '../../src/ksc/watch.js';
import { decodeFrame } from '../../src/codecs/decode.js';
import { normalizeEvent, loadChain } from '../../src/pipeline/normalize.js';
import type { CefdEvent } from '../../src/event.js';

const ASSETS: IndexedAsset[] = [
  { id: 'a-ws1', tenant: 'default', displayName: 'WS-1', fqdn: 'ws-1.corp.example', ips: ['10.4.21.31'], macs: ['00:1a:2b:3c:4d:5e'], lastVisible: '2026-11-01T00:00:00Z' },
  { id: 'a-ws1-old', tenant: 'default', displayName: 'WS-1', fqdn: null, ips: ['10.9.9.9'], macs: [], lastVisible: '2025-01-01T00:00:00Z' },
  { id: 'a-other', tenant: 'other', displayName: 'SRV-2', fqdn: null, ips: ['10.3.43.166'], macs: [], lastVisible: null },
];

async function event(line: string): Promise<CefdEvent> {
  const r = decodeFrame(Buffer.from(line), false, Date.UTC(2026, 10, 28), { defaultZone: 'UTC', keepRaw: false });
  if (!r.ok) throw new Error(r.failure.message);
  normalizeEvent(r.event, await loadChain(['ksc']));
  return r.event;
}

const DETECTION = 'CEF:0|KasperskyLab|SecurityCenter|14.2|GNRL_EV_VIRUS_FOUND|Virus found|4|rt=1795860000004 dhost=WS-1 dst=10.4.21.31 cs1=KES cs1Label=ProductName';
const UNKNOWN_HOST = 'CEF:0|KasperskyLab|SecurityCenter|14.2|GNRL_EV_VIRUS_FOUND|Virus found|4|rt=1795860000004 dhost=NOBODY dst=10.200.0.1';
const TASK_STATE = 'CEF:0|KasperskyLab|SecurityCenter|14.2|KLPRCI_TaskState|Completed|1|rt=1795860000005 dhost=WS-1 dst=10.4.21.31 cs3=KUMA scan cs3Label=TaskName cn1=4 cn1Label=TaskNewState cn2=1 cn2Label=TaskOldState';

test('the snapshot matches by name (full or short), prefers the asset with the address, then by address, per tenant', () => {
  const snap = buildSnapshot(ASSETS, 1);
  expect(snap.count).toBe(3);
  expect(lookupAsset(snap, { host: 'ws-1' })).toBe('a-ws1');
  expect(lookupAsset(snap, { host: 'WS-1.corp.example.' })).toBe('a-ws1');
  expect(lookupAsset(snap, { host: 'ws-1', ip: '10.9.9.9' })).toBe('a-ws1-old');
  expect(lookupAsset(snap, { ip: '10.3.43.166' })).toBe('a-other');
  expect(lookupAsset(snap, { ip: '10.3.43.166' }, 'default')).toBeUndefined();
  // A snapshot crosses to a worker by structured clone: it matches the same there.
  const copy = structuredClone(snap);
  expect(lookupAsset(copy, { host: 'ws-1', ip: '10.9.9.9' })).toBe('a-ws1-old');
});

test('the snapshot matches by MAC (any notation) after the name and before the address, also across a structured clone', async () => {
  const snap = structuredClone(buildSnapshot(ASSETS, 1));
  expect(lookupAsset(snap, { mac: '00-1A-2B-3C-4D-5E' })).toBe('a-ws1');
  expect(lookupAsset(snap, { mac: '001a.2b3c.4d5e', ip: '10.3.43.166' })).toBe('a-ws1');
  // Two assets named WS-1: the one with the MAC wins over the one with the address.
  expect(lookupAsset(snap, { host: 'ws-1', mac: '00:1a:2b:3c:4d:5e', ip: '10.9.9.9' })).toBe('a-ws1');
  expect(lookupAsset(snap, { mac: '00:00:00:00:00:01' })).toBeUndefined();
  // An event that names its source only by MAC gets the source asset in the worker.
  const w = new KscWatch({ version: 1, tenant: 'default', assets: snap, rules: [] });
  const ev = await event('CEF:0|Acme|FW|1|100|Blocked|5|smac=00:1A:2B:3C:4D:5E dst=10.200.0.1');
  w.see(ev);
  expect(ev['assets']).toEqual({ source: 'a-ws1' });
});

test('the watch enriches, tests the rules, and reports triggers, events without the asset, and task states', async () => {
  const spec: KscWatchSpec = {
    version: 7,
    tenant: 'default',
    assets: buildSnapshot(ASSETS, 1),
    rules: [
      { name: 'scan', filter: 'ksc.eventType == "GNRL_EV_VIRUS_FOUND"', assetField: 'device' },
      { name: 'never', filter: 'ksc.eventType == "nothing"', assetField: 'device' },
    ],
  };
  const w = new KscWatch(structuredClone(spec));
  expect(w.take()).toBeUndefined();
  const det = await event(DETECTION);
  w.see(det);
  expect(det['assets']).toEqual({ destination: 'a-ws1', device: 'a-ws1' });
  w.see(await event(UNKNOWN_HOST));
  const ts = await event(TASK_STATE);
  w.see(ts);
  expect(ts['assets']).toEqual({ destination: 'a-ws1', device: 'a-ws1' });
  expect(w.take()).toEqual({
    version: 7,
    enriched: 2,
    // Task-state events never trigger a rule (no feedback loop).
    triggers: [{ rule: 'scan', assetId: 'a-ws1' }],
    noAsset: [['scan', 1]],
    taskStates: [{ newState: 4, oldState: 1, taskName: 'KUMA scan', hostName: 'WS-1', ip: '10.4.21.31', time: expect.any(String) }],
    taskStatesIgnored: 0,
  });
  expect(w.take()).toBeUndefined();
});

test('without assets, nothing is enriched and task states are not sent back (no run can be about them)', async () => {
  const w = new KscWatch({ version: 1, tenant: 'default', assets: buildSnapshot([], 1), rules: [{ name: 'scan', assetField: 'device' }] });
  const det = await event(DETECTION);
  w.see(det);
  w.see(await event(TASK_STATE));
  expect(det['assets']).toBeUndefined();
  expect(w.take()).toEqual({ version: 1, enriched: 0, triggers: [], noAsset: [['scan', 1]], taskStates: [], taskStatesIgnored: 0 });
});
