/**
 * The nats source in a running cefd (child process) against a real nats-server 2.9:
 * frames published to a stream become events (with the ids, listener, peer and received
 * time the headers carry, or ids from the stream sequence), every message is acknowledged
 * once its event is in the output's buffer (nothing left pending), the lag gauge, a
 * kill -9 of cefd mid-stream (decoding on the workers and on the main thread): after a
 * restart every frame's event is in the output, the ones delivered twice with the same
 * id; and an output whose drop_newest queue is full: what it refused is not acknowledged.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, expect, test } from 'vitest';
import { connect, headers, type NatsConnection } from 'nats';
import { readNdjson, scrape, tempDir, waitFor } from '../helpers/daemon.js';
import { freePort, runCefd, type ChildDaemon } from '../helpers/child.js';
import { natsServer, stopAllNats, type NatsServer } from '../helpers/nats-server.js';

const children: ChildDaemon[] = [];
const clients: NatsConnection[] = [];
const servers: http.Server[] = [];
afterEach(async () => {
  for (const c of children.splice(0)) c.proc.kill('SIGKILL');
  for (const sv of servers.splice(0)) sv.close();
  await Promise.all(clients.splice(0).map((c) => c.close()));
});
afterAll(stopAllNats);

const line = (i: number) => `<14>1 2026-11-28T10:00:00.000Z ksc01 - - - - CEF:0|KasperskyLab|SecurityCenter|14.2|KLPRCI_TaskState|Running|1|rt=${1795860000000 + i} cs3=Nightly scan cs3Label=TaskName cnt=${i} msg=Task started`;

async function setup(s: NatsServer): Promise<NatsConnection> {
  const c = await connect({ servers: s.url });
  clients.push(c);
  await (await c.jetstreamManager({ timeout: 30_000 })).streams.add({ name: 'RAW', subjects: ['cefd.raw'] });
  return c;
}

function config(s: NatsServer, metrics: number, extra = ''): string {
  return `state_dir: ./state
shutdown_timeout: 5s
listeners:
  - { name: bus, type: nats, servers: [ "${s.url}" ], stream: RAW, consumer: processors, batch_size: 100, max_ack_pending: 500${extra} }
outputs:
  - { name: events, type: file, path: ./events.ndjson, buffer: { type: disk } }
dead_letter: { path: ./dead.ndjson }
metrics: { host: 127.0.0.1, port: ${metrics} }
`;
}

/** The stream with `n` frames published, without headers (ids RAW-1 .. RAW-n). */
async function streamOf(s: NatsServer, n: number): Promise<NatsConnection> {
  const c = await setup(s);
  // Published 1000 at a time, each acknowledgement awaited up to 60 s: 20,000 publishes at
  // once with the client's 5 s default timed out (NatsError: TIMEOUT) on a loaded machine,
  // nats-server storing them slower than that.
  const js = c.jetstream({ timeout: 60_000 });
  for (let from = 0; from < n; from += 1000) {
    const pubs: Promise<unknown>[] = [];
    for (let i = from; i < Math.min(n, from + 1000); i++) pubs.push(js.publish('cefd.raw', new TextEncoder().encode(line(i))));
    await Promise.all(pubs);
  }
  return c;
}

/** Waits until the consumer has nothing pending and nothing unacknowledged. */
function drained(c: NatsConnection, ms: number, what: string): Promise<void> {
  return waitFor(async () => {
    const st = await consumerState(c);
    return st.pending === 0 && st.ackPending === 0;
  }, ms, what);
}

async function consumerState(c: NatsConnection): Promise<{ pending: number; ackPending: number }> {
  // 30 s, not the client's 5 s default: polled while cefd loads the machine.
  const info = await (await c.jetstreamManager({ timeout: 30_000 })).consumers.info('RAW', 'processors');
  return { pending: info.num_pending, ackPending: info.num_ack_pending };
}

