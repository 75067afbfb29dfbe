/**
 * A reload that fails leaves the running daemon exactly as it was (docs/configuration.md,
 * "Reloading"): listeners on their old ports, SQL sources polling, the old outputs and
 * routes (on the decode workers too), `current` the old configuration, one error line
 * with the code `config_reload_failed`, and the failure counted. Real sockets, a real
 * PostgreSQL (test/helpers/db-servers.ts), the daemon in this process.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, expect, test } from 'vitest';
import type { Daemon } from '../../src/daemon.js';
import type { Source } from '../../src/sources/source.js';
import { MetricsServer } from '../../src/telemetry/http.js';
import { freePort } from '../helpers/child.js';
import { readNdjson, scrape, sendTcp, startFromFile, tempDir, waitFor, type LogCapture } from '../helpers/daemon.js';
import { startPostgres, type DbServer } from '../helpers/db-servers.js';
import { createKscSchema } from '../helpers/ksc-sql-schema.js';
import { ADMIN_TOKEN, DAEMON_BASE_YAML, startKscDaemon } from '../helpers/ksc-daemon.js';

const daemons: Daemon[] = [];
const held: net.Server[] = [];
let db: DbServer | undefined;
afterEach(async () => {
  await Promise.all(daemons.splice(0).map((d) => d.stop()));
  await Promise.all(held.splice(0).map((s) => new Promise((r) => s.close(r))));
});
afterAll(async () => {
  await db?.stop();
}, 120_000);

const line = (tag: string, i: number) => `CEF:0|V|P|1|${tag}|n|5|cnt=${i}\n`;
const tagOf = (e: Record<string, unknown>) => (e['cef'] as { deviceEventClassId: string }).deviceEventClassId;

/** A port another "process" holds: a plain server of this test, not the daemon's. */
async function heldPort(): Promise<number> {
  const s = net.createServer((c) => c.destroy());
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  held.push(s);
  return (s.address() as net.AddressInfo).port;
}

/** Whether something accepts TCP connections on `port` (false: ECONNREFUSED). */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNREFUSED' ? resolve(false) : reject(e)));
  });
}

const failures = (logs: LogCapture) => logs.parsed().filter((l) => l['code'] === 'config_reload_failed');

async function readyz(port: number): Promise<number> {
  return (await fetch(`http://127.0.0.1:${port}/readyz`)).status;
}

test('a listener moved to a port another process holds: the reload fails, the old port and the old routes stay (decode workers included)', async () => {
  const dir = tempDir();
  const yaml = (port: number, filter: string) => `state_dir: ${dir}/state
decode_workers: 2
listeners: [ { name: tcp1, type: tcp, host: 127.0.0.1, port: ${port} } ]
outputs: [ { name: events, type: file, path: ${dir}/events.ndjson, filter: '${filter}' } ]
dead_letter: { path: ${dir}/dead.ndjson }
metrics: { host: 127.0.0.1, port: 0 }
`;
  const { d, file, logs } = await startFromFile(dir, yaml(0, 'true'), daemons);
  const before = d.current;
  const oldPort = d.ports()['tcp1']!;
  await sendTcp(oldPort, [line('before', 0)]);
  await waitFor(() => readNdjson(join(dir, 'events.ndjson'), { tolerateTornTail: true }).length >= 1, 30_000, 'the first event');
  const busy = await heldPort();
  // The new configuration also filters every event out: none of it may take effect.
  writeFileSync(file, yaml(busy, 'cef.name == "never"'));
  expect(await d.reload()).toBe(false);
  expect(d.current).toBe(before);
  expect(d.ports()['tcp1']).toBe(oldPort);
  expect(await accepts(oldPort)).toBe(true);
  expect(d.notReady()).toEqual([]);
  expect(await readyz(d.metricsPort()!)).toBe(200);
  // The decode workers loaded the new configuration before the reload failed: they have the
  // running one again, the version the pipeline routes by (else every read they decode is
  // decoded again on the main thread). Private fields: nothing outside shows the version.
  const inner = d as unknown as { pool: { version: number }; pipeline: { workerVersion: number } };
  expect(inner.pool.version).toBeGreaterThan(1);
  expect(inner.pipeline.workerVersion).toBe(inner.pool.version);
  // Decoded (on the workers) and routed under the old filter.
  await sendTcp(oldPort, Array.from({ length: 20 }, (_, i) => line('after', i)));
  await waitFor(() => readNdjson(join(dir, 'events.ndjson'), { tolerateTornTail: true }).filter((e) => tagOf(e) === 'after').length >= 20, 30_000, 'the 20 events sent after the failed reload');
  const f = failures(logs);
  expect(f).toHaveLength(1);
  expect(String(f[0]!['err'])).toContain(`${busy}`);
  const m = await scrape(d.metricsPort()!);
  expect(m.get('cefd_config_reloads_total{result="failed"}')).toBe(1);
  expect(m.get('cefd_config_reloads_total{result="ok"}')).toBeUndefined();
  expect(await d.stop()).toBe(0);
  expect(readNdjson(join(dir, 'dead.ndjson'))).toEqual([]);
});

