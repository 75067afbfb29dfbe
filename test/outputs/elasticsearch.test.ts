/**
 * The elasticsearch output against the `_bulk` emulator (test/helpers/es-emulator.ts: no
 * Elasticsearch or OpenSearch can be installed here). Per-item results, exactly once by
 * `create` + event id, 413 splitting, auth, TLS, compression; with the output runner:
 * down at start, down mid-stream and back, slow receiver, wrong credentials.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, expect, test } from 'vitest';
import { MemoryQueue } from '../../src/buffer/queue.js';
import { loadFields } from '../../src/config/load.js';
import { ELASTICSEARCH_FIELDS } from '../../src/outputs/elasticsearch/config.js';
import { AUTH_RETRY_MS, ElasticsearchOutput, indexName } from '../../src/outputs/elasticsearch/elasticsearch.js';
import { elasticsearchOutput } from '../../src/outputs/elasticsearch/index.js';
import type { PartialResult } from '../../src/outputs/types.js';
import { FlowControl } from '../../src/pipeline/flow-control.js';
import { OutputRunner } from '../../src/pipeline/output-runner.js';
import { Telemetry } from '../../src/telemetry/telemetry.js';
import { waitFor } from '../helpers/daemon.js';
import { expectSendAborted } from '../helpers/abort.js';
import { EsEmulator, type EsEmulatorOptions } from '../helpers/es-emulator.js';
import { makePki } from '../helpers/pki.js';
import { startRedirectingProxy } from '../helpers/emulated-server.js';
import { tempDir } from '../helpers/temp.js';

const open: { stop(): Promise<unknown> }[] = [];
afterEach(async () => {
  for (const o of open.splice(0).reverse()) await o.stop();
});

async function emulator(o: EsEmulatorOptions = {}): Promise<EsEmulator> {
  const e = new EsEmulator(o);
  await e.start();
  open.push(e);
  return e;
}

function output(raw: Record<string, unknown>): ElasticsearchOutput {
  const c = loadFields(ELASTICSEARCH_FIELDS, raw['data_stream'] !== undefined ? raw : { index: 'cefd-%Y.%m.%d', ...raw });
  const o = new ElasticsearchOutput('es', c);
  open.push({ stop: () => o.close() });
  return o;
}

/** An ECS-shaped record with event id `k-<i>` on 2026-12-0<day>. */
const rec = (i: number, extra: Record<string, unknown> = {}, day = 6) =>
  JSON.stringify({ '@timestamp': `2026-12-0${day}T10:00:00.000Z`, event: { id: `k-${i}`, code: 'GNRL_EV_VIRUS_FOUND' }, message: `event ${i}`, ...extra });
const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const ids = (e: EsEmulator) => e.docs().map((d) => d.id).sort();

test('a batch becomes one _bulk of create actions: _id is the event id, the index is dated by @timestamp, ecs is the default encoding', async () => {
  const es = await emulator();
  const o = output({ url: es.url });
  await o.start();
  const r = await o.send({ records: [rec(1), rec(2, {}, 7)] });
  expect(r).toEqual({ status: 'delivered' });
  expect(es.docs().map((d) => [d.index, d.id])).toEqual([['cefd-2026.12.06', 'k-1'], ['cefd-2026.12.07', 'k-2']]);
  expect(es.docs()[0]!.source['message']).toBe('event 1');
  expect(es.requests[0]!.path).toBe('/_bulk');
  expect(es.requests[0]!.headers['content-type']).toBe('application/x-ndjson');
  expect(loadFields(ELASTICSEARCH_FIELDS, { url: es.url, index: 'x' }).encoding.codec).toBe('ecs');
  expect(indexName('logs-%Y-%m-%d-%H', Date.UTC(2026, 0, 2, 3))).toBe('logs-2026-01-02-03');
});

test('a retry after a lost answer writes nothing twice: the 409 of create by id counts as written (exactly once)', async () => {
  const es = await emulator();
  const o = output({ url: es.url });
  await o.start();
  es.requestFaults.push({ status: 200, dropAfterIndexing: true });
  const batch = { records: range(5).map((i) => rec(i)) };
  const first = await o.send(batch);
  expect(first.status).toBe('retry'); // the answer never came: the outcome is unknown
  expect(es.docs()).toHaveLength(5); // but the cluster did index them
  expect(await o.send(batch)).toEqual({ status: 'delivered' });
  expect(ids(es)).toEqual(range(5).map((i) => `k-${i}`));
});

