/**
 * The splunk_hec output against the HEC emulator (test/helpers/hec-emulator.ts: Splunk
 * cannot be installed here). The envelope, HEC's codes (503 retried, a refused event
 * alone dead-lettered, configuration and token errors retried slowly and never
 * dead-lettered), 413 splitting, TLS, gzip; with the output runner: down at start, down
 * mid-stream and back (at least once), slow receiver.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, expect, test } from 'vitest';
import { MemoryQueue } from '../../src/buffer/queue.js';
import { loadFields } from '../../src/config/load.js';
import { SPLUNK_HEC_FIELDS } from '../../src/outputs/splunk_hec/config.js';
import { splunkHecOutput } from '../../src/outputs/splunk_hec/index.js';
import { CONFIG_RETRY_MS, SplunkHecOutput } from '../../src/outputs/splunk_hec/splunk-hec.js';
import type { PartialResult } from '../../src/outputs/types.js';
import { FlowControl } from '../../src/pipeline/flow-control.js';
import { OutputRunner } from '../../src/pipeline/output-runner.js';
import { Telemetry } from '../../src/telemetry/telemetry.js';
import { waitFor } from '../helpers/daemon.js';
import { expectSendAborted } from '../helpers/abort.js';
import { HecEmulator, type HecEmulatorOptions } from '../helpers/hec-emulator.js';
import { makePki } from '../helpers/pki.js';
import { startRedirectingProxy } from '../helpers/emulated-server.js';
import { tempDir } from '../helpers/temp.js';

const TOKEN = '9b7a1c2e-0000-4000-8000-00000000c0de';
const open: { stop(): Promise<unknown> }[] = [];
afterEach(async () => {
  for (const o of open.splice(0).reverse()) await o.stop();
});

async function emulator(o: HecEmulatorOptions = {}): Promise<HecEmulator> {
  const e = new HecEmulator({ tokens: [TOKEN], ...o });
  await e.start();
  open.push(e);
  return e;
}

function output(raw: Record<string, unknown>): SplunkHecOutput {
  const c: Record<string, unknown> = { token: TOKEN, ...raw };
  for (const k of Object.keys(c)) if (c[k] === undefined) delete c[k];
  const o = new SplunkHecOutput('hec', loadFields(SPLUNK_HEC_FIELDS, c));
  open.push({ stop: () => o.close() });
  return o;
}

/** A native-shaped record with id `k-<i>`. */
const rec = (i: number, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ schema: 2, id: `k-${i}`, timestamp: '2026-12-06T10:00:00.250Z', syslog: { hostname: 'ksc01' }, cef: { name: `event ${i}` }, ...extra });
const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const ids = (h: HecEmulator) => h.events.map((e) => (e.event as { id: string }).id);

test('each event in HEC\'s envelope: time (epoch seconds.ms), host from the event, source, sourcetype, index, the record as event; Splunk token auth', async () => {
  const hec = await emulator({ indexes: ['security'] });
  const o = output({ url: hec.url, source: 'ksc', index: 'security', sourcetype: 'kaspersky:ksc' });
  await o.start();
  expect(await o.send({ records: [rec(1), rec(2, { syslog: {} }), 'CEF:0|KasperskyLab|SecurityCenter|14.2|1|x|1|'] })).toEqual({ status: 'delivered' });
  expect(hec.events[0]).toEqual({ time: 1796551200.25, host: 'ksc01', source: 'ksc', sourcetype: 'kaspersky:ksc', index: 'security', event: JSON.parse(rec(1)) });
  expect(hec.events[1]!.host).toBeUndefined();
  expect(hec.events[2]).toEqual({ source: 'ksc', sourcetype: 'kaspersky:ksc', index: 'security', event: 'CEF:0|KasperskyLab|SecurityCenter|14.2|1|x|1|' });
  expect(hec.requests[0]!.headers['authorization']).toBe(`Splunk ${TOKEN}`);
  expect(new Date(1796551200250).toISOString()).toBe('2026-12-06T10:00:00.250Z');
});

test('503 (server busy, unhealthy) and 500 are retried; network errors too', async () => {
  const hec = await emulator();
  const o = output({ url: hec.url });
  await o.start();
  hec.faults.push({ status: 503, code: 9, text: 'Server is busy' }, { status: 503, code: 18, text: 'HEC is unhealthy, queues are full' }, { status: 500, code: 8, text: 'Internal server error' });
  for (let k = 0; k < 3; k++) expect((await o.send({ records: [rec(1)] })).status).toBe('retry');
  expect(await o.send({ records: [rec(1)] })).toEqual({ status: 'delivered' });
  expect(ids(hec)).toEqual(['k-1']);
});