test('an output that cannot open its own file when a failed reload gives its disk buffer back: its events wait, each try starts it again, and they go once the file opens', async () => {
  const dir = tempDir();
  mkdirSync(join(dir, 'out'));
  const yaml = (fsync: string) => `state_dir: ${dir}/state
decode_workers: 2
listeners: [ { name: tcp1, type: tcp, host: 127.0.0.1, port: 0 } ]
outputs: [ { name: events, type: file, path: ${dir}/out/events.ndjson, fsync: ${fsync}, buffer: { type: disk }, retry: { initial_backoff: 20ms, max_backoff: 100ms } } ]
dead_letter: { path: ${dir}/dead.ndjson }
metrics: { host: 127.0.0.1, port: 0 }
`;
  const { d, file, logs } = await startFromFile(dir, yaml('never'), daemons);
  const port = d.ports()['tcp1']!;
  await sendTcp(port, [line('before', 0)]);
  await waitFor(() => readNdjson(join(dir, 'out', 'events.ndjson'), { tolerateTornTail: true }).length === 1, 30_000, 'the first event');
  // The output's folder becomes a plain file: neither the changed output nor the old one
  // given back can open its file (not even as root).
  rmSync(join(dir, 'out'), { recursive: true });
  writeFileSync(join(dir, 'out'), 'not a folder');
  writeFileSync(file, yaml('batch'));
  expect(await d.reload()).toBe(false);
  expect(String(failures(logs)[0]!['err'])).toContain(`cannot open ${dir}/out/events.ndjson`);
  expect(logs.parsed().some((l) => String(l['msg']).includes('after the failed reload its output does not start either'))).toBe(true);
  await sendTcp(port, Array.from({ length: 5 }, (_, i) => line('waiting', i)));
  const metrics = d.metricsPort()!;
  await waitFor(async () => (await scrape(metrics)).get('cefd_output_retrying{output="events"}') === 1, 30_000, 'the output retrying');
  const retry = logs.parsed().find((l) => l['output'] === 'events' && String(l['err']).startsWith('the output is not started: '));
  expect(String(retry?.['err'])).toMatch(/^the output is not started: file output events: cannot open \/.*\/out\/events\.ndjson: EEXIST/);
  // The plain file goes: the next try makes the folder, starts the output, and the waiting events go.
  rmSync(join(dir, 'out'));
  await waitFor(() => readNdjson(join(dir, 'out', 'events.ndjson'), { tolerateTornTail: true }).length === 5, 30_000, 'the 5 waiting events');
  expect(readNdjson(join(dir, 'out', 'events.ndjson')).map((e) => tagOf(e))).toEqual(Array(5).fill('waiting'));
  await waitFor(async () => (await scrape(metrics)).get('cefd_output_retrying{output="events"}') === 0, 30_000, 'the output delivering again');
  expect(await d.stop()).toBe(0);
  expect(readNdjson(join(dir, 'dead.ndjson'))).toEqual([]);
});