test('frames from the stream become events with the headers\' id, listener, peer and received time; every message acknowledged', async () => {
  const s = await natsServer();
  const c = await setup(s);
  const js = c.jetstream();
  for (let i = 0; i < 50; i++) {
    const h = headers();
    h.set('Cefd-Id', `recv1-${i}`);
    h.set('Cefd-Listener', 'ksc-tcp');
    h.set('Cefd-Peer', '10.1.2.3:50000');
    h.set('Cefd-Received', String(Date.UTC(2026, 10, 28, 10, 0, 1)));
    await js.publish('cefd.raw', new TextEncoder().encode(line(i)), { headers: h });
  }
  // Without headers: the id comes from the stream sequence.
  for (let i = 50; i < 60; i++) await js.publish('cefd.raw', new TextEncoder().encode(line(i)));
  const dir = tempDir();
  const metrics = await freePort();
  const d = runCefd(dir, config(s, metrics));
  children.push(d);
  await d.until('cefd started');
  await waitFor(() => readNdjson(join(dir, 'events.ndjson'), { tolerateTornTail: true }).length >= 60, 60_000, '60 events');
  await waitFor(async () => (await consumerState(c)).ackPending === 0, 60_000, 'every message acknowledged');
  expect(await consumerState(c)).toEqual({ pending: 0, ackPending: 0 });
  const m = await scrape(metrics);
  expect(m.get('cefd_nats_acked_messages_total{listener="bus"}')).toBe(60);
  expect(m.get('cefd_nats_consumer_pending_messages{listener="bus"}')).toBe(0);
  d.proc.kill('SIGTERM');
  expect(await d.exit).toBe(0);
  const evs = readNdjson(join(dir, 'events.ndjson'));
  expect(evs.length).toBe(60);
  expect(evs[0]).toMatchObject({ id: 'recv1-0', listener: 'ksc-tcp', peer: '10.1.2.3:50000', received: '2026-11-28T10:00:01.000Z' });
  expect(evs[59]).toMatchObject({ id: 'RAW-60', listener: 'bus', peer: 'nats' });
  expect(evs.map((e) => (e['cef'] as { typed: { baseEventCount: number } }).typed.baseEventCount)).toEqual(Array.from({ length: 60 }, (_, i) => i));
});

test.each([2, 0])('decode_workers %i: cefd killed (-9) mid-stream (with workers: batches on them): after a restart every frame\'s event is in the output, redelivered ones with the same id, nothing left in the consumer', async (workers) => {
  const s = await natsServer();
  const N = 20_000;
  const c = await streamOf(s, N);
  const dir = tempDir();
  const metrics = await freePort();
  const cfg = `decode_workers: ${workers}\n${config(s, metrics, ', ack_wait: 2s')}`;
  const d = runCefd(dir, cfg);
  children.push(d);
  await d.until('cefd started');
  expect(d.text()).toContain(workers > 0 ? `decoding on ${workers} worker threads` : 'cefd started');
  await waitFor(() => readNdjson(join(dir, 'events.ndjson'), { tolerateTornTail: true }).length >= 3000, 60_000, '3000 events');
  d.proc.kill('SIGKILL');
  await d.exit;
  const d2 = runCefd(dir, cfg);
  children.push(d2);
  await d2.until('cefd started');
  await drained(c, 120_000, 'the consumer drained');
  d2.proc.kill('SIGTERM');
  expect(await d2.exit).toBe(0);
  const evs = readNdjson(join(dir, 'events.ndjson'), { tolerateTornTail: true });
  const byId = new Map<string, number>();
  for (const e of evs) byId.set(e['id'] as string, (e['cef'] as { typed: { baseEventCount: number } }).typed.baseEventCount);
  // Every frame arrived; a duplicate carries the id of its first copy (RAW-<seq>), so it is removable by id.
  expect(byId.size).toBe(N);
  for (const [id, cnt] of byId) expect(id).toBe(`RAW-${cnt + 1}`);
}, 240_000);