test('a refused event among good ones: that event alone dead-lettered with HEC\'s code, the others sent again and delivered', async () => {
  const hec = await emulator();
  const o = output({ url: hec.url });
  await o.start();
  const records = range(6).map((i) => rec(i));
  records[3] = ''; // an empty record: HEC's "Event field cannot be blank" (code 13)
  const r = (await o.send({ records })) as PartialResult;
  expect(r.status).toBe('partial');
  expect(r.rejected).toEqual([expect.objectContaining({ index: 3, reason: 'splunk_hec_event_field_blank' })]);
  expect(r.rejected![0]!.error).toContain('Event field cannot be blank (code 13)');
  expect(r.retry).toEqual([0, 1, 2, 4, 5]);
  const again = r.retry!.map((i) => records[i]!);
  expect(await o.send({ records: again })).toEqual({ status: 'delivered' });
  expect(ids(hec)).toEqual(['k-0', 'k-1', 'k-2', 'k-4', 'k-5']);
  // invalid data format, injected by the emulator for one event
  hec.invalidEvent = (e) => ((e.event as { id?: string }).id === 'k-8' ? 6 : undefined);
  const r2 = (await o.send({ records: [rec(7), rec(8)] })) as PartialResult;
  expect(r2.rejected).toEqual([expect.objectContaining({ index: 1, reason: 'splunk_hec_invalid_data_format' })]);
});

test('token errors and configuration codes: a clear error, retried no sooner than 10 s, never dead-lettered', async () => {
  const dir = tempDir();
  writeFileSync(join(dir, 'token'), 'not-the-token\n');
  const hec = await emulator({ disabledTokens: ['disabled-token'], indexes: ['main'] });
  const wrong = output({ url: hec.url, token_file: join(dir, 'token'), token: undefined });
  await wrong.start();
  const r = await wrong.send({ records: [rec(1)] });
  expect(r).toMatchObject({ status: 'retry', retryAfterMs: CONFIG_RETRY_MS });
  expect((r as { error: string }).error).toContain('HEC does not know the token');
  expect((r as { error: string }).error).not.toContain('not-the-token');
  const disabled = output({ url: hec.url, token: 'disabled-token' });
  await disabled.start();
  expect((await disabled.send({ records: [rec(1)] }) as { error: string }).error).toContain('the token is disabled');
  const badIndex = output({ url: hec.url, index: 'nope' });
  await badIndex.start();
  const r3 = await badIndex.send({ records: [rec(1)] });
  expect(r3).toMatchObject({ status: 'retry', retryAfterMs: CONFIG_RETRY_MS });
  expect((r3 as { error: string }).error).toContain('the index is not allowed');
  expect(hec.events).toEqual([]);
  // Under the runner: one attempt, no storm, nothing dead-lettered.
  const t = quiet();
  const dead: string[] = [];
  const runner = new OutputRunner({ name: 'hec', capacity: 100, whenFull: 'block', batchMax: 100, initialBackoffMs: 1, maxBackoffMs: 60_000 }, output({ url: hec.url, token: 'nope' }), new MemoryQueue(100), new FlowControl(t), t, (_o, recs) => dead.push(...recs));
  await runner.start();
  open.push({ stop: () => runner.stop(100) });
  const before = hec.authFailures;
  runner.enqueueMany([rec(1)]);
  await waitFor(() => hec.authFailures > before);
  await new Promise((res) => setTimeout(res, 300));
  expect(hec.authFailures - before).toBe(1);
  expect(dead).toEqual([]);
});

test('a url that names no HEC endpoint (404 from a wrong path or a proxy, a redirect to https): retried no sooner than 10 s with a clear error, never dead-lettered', async () => {
  const hec = await emulator();
  const wrongPath = output({ url: `${hec.url}/splunk` });
  await wrongPath.start();
  const r = await wrongPath.send({ records: [rec(1), rec(2)] });
  expect(r).toMatchObject({ status: 'retry', retryAfterMs: CONFIG_RETRY_MS });
  expect((r as { error: string }).error).toContain('HTTP 404');
  expect((r as { error: string }).error).toContain('no HEC endpoint at this URL');
  const redirect = await startRedirectingProxy(308);
  open.push(redirect);
  const moved = output({ url: redirect.url });
  await moved.start();
  expect(await moved.send({ records: [rec(3)] })).toMatchObject({ status: 'retry', retryAfterMs: CONFIG_RETRY_MS });
  expect(hec.events).toEqual([]);
  const fixed = output({ url: hec.url });
  await fixed.start();
  expect(await fixed.send({ records: [rec(1), rec(2), rec(3)] })).toEqual({ status: 'delivered' });
  expect(hec.events).toHaveLength(3);
});