test('a listener that keeps its port but changes closes first; when another part of the reload fails it opens again as it was', async () => {
  const dir = tempDir();
  const keptPort = await freePort();
  const yaml = (frame: string, port2: number) => `state_dir: ${dir}/state
listeners:
  - { name: a, type: tcp, host: 127.0.0.1, port: ${keptPort}, max_frame_bytes: ${frame} }
  - { name: b, type: tcp, host: 127.0.0.1, port: ${port2} }
outputs: [ { name: events, type: file, path: ${dir}/events.ndjson } ]
dead_letter: { path: ${dir}/dead.ndjson }
metrics: { enabled: false }
`;
  const { d, file, logs } = await startFromFile(dir, yaml('64KiB', 0), daemons);
  const before = d.current;
  const bPort = d.ports()['b']!;
  const busy = await heldPort();
  writeFileSync(file, yaml('32KiB', busy));
  expect(await d.reload()).toBe(false);
  expect(d.current).toBe(before);
  expect(d.ports()).toEqual({ a: keptPort, b: bPort });
  expect(d.notReady()).toEqual([]);
  await sendTcp(keptPort, [line('a', 1)]);
  await sendTcp(bPort, [line('b', 1)]);
  await waitFor(() => readNdjson(join(dir, 'events.ndjson'), { tolerateTornTail: true }).length >= 2, 30_000, 'an event through each listener');
  expect(failures(logs)).toHaveLength(1);
});

test('a listener and the metrics endpoint that a failed reload could not open again are opened by the next reload, even with the configuration unchanged', async () => {
  const dir = tempDir();
  const keptPort = await freePort();
  const metricsPort = await freePort();
  const yaml = (frame: string, port2: number, level: string) => `state_dir: ${dir}/state
logging: { level: ${level} }
listeners:
  - { name: a, type: tcp, host: 127.0.0.1, port: ${keptPort}, max_frame_bytes: ${frame} }
  - { name: b, type: tcp, host: 127.0.0.1, port: ${port2} }
outputs: [ { name: events, type: file, path: ${dir}/events.ndjson } ]
dead_letter: { path: ${dir}/dead.ndjson }
metrics: { host: 127.0.0.1, port: ${metricsPort}, bearer_token: ${level === 'info' ? 'a'.repeat(32) : 'b'.repeat(32)} }
`;
  const { d, file, logs } = await startFromFile(dir, yaml('64KiB', 0, 'info'), daemons);
  const before = d.current;
  const bPort = d.ports()['b']!;
  // Listener a and the metrics endpoint keep their ports and change: each closes first. The
  // new metrics endpoint does not start, so the reload fails, and opening a and the metrics
  // endpoint again as they were fails too (as when another process took the port
  // meanwhile): injected, so that it happens every time.
  const topology = (d as unknown as { topology: { source: (l: { name: string }, ...rest: unknown[]) => Promise<Source> } }).topology;
  const realSource = topology.source.bind(topology);
  let aStarts = 0;
  topology.source = (l, ...rest) => (l.name === 'a' && ++aStarts > 1 ? Promise.reject(new Error('injected: cannot listen')) : realSource(l, ...rest));
  const realStart = MetricsServer.prototype.start;
  MetricsServer.prototype.start = () => Promise.reject(new Error('injected: cannot listen'));
  try {
    writeFileSync(file, yaml('32KiB', 0, 'debug'));
    expect(await d.reload()).toBe(false);
  } finally {
    topology.source = realSource;
    MetricsServer.prototype.start = realStart;
  }
  expect(d.current).toBe(before);
  expect(logs.parsed().filter((l) => /cannot be restored/.test(String(l['msg']))).length).toBe(2);
  expect(d.notReady()).toEqual(['listener a']);
  expect(await accepts(keptPort)).toBe(false);
  expect(await accepts(metricsPort)).toBe(false);
  // The running configuration again, unchanged: what is down opens, what runs stays.
  writeFileSync(file, yaml('64KiB', 0, 'info'));
  expect(await d.reload()).toBe(true);
  expect(d.notReady()).toEqual([]);
  expect(d.ports()).toEqual({ a: keptPort, b: bPort });
  expect(d.metricsPort()).toBe(metricsPort);
  expect((await fetch(`http://127.0.0.1:${metricsPort}/readyz`, { headers: { authorization: `Bearer ${'a'.repeat(32)}` } })).status).toBe(200);
  await sendTcp(keptPort, [line('a', 1)]);
  await sendTcp(bPort, [line('b', 1)]);
  await waitFor(() => readNdjson(join(dir, 'events.ndjson'), { tolerateTornTail: true }).length >= 2, 30_000, 'an event through each listener');
  expect(readNdjson(join(dir, 'events.ndjson')).map(tagOf).sort()).toEqual(['a', 'b']);
});