test('a 200 with errors: true is not success: 429 items retried alone, the mapping error dead-lettered with the cluster\'s reason, the rest written', async () => {
  const es = await emulator();
  const o = output({ url: es.url });
  await o.start();
  await o.send({ records: [rec(100, { file: { size: 10 } })] }); // maps file.size as long
  let busy = 2;
  es.itemFault = (_src, id) => (id === 'k-3' && busy-- > 0 ? { status: 429, type: 'es_rejected_execution_exception', reason: 'rejected execution of coordinating operation' } : undefined);
  const records = range(5).map((i) => rec(i, i === 1 ? { file: { size: 'not a number' } } : {}));
  const r = (await o.send({ records })) as PartialResult;
  expect(r.status).toBe('partial');
  expect(r.retry).toEqual([3]);
  expect(r.rejected).toHaveLength(1);
  expect(r.rejected![0]!.index).toBe(1);
  expect(r.rejected![0]!.reason).toBe('elasticsearch_document_parsing_exception');
  expect(r.rejected![0]!.error).toContain('failed to parse field [file.size] of type [long]');
  expect(r.error).toContain('es_rejected_execution_exception');
  expect(ids(es)).toEqual(['k-0', 'k-100', 'k-2', 'k-4']);
  // The runner sends the retried record again, alone.
  const again = await o.send({ records: [records[3]!] });
  expect(again.status).toBe('retry'); // still busy: every record of the send is to retry
  expect(await o.send({ records: [records[3]!] })).toEqual({ status: 'delivered' });
  expect(ids(es)).toEqual(['k-0', 'k-100', 'k-2', 'k-3', 'k-4']);
});

test('an answer without one item per event is never success', async () => {
  const es = await emulator();
  const o = output({ url: es.url });
  await o.start();
  es.requestFaults.push({ status: 200, body: '{"took":1,"errors":false,"items":[]}' });
  const r = await o.send({ records: [rec(1), rec(2)] });
  expect(r.status).toBe('retry');
  expect((r as { error: string }).error).toContain('one result per event');
});

test('413: the batch is split in halves until the cluster takes it; one event over the limit alone is dead-lettered', async () => {
  const es = await emulator({ maxContentLength: 2000 });
  const o = output({ url: es.url });
  await o.start();
  const big = 'x'.repeat(2500);
  const records = range(12).map((i) => rec(i, i === 7 ? { padding: big } : {}));
  const r = (await o.send({ records })) as PartialResult;
  expect(r.status).toBe('partial');
  expect(r.retry ?? []).toEqual([]);
  expect(r.rejected).toEqual([expect.objectContaining({ index: 7, reason: 'http_status_413' })]);
  expect(ids(es)).toEqual(range(12).filter((i) => i !== 7).map((i) => `k-${i}`).sort());
  // max_request_bytes splits before the cluster has to refuse.
  const es2 = await emulator();
  const o2 = output({ url: es2.url, max_request_bytes: '2KiB' });
  await o2.start();
  expect(await o2.send({ records: range(30).map((i) => rec(i)) })).toEqual({ status: 'delivered' });
  expect(es2.requests.length).toBeGreaterThan(1);
  expect(es2.docs()).toHaveLength(30);
});

test('429 for the whole request is retried with its Retry-After; 503 retried', async () => {
  const es = await emulator();
  const o = output({ url: es.url });
  await o.start();
  es.requestFaults.push({ status: 429, headers: { 'retry-after': '7' } }, { status: 503 });
  const a = await o.send({ records: [rec(1)] });
  expect(a).toMatchObject({ status: 'retry', retryAfterMs: 7000 });
  expect((await o.send({ records: [rec(1)] })).status).toBe('retry');
  expect(await o.send({ records: [rec(1)] })).toEqual({ status: 'delivered' });
});

