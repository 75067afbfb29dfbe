/**
 * Delivery guarantees under faults: an HTTP output that fails for a while,
 * kill -9 during a stream, an unwritable and a full state directory, SIGTERM with an
 * output down, corrupted buffer segments. Each test adds a row to the reliability report
 * printed at the end (the table of docs/reliability.md comes from it).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, test } from 'vitest';
import { DiskQueue } from '../../src/buffer/disk-queue.js';
import { readNdjson, scrape, tempDir, waitFor } from '../helpers/daemon.js';
import { connLine, freePort, printReport, runCefd, seqOf, type ChildDaemon, type FaultResult } from '../helpers/child.js';

const report: FaultResult[] = [];
afterAll(() => printReport(report));

const children: ChildDaemon[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.proc.kill('SIGKILL');
});
function run(dir: string, yaml: string): ChildDaemon {
  const c = runCefd(dir, yaml);
  children.push(c);
  return c;
}


async function sendLines(port: number, lines: string[]): Promise<void> {
  const sock = net.connect(port, '127.0.0.1');
  let failure: Error | null = null;
  sock.on('error', (e) => (failure = e));
  await new Promise((r) => sock.once('connect', r));
  const chunk = 500;
  for (let i = 0; i < lines.length; i += chunk) {
    if (!sock.write(lines.slice(i, i + chunk).join(''))) await new Promise((r) => sock.once('drain', r));
  }
  await new Promise<void>((r) => sock.end(() => r()));
  if (failure !== null) throw failure;
}

function config(port: number, metrics: number, output: string, extra = ''): string {
  return `state_dir: ./state
shutdown_timeout: 5s
listeners: [ { name: tcp, type: tcp, host: 127.0.0.1, port: ${port} } ]
outputs:
${output}
dead_letter: { path: ./dead.ndjson }
metrics: { host: 127.0.0.1, port: ${metrics} }
${extra}`;
}

interface Collector {
  url: string;
  port: number;
  records: string[];
  failing: boolean;
  requests: number;
  close(): Promise<void>;
}

/** An HTTP endpoint that collects NDJSON batches; `failing` makes it answer 503. */
async function collector(port = 0): Promise<Collector> {
  const c: Collector = { url: '', port: 0, records: [], failing: false, requests: 0, close: async () => {} };
  const srv = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (b: Buffer) => chunks.push(b));
    req.on('end', () => {
      c.requests++;
      if (c.failing) {
        res.writeHead(503, { 'retry-after': '0' }).end('maintenance');
        return;
      }
      for (const l of Buffer.concat(chunks).toString('utf8').split('\n')) if (l !== '') c.records.push(l);
      res.writeHead(200).end('{"ok":true}');
    });
  });
  await new Promise<void>((r) => srv.listen(port, '127.0.0.1', r));
  c.port = (srv.address() as net.AddressInfo).port;
  c.url = `http://127.0.0.1:${c.port}/ingest`;
  c.close = () =>
    new Promise((r) => {
      srv.closeAllConnections();
      srv.close(() => r());
    });
  return c;
}