test('a reload that succeeds moves a listener to a new port: the old one is closed, the new one takes events', async () => {
  const dir = tempDir();
  const newPort = await freePort();
  const yaml = (port: number) => `state_dir: ${dir}/state
listeners: [ { name: tcp1, type: tcp, host: 127.0.0.1, port: ${port} } ]
outputs: [ { name: events, type: file, path: ${dir}/events.ndjson } ]
dead_letter: { path: ${dir}/dead.ndjson }
metrics: { enabled: false }
`;
  const { d, file, logs } = await startFromFile(dir, yaml(0), daemons);
  const oldPort = d.ports()['tcp1']!;
  writeFileSync(file, yaml(newPort));
  expect(await d.reload()).toBe(true);
  expect(d.ports()['tcp1']).toBe(newPort);
  expect((d.current.listeners[0] as { port: number }).port).toBe(newPort);
  expect(await accepts(oldPort)).toBe(false);
  await sendTcp(newPort, [line('moved', 1)]);
  await waitFor(() => readNdjson(join(dir, 'events.ndjson'), { tolerateTornTail: true }).length >= 1, 30_000, 'the event on the new port');
  expect(failures(logs)).toEqual([]);
});

test('a listener renamed on the same port: the old one closes before the new one binds, and the reload succeeds', async () => {
  const dir = tempDir();
  const port = await freePort();
  const yaml = (name: string) => `state_dir: ${dir}/state
listeners: [ { name: ${name}, type: tcp, host: 127.0.0.1, port: ${port} } ]
outputs: [ { name: events, type: file, path: ${dir}/events.ndjson } ]
dead_letter: { path: ${dir}/dead.ndjson }
metrics: { enabled: false }
`;
  const { d, file } = await startFromFile(dir, yaml('x'), daemons);
  writeFileSync(file, yaml('y'));
  expect(await d.reload()).toBe(true);
  expect(d.ports()).toEqual({ y: port });
  await sendTcp(port, [line('renamed', 1)]);
  await waitFor(() => readNdjson(join(dir, 'events.ndjson'), { tolerateTornTail: true }).some((e) => e['listener'] === 'y'), 30_000, 'an event of listener y');
});

test('the metrics endpoint moved to a port another process holds: the reload fails and the old endpoint keeps serving', async () => {
  const dir = tempDir();
  const yaml = (port: number) => `state_dir: ${dir}/state
listeners: [ { name: tcp1, type: tcp, host: 127.0.0.1, port: 0 } ]
outputs: [ { name: events, type: file, path: ${dir}/events.ndjson } ]
dead_letter: { path: ${dir}/dead.ndjson }
metrics: { host: 127.0.0.1, port: ${port} }
`;
  const { d, file, logs } = await startFromFile(dir, yaml(0), daemons);
  const before = d.current;
  const metricsPort = d.metricsPort()!;
  writeFileSync(file, yaml(await heldPort()));
  expect(await d.reload()).toBe(false);
  expect(d.current).toBe(before);
  expect(d.metricsPort()).toBe(metricsPort);
  expect((await scrape(metricsPort)).get('cefd_config_reloads_total{result="failed"}')).toBe(1);
  expect(await readyz(metricsPort)).toBe(200);
  expect(failures(logs)).toHaveLength(1);
});