test('basic auth, API key (ApiKey scheme) and bearer token from files; gzip bodies; wrong credentials: a clear error and a long wait, never a dead letter', async () => {
  const dir = tempDir();
  const es = await emulator({ users: { cefd: 'pa:ss' }, apiKeys: ['a2V5aWQ6c2VjcmV0'], bearerTokens: ['tok-123456'] });
  writeFileSync(join(dir, 'pw'), 'pa:ss\n');
  writeFileSync(join(dir, 'key'), 'a2V5aWQ6c2VjcmV0\n');
  writeFileSync(join(dir, 'tok'), 'tok-123456\n');
  writeFileSync(join(dir, 'bad'), 'wrong-password\n');
  let i = 0;
  for (const auth of [{ basic_auth_user: 'cefd', basic_auth_password_file: join(dir, 'pw') }, { api_key_file: join(dir, 'key') }, { bearer_token_file: join(dir, 'tok') }]) {
    const o = output({ url: es.url, compress: true, ...auth });
    await o.start();
    expect(await o.send({ records: [rec(i++)] })).toEqual({ status: 'delivered' });
  }
  expect(es.requests.every((r) => r.gzip)).toBe(true);
  expect(es.requests[1]!.headers['authorization']).toBe('ApiKey a2V5aWQ6c2VjcmV0');
  const bad = output({ url: es.url, basic_auth_user: 'cefd', basic_auth_password_file: join(dir, 'bad') });
  await bad.start();
  const r = await bad.send({ records: [rec(99)] });
  expect(r.status).toBe('retry');
  expect(r).toMatchObject({ retryAfterMs: AUTH_RETRY_MS });
  const err = (r as { error: string }).error;
  expect(err).toContain('HTTP 401');
  expect(err).toContain('refuses the credentials');
  expect(err).not.toContain('wrong-password');
});

test('item 403 (the role lacks the index privilege) and a missing ingest pipeline are retried with a long wait, never dead-lettered; delivered once fixed', async () => {
  const dir = tempDir();
  writeFileSync(join(dir, 'pw'), 'pw\n');
  const es = await emulator({ users: { cefd: 'pw' }, indexPrivileges: { cefd: ['other-*'] } });
  const o = output({ url: es.url, basic_auth_user: 'cefd', basic_auth_password_file: join(dir, 'pw'), pipeline: 'ksc' });
  await o.start();
  const denied = await o.send({ records: [rec(1), rec(2)] });
  expect(denied).toMatchObject({ status: 'retry', retryAfterMs: AUTH_RETRY_MS });
  expect((denied as { error: string }).error).toMatch(/403 security_exception: action \[indices:data\/write\/bulk\[s\]\] is unauthorized for user \[cefd\]/);
  es.indexPrivileges.set('cefd', ['cefd-*']); // the role is fixed
  const noPipeline = await o.send({ records: [rec(1), rec(2)] });
  expect(noPipeline).toMatchObject({ status: 'retry', retryAfterMs: AUTH_RETRY_MS });
  expect((noPipeline as { error: string }).error).toMatch(/400 illegal_argument_exception: pipeline with id \[ksc\] does not exist/);
  es.pipelines.add('ksc'); // PUT _ingest/pipeline/ksc
  expect(await o.send({ records: [rec(1), rec(2)] })).toEqual({ status: 'delivered' });
  expect(ids(es)).toEqual(['k-1', 'k-2']);
});

test('item cluster_block_exception 403 (a write block) among written items: only it is retried, with a long wait', async () => {
  const es = await emulator();
  es.itemFault = (_src, id) => (id === 'k-2' ? { status: 403, type: 'cluster_block_exception', reason: 'index [cefd-2026.12.06] blocked by: [FORBIDDEN/8/index write (api)];' } : undefined);
  const o = output({ url: es.url });
  await o.start();
  const r = await o.send({ records: [rec(1), rec(2), rec(3)] });
  expect(r).toMatchObject({ status: 'partial', retry: [1], retryAfterMs: AUTH_RETRY_MS });
  expect((r as { rejected?: unknown[] }).rejected ?? []).toEqual([]);
  expect(ids(es)).toEqual(['k-1', 'k-3']);
});