describe('faults', () => {
  test('1. an HTTP output answering 503 for a while: every event delivered, exactly once, in order per connection; retries counted', async () => {
    const dir = tempDir();
    const sink = await collector();
    sink.failing = true;
    const port = await freePort();
    const metrics = await freePort();
    const d = run(dir, config(port, metrics, `  - { name: siem, type: http, url: "${sink.url}", batch_max_events: 500, retry: { initial_backoff: 50ms, max_backoff: 500ms } }`));
    await d.until('cefd started');
    const conns = 4;
    const per = 5000;
    const sending = Promise.all(Array.from({ length: conns }, (_, c) => sendLines(port, Array.from({ length: per }, (_, i) => connLine(c, i)))));
    await waitFor(() => sink.requests >= 5, 60_000, 'failing requests');
    await sending;
    sink.failing = false;
    await waitFor(() => sink.records.length >= conns * per, 60_000, 'all events at the HTTP server');
    await new Promise((r) => setTimeout(r, 500)); // anything extra would show up now
    const got = sink.records.map((r) => seqOf(JSON.parse(r) as Record<string, unknown>));
    const ids = new Set(sink.records.map((r) => (JSON.parse(r) as { id: string }).id));
    expect(got).toHaveLength(conns * per);
    expect(ids.size).toBe(conns * per);
    for (let c = 0; c < conns; c++) {
      const seqs = got.filter((g) => g.conn === c).map((g) => g.seq);
      expect(seqs).toEqual(Array.from({ length: per }, (_, i) => i));
    }
    const m = await scrape(metrics);
    const retried = m.get('cefd_output_retried_events_total{output="siem"}')!;
    expect(retried).toBeGreaterThan(0);
    expect(m.get('cefd_output_sent_events_total{output="siem"}')).toBe(conns * per);
    d.proc.kill('SIGTERM');
    expect(await d.exit).toBe(0);
    await sink.close();
    report.push({
      test: 'HTTP output answers 503 for a while, then recovers',
      sent: `${conns * per} events on ${conns} connections`,
      arrived: `${got.length}, each once, in order per connection`,
      lost: '0',
      why: `${retried} events retried (${sink.requests} requests)`,
    });
  });

  test('2. kill -9 during a steady stream: every event the buffer accepted is delivered after a restart', async () => {
    const dir = tempDir();
    const port = await freePort();
    const metrics = await freePort();
    const yaml = config(port, metrics, '  - { name: events, type: file, path: ./events.ndjson }');
    const d = run(dir, yaml);
    await d.until('cefd started');
    // Stream as fast as the daemon reads; count what the kernel took from us.
    const sock = net.connect(port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    let written = 0;
    let next = 0;
    let broken = false;
    sock.on('error', () => (broken = true));
    sock.on('close', () => (broken = true));
    const pump = async () => {
      while (!broken) {
        const batch: string[] = [];
        for (let k = 0; k < 200; k++) batch.push(connLine(0, next + k));
        const n = batch.length;
        next += n;
        const ok = sock.write(batch.join(''), (err) => {
          if (!err) written += n;
        });
        if (!ok) await new Promise((r) => { sock.once('drain', r); sock.once('close', r); });
      }
    };
    const pumping = pump();
    // cefd writes the file meanwhile: read complete lines only.
    await waitFor(() => readNdjson(join(dir, 'events.ndjson'), { tolerateTornTail: true }).length > 20_000, 30_000, 'a steady stream');
    d.proc.kill('SIGKILL');
    await d.exit;
    await pumping;
    // What had cefd accepted? Delivered lines, plus what waits in the buffer (read from a copy).
    // The last line may be half written (killed mid-write): the file output cuts it at its next start.
    const delivered0 = readNdjson(join(dir, "events.ndjson"), { tolerateTornTail: true });
    const copy = join(tempDir(), 'buf');
    fs.cpSync(join(dir, 'state', 'buffers', 'events'), copy, { recursive: true });
    const q = DiskQueue.open({ dir: copy, maxBytes: 1 << 30, fsync: 'never', fsyncIntervalMs: 1000 });
    const buffered: string[] = [];
    for (let b = q.peek(1000); b.length > 0; b = q.peek(1000)) {
      buffered.push(...b);
      q.ack(b.length);
    }
    await q.close();
    const accepted = new Set<number>();
    for (const r of delivered0) accepted.add(seqOf(r).seq);
    for (const r of buffered) accepted.add(seqOf(JSON.parse(r) as Record<string, unknown>).seq);
    const acceptedCount = accepted.size;
    // Frames are read, and appended, in order: what was accepted is a prefix of the stream.
    let maxSeq = -1;
    for (const x of accepted) if (x > maxSeq) maxSeq = x;
    expect(maxSeq).toBe(acceptedCount - 1);
    // Restart on the same state directory.
    const d2 = run(dir, yaml);
    await d2.until('cefd started');
    await waitFor(() => new Set(readNdjson(join(dir, 'events.ndjson'), { tolerateTornTail: true }).map((r) => seqOf(r).seq)).size >= acceptedCount, 60_000, 'the accepted events delivered');
    await waitFor(async () => (await scrape(metrics)).get('cefd_output_queue_events{output="events"}') === 0, 60_000, 'an empty buffer');
    const after = readNdjson(join(dir, 'events.ndjson'));
    const delivered = new Set(after.map((r) => seqOf(r).seq));
    for (const s of accepted) expect(delivered.has(s)).toBe(true);
    expect(delivered.size).toBeGreaterThanOrEqual(acceptedCount);
    const m = await scrape(metrics);
    const replayed = m.get('cefd_buffer_replayed_events_total{output="events"}') ?? 0;
    d2.proc.kill('SIGTERM');
    expect(await d2.exit).toBe(0);
    sock.destroy();
    const inSockets = written - acceptedCount;
    console.log(`kill -9: written by the sender ${written}, accepted ${acceptedCount}, delivered ${delivered.size} distinct (${after.length} lines), replayed ${replayed}, in socket buffers at the kill ${inSockets}`);
    report.push({
      test: 'kill -9 of cefd during a steady stream, restart on the same state directory',
      sent: `${written} events written by the sender before the kill`,
      arrived: `${delivered.size} distinct (${after.length - delivered.size} duplicates after the restart); all ${acceptedCount} accepted events`,
      lost: `${Math.max(0, inSockets)}`,
      why: 'in socket buffers (sender and kernel) when cefd died: syslog over TCP has no acknowledgement; all of them after the last accepted event',
    });
  });

  test('3a. an unwritable state directory: a clear error, exit 78 (no restart loop), twice the same', async () => {
    const dir = tempDir();
    const ro = join(dir, 'state');
    fs.mkdirSync(ro);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', ro]);
    try {
      const port = await freePort();
      const metrics = await freePort();
      for (let k = 0; k < 2; k++) {
        const d = run(dir, config(port, metrics, '  - { name: events, type: file, path: ./events.ndjson }'));
        expect(await d.exit).toBe(78);
        expect(d.text()).toMatch(/state_dir .*state cannot be used: EROFS/);
      }
      report.push({ test: 'read-only state directory at start', sent: '-', arrived: '-', lost: '0', why: 'cefd refuses to start: exit 78 with "state_dir ... cannot be used: EROFS"; systemd does not restart on 78' });
    } finally {
      execFileSync('umount', [ro]);
    }
  });

  test('3b. a full state directory: events held in memory, reading paused, an error and a metric; all delivered once space is back', async () => {
    const dir = tempDir();
    const state = join(dir, 'state');
    fs.mkdirSync(state);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', state]);
    const sink = await collector();
    sink.failing = true;
    try {
      const port = await freePort();
      const metrics = await freePort();
      const d = run(dir, config(port, metrics, `  - { name: siem, type: http, url: "${sink.url}", retry: { initial_backoff: 50ms, max_backoff: 200ms }, buffer: { max_size: 64MiB } }`));
      await d.until('cefd started');
      const n = 20_000; // ~13 MB of events: far more than the 2 MiB file system holds
      const sending = sendLines(port, Array.from({ length: n }, (_, i) => connLine(0, i)));
      await waitFor(async () => (await scrape(metrics)).get('cefd_buffer_degraded{output="siem"}') === 1, 30_000, 'a degraded buffer');
      const m1 = await scrape(metrics);
      expect(m1.get('cefd_ingestion_paused')).toBe(1);
      expect(m1.get('cefd_buffer_write_errors_total{output="siem"}')).toBeGreaterThan(0);
      await d.until('disk buffer of output siem cannot be written (ENOSPC');
      sink.failing = false;
      await sending;
      await waitFor(() => sink.records.length >= n, 60_000, 'all events delivered');
      const seqs = sink.records.map((r) => seqOf(JSON.parse(r) as Record<string, unknown>).seq);
      expect(new Set(seqs).size).toBe(n);
      expect(seqs).toEqual(Array.from({ length: n }, (_, i) => i));
      // Writes are probed every second: the degraded state clears once one succeeds.
      await waitFor(async () => (await scrape(metrics)).get('cefd_buffer_degraded{output="siem"}') === 0, 30_000, 'the buffer writable again');
      const m2 = await scrape(metrics);
      expect(m2.get('cefd_ingestion_paused')).toBe(0);
      d.proc.kill('SIGTERM');
      expect(await d.exit).toBe(0);
      report.push({
        test: 'state directory full (2 MiB tmpfs) while the output is down',
        sent: `${n} events (~13 MB)`,
        arrived: `${sink.records.length}, in order`,
        lost: '0',
        why: `writes failed with ENOSPC (${m1.get('cefd_buffer_write_errors_total{output="siem"}')} errors, logged): events held in memory, reading paused until the output drained the buffer`,
      });
    } finally {
      children.splice(0).forEach((c) => c.proc.kill('SIGKILL'));
      await sink.close();
      await new Promise((r) => setTimeout(r, 200));
      execFileSync('umount', ['-l', state]);
    }
  });

  test('4. SIGTERM with the output down: the buffer persists, cefd exits in time, a restart delivers everything', async () => {
    const dir = tempDir();
    const port = await freePort();
    const metrics = await freePort();
    const sinkPort = await freePort(); // nothing listens yet: connection refused
    const out = `  - { name: siem, type: http, url: "http://127.0.0.1:${sinkPort}/ingest", retry: { initial_backoff: 50ms, max_backoff: 200ms } }`;
    const d = run(dir, config(port, metrics, out));
    await d.until('cefd started');
    const n = 10_000;
    await sendLines(port, Array.from({ length: n }, (_, i) => connLine(0, i)));
    await waitFor(async () => (await scrape(metrics)).get('cefd_output_queue_events{output="siem"}') === n, 60_000, 'all events queued');
    const t0 = Date.now();
    d.proc.kill('SIGTERM');
    expect(await d.exit).toBe(0);
    const stopMs = Date.now() - t0;
    expect(d.text()).toContain(`${n} undelivered events stay in its disk buffer`);
    const sink = await collector(sinkPort);
    try {
      const d2 = run(dir, config(port, metrics, out));
      await waitFor(() => sink.records.length >= n, 30_000, 'delivery after the restart');
      const seqs = sink.records.map((r) => seqOf(JSON.parse(r) as Record<string, unknown>).seq);
      expect(seqs).toEqual(Array.from({ length: n }, (_, i) => i));
      expect(d2.text()).toContain(`${n} undelivered events from before the restart`);
      // The outputs deliver before the start is over (and before `cefd run` handles SIGTERM):
      // a loaded machine can get every event to the sink first.
      await d2.until('cefd started');
      d2.proc.kill('SIGTERM');
      expect(await d2.exit).toBe(0);
      report.push({
        test: 'SIGTERM while the HTTP output is down, then restart with it up',
        sent: `${n} events`,
        arrived: `${sink.records.length} after the restart, in order`,
        lost: '0',
        why: `cefd stopped in ${stopMs} ms (shutdown_timeout 5 s) leaving the events in the disk buffer; replayed at start`,
      });
    } finally {
      await sink.close();
    }
  });

  test('5. truncated and corrupted buffer segments: recovered, counted, logged; the rest is delivered', async () => {
    const dir = tempDir();
    const port = await freePort();
    const metrics = await freePort();
    const sinkPort = await freePort();
    const out = `  - { name: siem, type: http, url: "http://127.0.0.1:${sinkPort}/ingest", retry: { initial_backoff: 50ms, max_backoff: 200ms }, buffer: { max_size: 8MiB } }`;
    const d = run(dir, config(port, metrics, out));
    await d.until('cefd started');
    const n = 3000;
    // Several reads, so several blocks and segments.
    for (let i = 0; i < n; i += 100) await sendLines(port, Array.from({ length: 100 }, (_, k) => connLine(0, i + k)));
    await waitFor(async () => (await scrape(metrics)).get('cefd_output_queue_events{output="siem"}') === n, 60_000, 'all events queued');
    d.proc.kill('SIGTERM');
    expect(await d.exit).toBe(0);
    const bufDir = join(dir, 'state', 'buffers', 'siem');
    const segs = fs.readdirSync(bufDir).filter((f) => f.endsWith('.seg') && fs.statSync(join(bufDir, f)).size > 0).sort();
    expect(segs.length).toBeGreaterThan(1);
    // A bad disk: flip a byte in the middle of the first segment. A crash mid-write: cut the last one.
    const first = join(bufDir, segs[0]!);
    const b = fs.readFileSync(first);
    b[Math.floor(b.length / 2)] ^= 0x5a;
    fs.writeFileSync(first, b);
    const last = join(bufDir, segs[segs.length - 1]!);
    fs.truncateSync(last, fs.statSync(last).size - 10);
    const sink = await collector(sinkPort);
    try {
      const d2 = run(dir, config(port, metrics, out));
      await d2.until('cefd started');
      await waitFor(async () => (await scrape(metrics)).get('cefd_output_queue_events{output="siem"}') === 0, 30_000, 'the buffer drained');
      const m = await scrape(metrics);
      const corrupt = m.get('cefd_buffer_corrupt_bytes_total{output="siem"}')!;
      expect(corrupt).toBeGreaterThan(0);
      expect(d2.text()).toMatch(/corrupt bytes skipped/);
      const seqs = sink.records.map((r) => seqOf(JSON.parse(r) as Record<string, unknown>).seq);
      // What survives is delivered in order and once; only the damaged blocks are missing.
      expect(new Set(seqs).size).toBe(seqs.length);
      // In order per connection (each sent 100 events; connections are not ordered
      // among themselves: their reads are decoded in parallel).
      for (let c = 0; c < n / 100; c++) {
        const own = seqs.filter((q) => Math.floor(q / 100) === c);
        expect([...own].sort((x, y) => x - y)).toEqual(own);
      }
      expect(seqs.length).toBeGreaterThan(n / 2);
      expect(seqs.length).toBeLessThan(n);
      d2.proc.kill('SIGTERM');
      expect(await d2.exit).toBe(0);
      report.push({
        test: 'a byte flipped in one buffer segment, the last segment cut short',
        sent: `${n} events buffered`,
        arrived: `${seqs.length}, in order, once`,
        lost: `${n - seqs.length}`,
        why: `the two damaged blocks (${corrupt} bytes) fail their CRC: skipped, counted in cefd_buffer_corrupt_bytes_total, logged as errors; cefd keeps running`,
      });
    } finally {
      await sink.close();
    }
  });
});