test('the KSC admin API moved to a port another process holds: the reload fails (counted, config_reload_failed) and the admin API and its console keep serving on the old port; the next reload moves it once the port is free; on the same port, settings that do not start give way to the old ones again', async () => {
  const dir = tempDir();
  const yaml = (port: number, token = ADMIN_TOKEN, tls = '') => `${DAEMON_BASE_YAML.replaceAll('{dir}', dir)}ksc:
  sync_on_start: false
  admin: { enabled: true, host: 127.0.0.1, port: ${port}, bearer_token: ${token}, console: { enabled: true }${tls} }
metrics: { host: 127.0.0.1, port: 0 }
`;
  const first = await freePort();
  const k = await startKscDaemon(yaml(first), { dir });
  daemons.push(k.daemon);
  const file = join(dir, 'cefd.yaml');
  const blocker = net.createServer((c) => c.destroy());
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  const busy = (blocker.address() as net.AddressInfo).port;
  // A fresh connection each (fetch would reuse one to a server a reload closed).
  const get = (port: number, path: string, token = ADMIN_TOKEN) =>
    new Promise<{ status: number; body: string }>((resolve, reject) =>
      http
        .get({ host: '127.0.0.1', port, path, agent: false, headers: { authorization: `Bearer ${token}` } }, (res) => {
          let body = '';
          res.setEncoding('utf8').on('data', (d: string) => (body += d)).on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        })
        .once('error', reject),
    );
  const tenants = async (port: number, token = ADMIN_TOKEN) => (await get(port, '/api/v1/tenants', token)).status;
  // The console's recent events (kept by the console the admin API serves).
  const seen = async (port: number, tag: string, token = ADMIN_TOKEN) =>
    ((JSON.parse((await get(port, '/console/api/events?limit=100', token)).body) as { events: { eventClassId?: string }[] }).events).some((e) => e.eventClassId === tag);

  writeFileSync(file, yaml(busy));
  expect(await k.daemon.reload()).toBe(false);
  expect(failures(k.logs)).toHaveLength(1);
  expect(String(failures(k.logs)[0]!['msg'])).toMatch(new RegExp(`extension ksc: admin API: cannot listen on 127\\.0\\.0\\.1:${busy}: .*EADDRINUSE.*; it keeps serving on 127\\.0\\.0\\.1:${first}; the rest of the new configuration is applied`));
  expect(k.logs.parsed().some((l) => l['msg'] === 'configuration reloaded')).toBe(false);
  const m = await scrape(k.metricsPort());
  expect(m.get('cefd_config_reloads_total{result="failed"}')).toBe(1);
  expect(m.get('cefd_config_reloads_total{result="ok"}')).toBeUndefined();
  expect(k.adminPort()).toBe(first);
  expect(await tenants(first)).toBe(200);
  expect(k.daemon.notReady()).toEqual([]);
  expect(await readyz(k.metricsPort())).toBe(200);
  // The old console still gets the recent events (the new one, closed, gave their slot up).
  await sendTcp(k.port('tcp'), [line('kept', 1)]);
  await waitFor(() => seen(first, 'kept'), 30_000, 'the event in the old console');

  // The same file again once the port is free: moved, the old port closed.
  await new Promise((r) => blocker.close(r));
  expect(await k.daemon.reload()).toBe(true);
  expect(k.adminPort()).toBe(busy);
  expect(await accepts(first)).toBe(false);
  expect(await tenants(busy)).toBe(200);
  await sendTcp(k.port('tcp'), [line('moved', 2)]);
  await waitFor(() => seen(busy, 'moved'), 30_000, 'the event in the new console');

  // The same port with another token: closed first, then opened with the new one.
  const token2 = `${ADMIN_TOKEN}-rotated`;
  writeFileSync(file, yaml(busy, token2));
  expect(await k.daemon.reload()).toBe(true);
  expect(k.adminPort()).toBe(busy);
  expect(await tenants(busy)).toBe(401);
  expect(await tenants(busy, token2)).toBe(200);
  await sendTcp(k.port('tcp'), [line('rotated', 3)]);
  await waitFor(() => seen(busy, 'rotated', token2), 30_000, 'the event in the console of the new token');

  // The same port with settings that do not start (a certificate that is not PEM): it closed
  // first, so the old settings listen again, and the reload fails.
  writeFileSync(join(dir, 'bad.pem'), 'not a certificate\n');
  writeFileSync(file, yaml(busy, ADMIN_TOKEN, `, tls: { cert_file: ${dir}/bad.pem, key_file: ${dir}/bad.pem }`));
  expect(await k.daemon.reload()).toBe(false);
  expect(String(failures(k.logs)[1]!['msg'])).toMatch(/extension ksc: admin API: cannot listen on 127\.0\.0\.1:\d+: .*; it listens again with its old settings/);
  expect(k.adminPort()).toBe(busy);
  expect(await tenants(busy, token2)).toBe(200);
  expect(k.daemon.notReady()).toEqual([]);
  await sendTcp(k.port('tcp'), [line('restored', 4)]);
  await waitFor(() => seen(busy, 'restored', token2), 30_000, 'the event in the restored console');
});