test('items refused by how the cluster is set up (auto-create off, a closed index, an alias without a write index) are retried with a long wait, never dead-lettered; delivered once fixed', async () => {
  const es = await emulator({ autoCreateIndex: false });
  const o = output({ url: es.url });
  await o.start();
  const errorOf = (r: unknown) => (r as { error: string }).error;
  // action.auto_create_index: false, and no index for the day yet.
  const missing = await o.send({ records: [rec(1), rec(2)] });
  expect(missing).toMatchObject({ status: 'retry', retryAfterMs: AUTH_RETRY_MS });
  expect(errorOf(missing)).toMatch(/2 event\(s\) refused by the cluster's or cefd's configuration \(404 index_not_found_exception: no such index \[cefd-2026\.12\.06\] and \[action\.auto_create_index\] is \[false\]\); create the index/);
  es.createIndex('cefd-2026.12.06'); // PUT cefd-2026.12.06
  es.closed.add('cefd-2026.12.06'); // POST cefd-2026.12.06/_close
  const closed = await o.send({ records: [rec(1), rec(2)] });
  expect(closed).toMatchObject({ status: 'retry', retryAfterMs: AUTH_RETRY_MS });
  expect(errorOf(closed)).toMatch(/\(400 index_closed_exception: closed\); open the index/);
  es.closed.delete('cefd-2026.12.06'); // POST cefd-2026.12.06/_open
  // Among written items, only the one for the missing index waits.
  const mixed = await o.send({ records: [rec(1), rec(2, {}, 7)] });
  expect(mixed).toMatchObject({ status: 'partial', retry: [1], retryAfterMs: AUTH_RETRY_MS });
  expect((mixed as PartialResult).rejected ?? []).toEqual([]);
  es.autoCreateIndex = true; // PUT _cluster/settings
  expect(await o.send({ records: [rec(2, {}, 7)] })).toEqual({ status: 'delivered' });
  // Written through an alias that names several indices and no write index.
  es.aliases.set('cefd', null);
  const viaAlias = output({ url: es.url, index: 'cefd' });
  await viaAlias.start();
  const noWrite = await viaAlias.send({ records: [rec(3)] });
  expect(noWrite).toMatchObject({ status: 'retry', retryAfterMs: AUTH_RETRY_MS });
  expect(errorOf(noWrite)).toMatch(/\(400 illegal_argument_exception: no write index is defined for alias \[cefd\]\..*\); give the alias a write index/);
  es.aliases.set('cefd', 'cefd-000002'); // POST _aliases with is_write_index: true
  expect(await viaAlias.send({ records: [rec(3)] })).toEqual({ status: 'delivered' });
  expect(es.docs().map((d) => [d.index, d.id])).toEqual([['cefd-2026.12.06', 'k-1'], ['cefd-2026.12.07', 'k-2'], ['cefd-000002', 'k-3']]);
});

test('a url that names no bulk API (404 from a wrong path or a proxy, a redirect to https): retried with a long wait and a clear error, never dead-lettered', async () => {
  const es = await emulator();
  const wrongPath = output({ url: `${es.url}/proxy/es` });
  await wrongPath.start();
  const r = await wrongPath.send({ records: [rec(1), rec(2)] });
  expect(r).toMatchObject({ status: 'retry', retryAfterMs: AUTH_RETRY_MS });
  expect((r as { error: string }).error).toContain('HTTP 404');
  expect((r as { error: string }).error).toContain('no bulk API at this URL');
  // A proxy that sends http to https.
  const redirect = await startRedirectingProxy(301);
  open.push(redirect);
  const moved = output({ url: redirect.url });
  await moved.start();
  const r2 = await moved.send({ records: [rec(3)] });
  expect(r2).toMatchObject({ status: 'retry', retryAfterMs: AUTH_RETRY_MS });
  expect((r2 as { error: string }).error).toContain('HTTP 301');
  // Fixed in the configuration: every event is written.
  const fixed = output({ url: es.url });
  await fixed.start();
  expect(await fixed.send({ records: [rec(1), rec(2), rec(3)] })).toEqual({ status: 'delivered' });
  expect(ids(es)).toEqual(['k-1', 'k-2', 'k-3']);
});

test('wrong credentials under the runner: no retry storm, nothing dead-lettered, nothing counted as sent', async () => {
  const es = await emulator({ bearerTokens: ['right-token'] });
  const o = output({ url: es.url, bearer_token: 'wrong-token' });
  const t = quiet();
  const dead: string[] = [];
  const runner = new OutputRunner(
    { name: 'es', capacity: 100, whenFull: 'block', batchMax: 100, initialBackoffMs: 1, maxBackoffMs: 60_000 },
    o,
    new MemoryQueue(100),
    new FlowControl(t),
    t,
    (_o, recs) => dead.push(...recs),
  );
  await runner.start();
  open.push({ stop: () => runner.stop(100) });
  runner.enqueueMany([rec(1), rec(2)]);
  await waitFor(() => es.authFailures >= 1);
  await new Promise((r) => setTimeout(r, 300)); // with a 1 ms backoff, a storm would be hundreds of requests
  expect(es.authFailures).toBe(1);
  expect(dead).toEqual([]);
  expect(runner.stats.sent).toBe(0);
});

