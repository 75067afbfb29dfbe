/**
 * Receiver and processor modes over a real nats-server 2.9: a receiver cefd (mode:
 * receiver) frames TCP input and publishes raw frames; a processor cefd (a nats listener)
 * decodes them into a file. Every frame becomes one event, with the receiver's id,
 * listener, peer and received time; with the server down, the receiver's queue fills, its
 * sockets pause (no frame taken that it could not keep), and everything arrives once the
 * server is back.
 */
import { join } from 'node:path';
import { afterAll, afterEach, expect, test } from 'vitest';
import { readNdjson, scrape, tempDir, waitFor } from '../helpers/daemon.js';
import { freePort, runCefd, sendKscLines, type ChildDaemon } from '../helpers/child.js';
import { natsServer, stopAllNats, type NatsServer } from '../helpers/nats-server.js';

const children: ChildDaemon[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.proc.kill('SIGKILL');
});
afterAll(stopAllNats);


function receiver(port: number, metrics: number, s: NatsServer, buffer: string): string {
  return `mode: receiver
state_dir: ./state
shutdown_timeout: 5s
listeners: [ { name: ksc, type: tcp, host: 127.0.0.1, port: ${port} } ]
outputs:
  - name: raw
    type: nats
    payload: frame
    servers: [ "${s.url}" ]
    subject: cefd.raw
    reconnect_wait: 100ms
    retry: { initial_backoff: 50ms, max_backoff: 500ms }
    ${buffer}
    stream: { create: true, name: RAW, duplicate_window: 10m }
dead_letter: { path: ./dead.ndjson }
metrics: { host: 127.0.0.1, port: ${metrics} }
`;
}

function processor(s: NatsServer): string {
  return `state_dir: ./state
shutdown_timeout: 5s
listeners: [ { name: bus, type: nats, servers: [ "${s.url}" ], stream: RAW, consumer: processors } ]
outputs: [ { name: events, type: file, path: ./events.ndjson } ]
dead_letter: { path: ./dead.ndjson }
metrics: { enabled: false }
`;
}

function cnts(file: string): { ids: Set<string>; seqs: Set<number>; n: number; first: Record<string, unknown> | undefined } {
  const evs = readNdjson(file, { tolerateTornTail: true });
  return {
    ids: new Set(evs.map((e) => e['id'] as string)),
    seqs: new Set(evs.map((e) => (e['cef'] as { typed: { baseEventCount: number } }).typed.baseEventCount)),
    n: evs.length,
    first: evs[0],
  };
}

test('receiver -> JetStream -> processor: every frame one event with the receiver\'s id, listener and peer', async () => {
  const s = await natsServer();
  const rdir = tempDir();
  const pdir = tempDir();
  const port = await freePort();
  const r = runCefd(rdir, receiver(port, await freePort(), s, 'buffer: { type: disk }'));
  children.push(r);
  await r.until('cefd started');
  const p = runCefd(pdir, processor(s));
  children.push(p);
  await p.until('cefd started');
  const N = 20_000;
  await sendKscLines(port, 0, N);
  const file = join(pdir, 'events.ndjson');
  await waitFor(() => cnts(file).seqs.size >= N, 120_000, `${N} events at the processor`);
  p.proc.kill('SIGTERM');
  expect(await p.exit).toBe(0);
  const c = cnts(file);
  expect(c.n).toBe(N);
  expect(c.ids.size).toBe(N);
  expect(c.first).toMatchObject({ listener: 'ksc', peer: expect.stringMatching(/^127\.0\.0\.1:\d+$/), id: expect.stringMatching(/^[0-9a-z]+-0$/) });
  expect(readNdjson(join(pdir, 'dead.ndjson'), { tolerateTornTail: true }).length).toBe(0);
});

test('receiver with the NATS server down: its queue fills, reading pauses, and every frame arrives once after the server is back', async () => {
  const s = await natsServer();
  await s.stop();
  const rdir = tempDir();
  const pdir = tempDir();
  const port = await freePort();
  const metrics = await freePort();
  const r = runCefd(rdir, receiver(port, metrics, s, 'buffer: { type: memory }\n    queue_max_events: 1000'));
  children.push(r);
  await r.until('cefd started');
  const N = 30_000;
  const sending = sendKscLines(port, 0, N);
  await r.until('reading paused', 60_000);
  // /readyz says not ready while the receiver cannot publish (haproxy sends elsewhere).
  const down = await fetch(`http://127.0.0.1:${metrics}/readyz`);
  expect(down.status).toBe(503);
  expect(await down.text()).toMatch(/output raw: not connected to NATS/);
  const m = await scrape(metrics);
  // The receiver holds at most its queue and the reads in flight, not the whole input.
  expect(m.get('cefd_events_parsed_total{listener="ksc"}')!).toBeLessThan(N);
  await s.start();
  const p = runCefd(pdir, processor(s));
  children.push(p);
  await p.until('cefd started');
  await sending;
  await waitFor(async () => (await fetch(`http://127.0.0.1:${metrics}/readyz`)).status === 200, 30_000, 'the receiver ready again');
  const file = join(pdir, 'events.ndjson');
  await waitFor(() => cnts(file).seqs.size >= N, 120_000, `${N} events at the processor`);
  p.proc.kill('SIGTERM');
  expect(await p.exit).toBe(0);
  const c = cnts(file);
  expect(c.n).toBe(N);
  expect(c.ids.size).toBe(N);
});
