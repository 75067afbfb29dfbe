/**
 * Connection floods: 10,000 connections opened and held (slowloris: each sends
 * half a frame and waits) against the connection limits. A legitimate sender still gets
 * through, and its events arrive.
 */
import net from 'node:net';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { readNdjson, scrape, tempDir, waitFor } from '../helpers/daemon.js';
import { freePort, printReport, runCefd, type FaultResult } from '../helpers/child.js';

const report: FaultResult[] = [];
afterAll(() => printReport(report));

const EVENT = (i: number) => `CEF:0|KasperskyLab|SecurityCenter|14.2|KLPRCI_TaskState|Running|1|cnt=${i} cs3=Legit cs3Label=TaskName\n`;

/** Opens `count` connections from `local` (a 127.x address), each sending half a frame; resolves when all settled. */
async function flood(port: number, count: number, local: string, into: net.Socket[]): Promise<{ open: number; refused: number }> {
  let open = 0;
  let refused = 0;
  const batch = 200;
  for (let i = 0; i < count; i += batch) {
    await Promise.all(
      Array.from({ length: Math.min(batch, count - i) }, () =>
        new Promise<void>((resolve) => {
          const s = net.connect({ port, host: '127.0.0.1', localAddress: local });
          s.on('error', () => undefined);
          s.once('connect', () => {
            s.write('<13>1 2026-11-28T10:00:00Z slow loris - - - CEF:0|');
            into.push(s);
            open++;
            resolve();
          });
          s.once('close', () => {
            if (open === 0 || !into.includes(s)) refused++;
            resolve();
          });
        }),
      ),
    );
  }
  return { open, refused };
}

async function legit(port: number, n: number): Promise<void> {
  const s = net.connect({ port, host: '127.0.0.1', localAddress: '127.0.0.2' });
  await new Promise((r, j) => {
    s.once('connect', r);
    s.once('error', j);
  });
  s.write(Array.from({ length: n }, (_, i) => EVENT(i)).join(''));
  await new Promise<void>((r) => s.end(() => r()));
}

test('10,000 held connections: a legitimate sender still gets through (per-source limit, slowloris eviction)', async () => {
  const dir = tempDir();
  const port = await freePort();
  const metrics = await freePort();
  const d = runCefd(
    dir,
    `state_dir: ./state
listeners: [ { name: tcp, type: tcp, host: 127.0.0.1, port: ${port}, max_connections: 1000, max_connections_per_source: 100 } ]
outputs: [ { name: events, type: file, path: ./events.ndjson } ]
dead_letter: { path: ./dead.ndjson }
metrics: { host: 127.0.0.1, port: ${metrics} }
`,
    { prlimit: ['--nofile=20000'] },
  );
  const held: net.Socket[] = [];
  try {
    await d.until('cefd started');
    // 10,000 connections from 50 addresses (127.0.1.1 .. 127.0.1.50), 200 each: the
    // per-source limit takes half, the rest overflows the global limit of 1000, where
    // each new connection evicts the oldest one that has not sent a whole frame.
    let attempted = 0;
    for (let a = 1; a <= 50; a++) {
      await flood(port, 200, `127.0.1.${a}`, held);
      attempted += 200;
    }
    expect(attempted).toBe(10_000);
    await waitFor(async () => (await scrape(metrics)).get('cefd_connections_open{listener="tcp"}') !== undefined, 30_000, 'metrics');
    const m0 = await scrape(metrics);
    // A legitimate sender, while the flood holds its connections.
    await legit(port, 500);
    await waitFor(() => readNdjson(join(dir, 'events.ndjson'), { tolerateTornTail: true }).length >= 500, 30_000, 'the legitimate events');
    const events = readNdjson(join(dir, 'events.ndjson'));
    expect(events.map((e) => (e['cef'] as { typed: { baseEventCount: number } }).typed.baseEventCount)).toEqual(Array.from({ length: 500 }, (_, i) => i));
    const m = await scrape(metrics);
    const perSource = m.get('cefd_connections_rejected_total{listener="tcp",reason="max_connections_per_source"}') ?? 0;
    const evicted = m.get('cefd_connections_rejected_total{listener="tcp",reason="evicted_no_frame"}') ?? 0;
    expect(perSource).toBe(5000);
    expect(evicted).toBeGreaterThan(0);
    expect(m0.get('cefd_connections_open{listener="tcp"}')).toBeLessThanOrEqual(1000);
    report.push({
      test: '10,000 slowloris connections from 50 addresses (held, half a frame each), then a legitimate sender',
      sent: '500 events from the legitimate sender',
      arrived: '500, in order',
      lost: '0',
      why: `${perSource} flood connections refused by max_connections_per_source (100), ${evicted} evicted at max_connections (1000) as they never sent a whole frame; open at most 1000`,
    });
  } finally {
    for (const s of held) s.destroy();
    d.proc.kill('SIGTERM');
    await d.exit;
  }
});