test('TLS: a server certificate the CA did not sign is refused with a clear error; the right CA delivers', async () => {
  const pki = makePki();
  const es = await emulator({ tls: { key: readFileSync(pki.serverKey), cert: readFileSync(pki.serverCert) } });
  const wrong = output({ url: es.url });
  await wrong.start();
  const r = await wrong.send({ records: [rec(1)] });
  expect(r.status).toBe('retry');
  expect((r as { error: string }).error).toMatch(/TLS error/);
  expect(es.docs()).toHaveLength(0);
  const right = output({ url: es.url, ca_file: pki.caCert });
  await right.start();
  expect(await right.send({ records: [rec(1)] })).toEqual({ status: 'delivered' });
});

test('data stream: create with @timestamp into the stream (backing index named by the cluster)', async () => {
  const es = await emulator({ dataStreams: ['logs-kaspersky.ksc-default'] });
  const o = output({ url: es.url, data_stream: 'logs-kaspersky.ksc-default' });
  await o.start();
  expect(await o.send({ records: [rec(1)] })).toEqual({ status: 'delivered' });
  expect(es.docs()[0]!.index).toMatch(/^\.ds-logs-kaspersky\.ksc-default-\d{4}\.\d{2}\.\d{2}-000001$/);
  // A record without @timestamp is the cluster's per-item error, dead-lettered.
  const r = (await o.send({ records: [JSON.stringify({ event: { id: 'x' } })] })) as PartialResult;
  expect(r.rejected![0]!.error).toContain('[@timestamp] is missing');
});

test('server down at start, down mid-stream and back: every event written exactly once', async () => {
  const es = new EsEmulator();
  await es.start();
  const port = es.port;
  await es.stop();
  const o = output({ url: `http://127.0.0.1:${port}` });
  const t = quiet();
  const runner = new OutputRunner(
    { name: 'es', capacity: 10_000, whenFull: 'block', batchMax: 50, initialBackoffMs: 5, maxBackoffMs: 50 },
    o,
    new MemoryQueue(10_000),
    new FlowControl(t),
    t,
    null,
  );
  await runner.start();
  open.push({ stop: () => runner.stop(1000) });
  runner.enqueueMany(range(200).map((i) => rec(i)));
  await waitFor(() => runner.stats.retrying === 1);
  const back = new EsEmulator({ port });
  await back.start();
  open.push(back);
  await waitFor(() => back.docs().length >= 100);
  // Down mid-stream: an answer lost after indexing, then the cluster gone for a while.
  back.requestFaults.push({ status: 200, dropAfterIndexing: true });
  runner.enqueueMany(range(200).map((i) => rec(200 + i)));
  await back.stop();
  await new Promise((r) => setTimeout(r, 100));
  await back.start();
  await runner.drained();
  expect(ids(back)).toEqual(range(400).map((i) => `k-${i}`).sort());
  expect(runner.stats.sent).toBe(400);
});

test('slow receiver: one request in flight, the queue fills, the sources pause (bounded memory), and everything arrives', async () => {
  const es = await emulator();
  es.delayMs = 50;
  const o = output({ url: es.url });
  const t = quiet();
  const flow = new FlowControl(t);
  const runner = new OutputRunner(
    { name: 'es', capacity: 100, whenFull: 'block', batchMax: 20, initialBackoffMs: 5, maxBackoffMs: 50 },
    o,
    new MemoryQueue(100),
    flow,
    t,
    null,
  );
  await runner.start();
  open.push({ stop: () => runner.stop(1000) });
  runner.enqueueMany(range(150).map((i) => rec(i)));
  expect(flow.paused).toBe(true);
  await runner.drained();
  expect(flow.paused).toBe(false);
  expect(es.docs()).toHaveLength(150);
});

