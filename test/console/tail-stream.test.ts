/**
 * The live tail (src/console/console.ts `stream`) against a client that stops reading: over
 * a real HTTP server and a real TCP socket, the events the response holds for it stay
 * bounded (TAIL_CLIENT_PENDING_BYTES): the rest are skipped, counted, and the client is told
 * how many before its next event, so what it got plus what it was told it missed is every
 * event. A client that goes away is unsubscribed; a stream opened with a session ends at
 * sign-out; at most MAX_TAIL_CLIENTS are open at once.
 */
import { createServer, type Server, type ServerResponse } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import pino from 'pino';
import { afterEach, expect, test, vi } from 'vitest';
import { Console, MAX_TAIL_CLIENTS, TAIL_CLIENT_PENDING_BYTES } from '../../src/console/console.js';
import type { RecentSink } from '../../src/pipeline/pipeline.js';
import { Telemetry } from '../../src/telemetry/telemetry.js';
import type { CefdEvent } from '../../src/event.js';
import { LogCapture, tempDir, waitFor } from '../helpers/daemon.js';
import { ConsoleAgent, request } from '../helpers/console.js';
import { rmSync } from 'node:fs';

const TOKEN = 'tail-test-token-0123456789abcdef';

let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
});

async function setup(): Promise<{ con: Console; sink: () => RecentSink; port: number; dropped: () => number }> {
  const dir = tempDir('cefd-tail-');
  let sink: RecentSink | null = null;
  let dropped = 0;
  const con = new Console({
    token: TOKEN,
    stateDir: dir,
    tls: false,
    sessionTtlMs: 60_000,
    tailEvents: 4,
    tailBytes: 1024 * 1024,
    quietAfterMs: 60_000,
    telemetry: new Telemetry({ destination: new LogCapture(), processMetrics: false }),
    log: pino({ level: 'silent' }),
    workers: () => 0,
    outputs: () => [],
    recent: (s) => {
      sink = s;
    },
    askRecent: () => Promise.resolve({ items: [], kept: 0 }),
    ksc: () => undefined,
    onTailDropped: (n) => (dropped += n),
  });
  const server: Server = createServer((req, res) => {
    void con.before(req, res, new URL(req.url ?? '/', 'http://127.0.0.1')).then((handled) => {
      if (!handled) {
        res.writeHead(404);
        res.end();
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanup.push(async () => {
    con.close();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  });
  return { con, sink: () => sink!, port: (server.address() as AddressInfo).port, dropped: () => dropped };
}

/** A raw HTTP client of the stream: its messages as `{type, data}`. */
function tailClient(port: number): { sock: Socket; messages: { type: string; data: string }[]; bytes: () => number } {
  const sock = connect(port, '127.0.0.1');
  cleanup.push(async () => {
    sock.destroy();
  });
  sock.write(`GET /console/api/events/stream?full=true HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`);
  const messages: { type: string; data: string }[] = [];
  let buf = '';
  let bytes = 0;
  sock.setEncoding('utf8');
  sock.on('data', (d: string) => {
    bytes += Buffer.byteLength(d);
    buf += d;
    let i: number;
    // Chunked transfer: the chunk sizes are lines of their own, the messages' lines start with a field name.
    while ((i = buf.indexOf('\n\n')) !== -1) {
      const lines = buf.slice(0, i).split(/\r?\n/);
      buf = buf.slice(i + 2);
      const type = lines.find((l) => l.startsWith('event: '))?.slice(7);
      const data = lines.find((l) => l.startsWith('data: '))?.slice(6);
      if (type !== undefined && data !== undefined) messages.push({ type, data });
    }
  });
  return { sock, messages, bytes: () => bytes };
}

const event = (i: number, pad: number): CefdEvent => ({ id: `t-${i.toString(36)}`, listener: 'tcp', cef: { name: `event ${i}`, extensions: { message: 'x'.repeat(pad) } } }) as unknown as CefdEvent;

test('a client that stops reading holds at most TAIL_CLIENT_PENDING_BYTES; it is told how many events it missed', async () => {
  const { con, sink, port, dropped } = await setup();
  const c = tailClient(port);
  await waitFor(() => con.tail.clientCount === 1 && c.bytes() > 0, 30_000, 'the tail client');
  c.sock.pause();

  // 400 events of 128 KiB: 50 MiB, far more than the socket buffers and the pending limit.
  const N = 400;
  const PAD = 128 * 1024;
  for (let i = 0; i < N; i++) sink().event(event(i, PAD), undefined);
  expect(dropped()).toBeGreaterThan(0);

  // Read again; events pushed from now on get through once the backlog is read.
  c.sock.resume();
  let next = N;
  const marker = (): boolean => c.messages.some((m) => m.type === 'event' && (JSON.parse(m.data) as { id: string }).id === `t-${(next - 1).toString(36)}` && next > N);
  await waitFor(
    () => {
      if (marker()) return true;
      sink().event(event(next++, 10), undefined);
      return marker();
    },
    20_000,
    'an event after the backlog',
  );
  const last = `t-${(next - 1).toString(36)}`;
  const upTo = c.messages.findIndex((m) => m.type === 'event' && (JSON.parse(m.data) as { id: string }).id === last);
  const seen = c.messages.slice(0, upTo + 1);
  const got = seen.filter((m) => m.type === 'event').length;
  const told = seen.filter((m) => m.type === 'dropped').reduce((n, m) => n + (JSON.parse(m.data) as { dropped: number }).dropped, 0);
  // Every event pushed up to the last one is either received or counted as missed.
  expect(got + told).toBe(next);
  expect(told).toBeGreaterThan(0);
  expect(dropped()).toBeGreaterThanOrEqual(told);
  // What got through is bounded by the pending limit plus what the kernel's socket buffers
  // held (a few MiB on loopback), not the 50 MiB sent.
  expect(got * PAD).toBeLessThan(N * PAD / 2);
  expect(c.bytes()).toBeLessThan(TAIL_CLIENT_PENDING_BYTES + 24 * 1024 * 1024);

  // Gone: unsubscribed.
  c.sock.destroy();
  await waitFor(() => con.tail.clientCount === 0, 30_000, 'the client unsubscribed');
});

test('a stream opened with a session ends when the session does: nothing is sent after sign-out', async () => {
  const { con, sink, port } = await setup();
  const base = `http://127.0.0.1:${port}`;
  const a = new ConsoleAgent(base);
  expect((await a.login(TOKEN)).status).toBe(303);
  const sock = connect(port, '127.0.0.1');
  cleanup.push(async () => {
    sock.destroy();
  });
  let text = '';
  sock.setEncoding('utf8').on('data', (d: string) => (text += d));
  sock.write(`GET /console/api/events/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: cefd_session=${a.session}\r\n\r\n`);
  await waitFor(() => con.tail.clientCount === 1 && text.includes('cefd live tail'), 30_000, 'the stream');
  sink().event(event(1, 10), undefined);
  await waitFor(() => text.includes('event 1'), 30_000, 'the first event');

  expect((await a.logout()).status).toBe(303);
  sink().event(event(2, 10), undefined);
  // The response ends (chunked: its last chunk) and the client is unsubscribed.
  await waitFor(() => con.tail.clientCount === 0 && text.includes('\r\n0\r\n\r\n'), 30_000, 'the stream ended');
  sink().event(event(3, 10), undefined);
  expect(text).not.toContain('event 2');
  expect(text).not.toContain('event 3');
});

test('at most MAX_TAIL_CLIENTS tails are open at once; one more is refused with 503 until one closes', async () => {
  const { con, port } = await setup();
  const clients = [];
  for (let i = 0; i < MAX_TAIL_CLIENTS; i++) clients.push(tailClient(port));
  await waitFor(() => con.tail.clientCount === MAX_TAIL_CLIENTS, 30_000, 'the tails open');
  const base = `http://127.0.0.1:${port}`;
  const refused = await request(base, 'GET', '/console/api/events/stream', { headers: { authorization: `Bearer ${TOKEN}` } });
  expect(refused.status).toBe(503);
  expect(refused.json).toMatchObject({ error: { code: 'console_tail_busy' } });
  expect(con.tail.clientCount).toBe(MAX_TAIL_CLIENTS);

  clients[0]!.sock.destroy();
  await waitFor(() => con.tail.clientCount === MAX_TAIL_CLIENTS - 1, 30_000, 'one tail closed');
  const again = tailClient(port);
  await waitFor(() => con.tail.clientCount === MAX_TAIL_CLIENTS && again.bytes() > 0, 30_000, 'a tail in its place');
});

test('closing the console (a reload) with a client that stopped reading: its stream stops at once, nothing is written after the end', async () => {
  vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
  cleanup.push(async () => {
    vi.useRealTimers();
  });
  const { con, sink, port } = await setup();
  const c = tailClient(port);
  await waitFor(() => con.tail.clientCount === 1 && c.bytes() > 0, 30_000, 'the tail client');
  c.sock.pause();
  const res = [...(con as unknown as { streams: Map<ServerResponse, unknown> }).streams.keys()][0]!;
  const errors: Error[] = [];
  res.on('error', (e) => errors.push(e));
  // Fill the kernel's buffers until the response itself holds bytes it cannot send (but
  // less than TAIL_CLIENT_PENDING_BYTES, so the stream still takes writes).
  for (let i = 0; res.writableLength === 0 && i < 2000; i++) {
    sink().event(event(i, 64 * 1024), undefined);
    await new Promise((r) => setImmediate(r));
  }
  expect(res.writableLength).toBeGreaterThan(0);
  expect(res.writableLength).toBeLessThanOrEqual(TAIL_CLIENT_PENDING_BYTES);
  con.close();
  expect(con.tail.clientCount).toBe(0);
  // The stream's 15 s ping comes due: it must not write to the ended response.
  vi.advanceTimersByTime(60_000);
  await new Promise((r) => setImmediate(r));
  expect(errors.map((e) => (e as NodeJS.ErrnoException).code)).toEqual([]);
});