test.each([
  ['memory queue of 150 events', 'buffer: { type: memory }, queue_max_events: 150'],
  ['disk buffer of 64 KiB', 'buffer: { type: disk, max_size: 64KiB }'],
])('an output whose drop_newest %s is full: batches that come back from the workers then are not acknowledged but delivered again; once it drains, every frame once, nothing dropped', async (_what, buffer) => {
  const s = await natsServer();
  const N = 3000;
  const c = await streamOf(s, N);
  // The HTTP receiver answers 503 until it is opened: the output's queue (150 events) fills.
  let open = false;
  const got: string[] = [];
  const server = http.createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (b: Buffer) => parts.push(b));
    req.on('end', () => {
      if (!open) {
        res.writeHead(503).end();
        return;
      }
      for (const l of Buffer.concat(parts).toString('utf8').split('\n')) if (l !== '') got.push((JSON.parse(l) as { id: string }).id);
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  servers.push(server);
  const port = (server.address() as AddressInfo).port;
  const dir = tempDir();
  const metrics = await freePort();
  const d = runCefd(
    dir,
    `state_dir: ./state
decode_workers: 2
listeners:
  - { name: bus, type: nats, servers: [ "${s.url}" ], stream: RAW, consumer: processors, batch_size: 100, max_ack_pending: 1000, ack_wait: 30s }
outputs:
  - { name: siem, type: http, url: "http://127.0.0.1:${port}/in", ${buffer}, when_full: drop_newest, batch_max_events: 50, retry: { initial_backoff: 50ms, max_backoff: 100ms } }
dead_letter: { path: ./dead.ndjson }
metrics: { host: 127.0.0.1, port: ${metrics} }
`,
  );
  children.push(d);
  await d.until('cefd started');
  await waitFor(async () => ((await scrape(metrics)).get('cefd_output_queue_events{output="siem"}') ?? 0) > 0, 60_000, 'events queued');
  // The queue fills and stays full: nothing more is taken, and exactly what it took is acknowledged.
  await new Promise((r) => setTimeout(r, 1500));
  const m1 = await scrape(metrics);
  const queued = m1.get('cefd_output_queue_events{output="siem"}')!;
  expect(queued).toBeGreaterThan(0);
  expect(queued).toBeLessThan(N);
  expect(m1.get('cefd_nats_acked_messages_total{listener="bus"}')).toBe(queued);
  expect((await consumerState(c)).pending).toBeGreaterThan(0);
  open = true;
  await waitFor(() => new Set(got).size >= N, 60_000, `${N} events at the HTTP receiver`);
  await drained(c, 60_000, 'every message acknowledged');
  const m = await scrape(metrics);
  expect([...m.keys()].filter((k) => k.startsWith('cefd_output_dropped_events_total'))).toEqual([]);
  expect(m.get('cefd_nats_acked_messages_total{listener="bus"}')).toBe(N);
  // Every frame once: a refused batch was not queued, so its redelivery is not a copy.
  expect(got.length).toBe(N);
  expect(new Set(got).size).toBe(N);
}, 120_000);

/**
 * A normalizer that declines every event, but takes 10 ms per event while the file `slow`
 * exists in cefd's folder (its working directory): sleeping, not spinning, so a stop can be
 * caught with decoding work in flight without loading the machine.
 */
const SLOW_AT_THE_END = `import { existsSync } from 'node:fs';
const nap = new Int32Array(new SharedArrayBuffer(4));
export default {
  name: 'slow_at_the_end',
  accepts: () => existsSync('slow'),
  normalize: () => { Atomics.wait(nap, 0, 0, 10); return null; },
};
`;

test('two processors share the consumer; one is stopped (SIGTERM) with batches still decoding: none of the events it wrote is delivered again to the other, and every frame arrives', async () => {
  const s = await natsServer();
  const N = 20_000;
  const c = await streamOf(s, N);
  // ack_wait: longer than the decoding in flight at the stop takes (at most 400 messages of
  // 10 ms on 2 workers), so a message is delivered again only when it was not acknowledged.
  const cfg = (metrics: number) =>
    `decode_workers: 2\n${config(s, metrics, ', ack_wait: 8s, normalizers: [ ./slow.mjs ]')}`.replace('shutdown_timeout: 5s', 'shutdown_timeout: 20s');
  const d1 = tempDir();
  const d2 = tempDir();
  for (const d of [d1, d2]) writeFileSync(join(d, 'slow.mjs'), SLOW_AT_THE_END);
  const p1 = runCefd(d1, cfg(await freePort()));
  children.push(p1);
  const p2 = runCefd(d2, cfg(await freePort()));
  children.push(p2);
  await p1.until('cefd started');
  await p2.until('cefd started');
  await waitFor(() => readNdjson(join(d1, 'events.ndjson'), { tolerateTornTail: true }).length >= 2000, 60_000, '2000 events at the first processor');
  // The first processor's decoding slows down: its source fills its batches in flight, then it is stopped.
  writeFileSync(join(d1, 'slow'), '');
  await new Promise((r) => setTimeout(r, 300));
  p1.proc.kill('SIGTERM');
  expect(await p1.exit).toBe(0);
  await drained(c, 120_000, 'the consumer drained');
  p2.proc.kill('SIGTERM');
  expect(await p2.exit).toBe(0);
  const copies = new Map<string, number>();
  const first = readNdjson(join(d1, 'events.ndjson'));
  for (const e of [...first, ...readNdjson(join(d2, 'events.ndjson'))]) copies.set(e['id'] as string, (copies.get(e['id'] as string) ?? 0) + 1);
  // The stopped processor wrote part of the stream (mid-stream), and no event of its part was written again.
  expect(first.length).toBeGreaterThan(0);
  expect(first.length).toBeLessThan(N);
  expect([...copies].filter(([, n]) => n > 1).length).toBe(0);
  expect(copies.size).toBe(N);
}, 240_000);