test('413: split in halves; max_request_bytes splits first; gzip', async () => {
  const hec = await emulator({ maxContentLength: 3000 });
  const o = output({ url: hec.url, compress: true });
  await o.start();
  const records = range(10).map((i) => rec(i, i === 4 ? { pad: 'x'.repeat(4000) } : {}));
  const r = (await o.send({ records })) as PartialResult;
  expect(r.rejected).toEqual([expect.objectContaining({ index: 4, reason: 'http_status_413' })]);
  expect(ids(hec).sort()).toEqual(range(10).filter((i) => i !== 4).map((i) => `k-${i}`).sort());
  expect(hec.requests.every((q) => q.gzip)).toBe(true);
  const hec2 = await emulator();
  const o2 = output({ url: hec2.url, max_request_bytes: '1KiB' });
  await o2.start();
  expect(await o2.send({ records: range(20).map((i) => rec(i)) })).toEqual({ status: 'delivered' });
  expect(hec2.requests.length).toBeGreaterThan(1);
  expect(ids(hec2)).toEqual(range(20).map((i) => `k-${i}`));
});

test('TLS: a certificate the CA did not sign is refused with a clear error; the right CA delivers', async () => {
  const pki = makePki();
  const hec = await emulator({ tls: { key: readFileSync(pki.serverKey), cert: readFileSync(pki.serverCert) } });
  const wrong = output({ url: hec.url });
  await wrong.start();
  const r = await wrong.send({ records: [rec(1)] });
  expect(r.status).toBe('retry');
  expect((r as { error: string }).error).toMatch(/TLS error/);
  const right = output({ url: hec.url, ca_file: pki.caCert });
  await right.start();
  expect(await right.send({ records: [rec(1)] })).toEqual({ status: 'delivered' });
  expect(ids(hec)).toEqual(['k-1']);
});

test('down at start, down mid-stream and back: every event arrives (at least once: only an answer lost after HEC kept the request repeats events)', async () => {
  const first = new HecEmulator({ tokens: [TOKEN] });
  await first.start();
  const port = first.port;
  await first.stop();
  const t = quiet();
  const runner = new OutputRunner({ name: 'hec', capacity: 10_000, whenFull: 'block', batchMax: 50, initialBackoffMs: 5, maxBackoffMs: 50 }, output({ url: `http://127.0.0.1:${port}` }), new MemoryQueue(10_000), new FlowControl(t), t, null);
  await runner.start();
  open.push({ stop: () => runner.stop(1000) });
  runner.enqueueMany(range(200).map((i) => rec(i)));
  await waitFor(() => runner.stats.retrying === 1);
  const hec = new HecEmulator({ tokens: [TOKEN], port });
  await hec.start();
  open.push(hec);
  await waitFor(() => hec.events.length >= 100);
  hec.faults.push({ status: 200, dropAfterIndexing: true });
  runner.enqueueMany(range(200).map((i) => rec(200 + i)));
  await hec.stop();
  await new Promise((r) => setTimeout(r, 100));
  await hec.start();
  await runner.drained();
  const got = ids(hec);
  expect([...new Set(got)].sort()).toEqual(range(400).map((i) => `k-${i}`).sort());
  expect(got.length - new Set(got).size).toBeLessThanOrEqual(50); // at most the one batch whose answer was lost
});

test('slow receiver: the queue fills, the sources pause, everything arrives in order', async () => {
  const hec = await emulator();
  hec.delayMs = 50;
  const t = quiet();
  const flow = new FlowControl(t);
  const runner = new OutputRunner({ name: 'hec', capacity: 100, whenFull: 'block', batchMax: 20, initialBackoffMs: 5, maxBackoffMs: 50 }, output({ url: hec.url }), new MemoryQueue(100), flow, t, null);
  await runner.start();
  open.push({ stop: () => runner.stop(1000) });
  runner.enqueueMany(range(150).map((i) => rec(i)));
  expect(flow.paused).toBe(true);
  await runner.drained();
  expect(flow.paused).toBe(false);
  expect(ids(hec)).toEqual(range(150).map((i) => `k-${i}`));
});

test('config checks: token required, channel a GUID', () => {
  const check = (raw: Record<string, unknown>) => splunkHecOutput.check!({ ...loadFields(SPLUNK_HEC_FIELDS, { url: 'https://s:8088', ...raw }), type: 'splunk_hec' } as never).map((p) => p.key);
  expect(check({ token: 'x' })).toEqual([]);
  expect(check({})).toEqual(['token']);
  expect(check({ token: 'x', channel: 'nope' })).toEqual(['channel']);
  expect(check({ token: 'x', channel: '0c2b4b8e-4a3e-4c1a-9f5e-1a2b3c4d5e6f' })).toEqual([]);
});

function quiet(): Telemetry {
  return new Telemetry({ level: 'silent', destination: new Writable({ write: (_c, _e, cb) => cb() }), processMetrics: false, repeatIntervalMs: 0 });
}

test('the shutdown deadline (AbortSignal) ends a request in flight: retry, the batch stays queued', async () => {
  const hec = await emulator();
  hec.delayMs = 3_000; // HEC would answer (200) after this; the abort comes first
  const o = output({ url: hec.url, timeout: '10s' });
  await o.start();
  await expectSendAborted(o, { records: [rec(1)] });
});