test('opensearch flavor: rejected_execution_exception retried; config checks', async () => {
  const es = await emulator({ flavor: 'opensearch' });
  const o = output({ url: es.url, flavor: 'opensearch' });
  await o.start();
  let once = true;
  es.itemFault = () => (once ? ((once = false), { status: 429, type: 'es_rejected_execution_exception', reason: 'busy' }) : undefined);
  const r = (await o.send({ records: [rec(1), rec(2)] })) as PartialResult;
  expect(r.retry).toEqual([0]);
  expect(r.error).toContain('rejected_execution_exception');
  const check = (raw: Record<string, unknown>) => elasticsearchOutput.check!({ ...loadFields(ELASTICSEARCH_FIELDS, { url: 'http://x:9200', ...raw }), type: 'elasticsearch' } as never).map((p) => p.key);
  expect(check({ index: 'ok-%Y' })).toEqual([]);
  expect(check({})).toEqual(['index']);
  expect(check({ index: 'Upper' })).toEqual(['index']);
  expect(check({ index: 'a', encoding: { codec: 'cef' } })).toEqual(['encoding.codec']);
  expect(check({ data_stream: 'logs-a-b', encoding: { codec: 'native' } })).toEqual(['encoding.codec']);
  expect(check({ index: 'a', flavor: 'opensearch', api_key: 'k' })).toEqual(['api_key']);
  // The field options trim the encoded record: the id and time are checked at the encoding's
  // own paths (ecs, the default: `event.id` and `@timestamp`; native `id`, `timestamp`; kuma `ID`, `Timestamp`).
  expect(check({ index: 'a', encoding: { only_fields: ['cef'] } })).toEqual(['encoding']);
  expect(check({ index: 'a', encoding: { only_fields: ['cef', 'event.id', '@timestamp'] } })).toEqual([]);
  expect(check({ index: 'a', encoding: { only_fields: ['cef', 'event', '@timestamp'] } })).toEqual([]);
  expect(check({ index: 'a', encoding: { only_fields: ['cef', 'id', 'timestamp'] } })).toEqual(['encoding']);
  expect(check({ index: 'a', encoding: { except_fields: ['cef', 'event.original'] } })).toEqual([]);
  expect(check({ index: 'a', encoding: { except_fields: ['event.id'] } })).toEqual(['encoding']);
  expect(check({ index: 'a', encoding: { except_fields: ['event'] } })).toEqual(['encoding']);
  expect(check({ index: 'a', encoding: { codec: 'native', only_fields: ['cef', 'id', 'timestamp'] } })).toEqual([]);
  expect(check({ index: 'a', encoding: { codec: 'native', except_fields: ['id'] } })).toEqual(['encoding']);
  expect(check({ index: 'a', encoding: { codec: 'kuma', except_fields: ['ID'] } })).toEqual(['encoding']);
  expect(check({ index: 'a', encoding: { codec: 'kuma', except_fields: ['Extra', 'Raw'] } })).toEqual([]);
  // The timestamp: @timestamp of a data stream document, and the date of a dated index name.
  expect(check({ data_stream: 'logs-a-b', encoding: { only_fields: ['cef', 'event.id'] } })).toEqual(['encoding']);
  expect(check({ data_stream: 'logs-a-b', encoding: { only_fields: ['@timestamp', 'event', 'host', 'kaspersky'] } })).toEqual([]);
  expect(check({ index: 'a-%Y.%m.%d', encoding: { except_fields: ['@timestamp'] } })).toEqual(['encoding']);
  expect(check({ index: 'a-%Y.%m.%d', encoding: { codec: 'native', except_fields: ['timestamp'] } })).toEqual(['encoding']);
  expect(check({ index: 'a-%Y.%m.%d', encoding: { codec: 'kuma', only_fields: ['ID', 'Name'] } })).toEqual(['encoding']);
  expect(check({ index: 'a-%Y.%m.%d', encoding: { only_fields: ['cef', 'event.id', '@timestamp'] } })).toEqual([]);
  expect(check({ index: 'a', encoding: { except_fields: ['@timestamp'] } })).toEqual([]);
});

function quiet(): Telemetry {
  return new Telemetry({ level: 'silent', destination: new Writable({ write: (_c, _e, cb) => cb() }), processMetrics: false, repeatIntervalMs: 0 });
}

test('the shutdown deadline (AbortSignal) ends a request in flight: retry, the batch stays queued', async () => {
  const es = await emulator();
  es.delayMs = 3_000; // the cluster would answer (201) after this; the abort comes first
  const o = output({ url: es.url, timeout: '10s' });
  await o.start();
  await expectSendAborted(o, { records: [rec(1)] });
});