test('a sql source given a normalizer that does not load: the reload fails and the source keeps polling', { timeout: 120_000 }, async () => {
  const pg = await startPostgres();
  db = pg;
  const schema = await createKscSchema(pg);
  const dir = tempDir();
  const yaml = (extra: string) => `state_dir: ${dir}/state
decode_workers: 0
listeners: []
outputs: [ { name: events, type: file, path: ${dir}/events.ndjson } ]
dead_letter: { path: ${dir}/dead.ndjson }
metrics: { host: 127.0.0.1, port: 0 }
sql_sources:
  - name: ksc
    url: "${pg.url()}"
    poll_interval: 200ms
    max_backoff: 2s
    connect_timeout: 2s
    query_timeout: 2s
${extra}`;
  await schema.insertEvents(1, 10);
  const { d, file, logs } = await startFromFile(dir, yaml(''), daemons);
  await waitFor(() => readNdjson(join(dir, 'events.ndjson'), { tolerateTornTail: true }).length >= 10, 30_000, 'the first 10 rows');
  const before = d.current;
  writeFileSync(file, yaml('    normalizers: [./nope.js]\n'));
  expect(await d.reload()).toBe(false);
  expect(d.current).toBe(before);
  expect(d.notReady()).toEqual([]);
  const f = failures(logs);
  expect(f).toHaveLength(1);
  expect(String(f[0]!['err'])).toContain('sql_sources[0].normalizers[0]');
  // Rows inserted now are still read, normalized as before.
  await schema.insertEvents(11, 20);
  await waitFor(() => readNdjson(join(dir, 'events.ndjson'), { tolerateTornTail: true }).length >= 20, 30_000, 'the next 10 rows');
  const events = readNdjson(join(dir, 'events.ndjson'));
  expect(events.map((e) => Number((e['sql'] as { cursor: number | string }).cursor))).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
  expect(events.every((e) => (e['ksc'] as { format?: string } | undefined)?.format === 'sql')).toBe(true);
  const m = await scrape(d.metricsPort()!);
  expect(m.get('cefd_config_reloads_total{result="failed"}')).toBe(1);

  // A changed source stops first; when the reload then fails (the new metrics endpoint does
  // not start) and the source cannot be started again as it was (injected), it is down
  // until the next reload, which starts it even with the configuration unchanged.
  const inner = d as unknown as { startSqlSource: (...a: unknown[]) => Promise<unknown> };
  const realStartSql = inner.startSqlSource;
  let sqlStarts = 0;
  inner.startSqlSource = function (this: unknown, ...a: unknown[]) {
    return ++sqlStarts > 1 ? Promise.reject(new Error('injected: cannot start')) : realStartSql.apply(this, a);
  };
  const realStart = MetricsServer.prototype.start;
  MetricsServer.prototype.start = () => Promise.reject(new Error('injected: cannot listen'));
  try {
    writeFileSync(file, yaml('    batch_rows: 7\n').replace(/port: 0/, 'port: 1'));
    expect(await d.reload()).toBe(false);
  } finally {
    delete (inner as { startSqlSource?: unknown }).startSqlSource;
    MetricsServer.prototype.start = realStart;
  }
  expect(sqlStarts).toBe(2);
  expect(d.notReady()).toEqual(['sql source ksc']);
  writeFileSync(file, yaml(''));
  expect(await d.reload()).toBe(true);
  expect(d.notReady()).toEqual([]);
  await schema.insertEvents(21, 30);
  await waitFor(() => readNdjson(join(dir, 'events.ndjson'), { tolerateTornTail: true }).length >= 30, 30_000, 'rows read after the source was started again');
  expect(readNdjson(join(dir, 'events.ndjson')).map((e) => Number((e['sql'] as { cursor: number | string }).cursor))).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
  expect(await d.stop()).toBe(0);
});
