/**
 * The nats output inside a running cefd (child process), against a real nats-server 2.9:
 * a nats-server killed and restarted mid-stream, then SIGTERM and kill -9 of cefd while
 * events wait in its disk buffer for a server that is down. Each time every event sent
 * arrives in the stream exactly once (the resent ones dropped by the server's Nats-Msg-Id
 * dedup), which is what docs/outputs-nats.md promises.
 */
import { afterAll, afterEach, expect, test } from 'vitest';
import { connect } from 'nats';
import { scrape, tempDir, waitFor } from '../helpers/daemon.js';
import { freePort, printReport, runCefd, sendKscLines, type ChildDaemon, type FaultResult } from '../helpers/child.js';
import { natsServer, stopAllNats, type NatsServer } from '../helpers/nats-server.js';

const report: FaultResult[] = [];
const children: ChildDaemon[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.proc.kill('SIGKILL');
});
afterAll(async () => {
  try {
    printReport(report);
  } finally {
    await stopAllNats();
  }
});


function config(port: number, s: NatsServer, metricsPort?: number): string {
  return `state_dir: ./state
metrics: ${metricsPort === undefined ? '{ enabled: false }' : `{ host: 127.0.0.1, port: ${metricsPort} }`}
shutdown_timeout: 5s
listeners: [ { name: tcp, type: tcp, host: 127.0.0.1, port: ${port} } ]
outputs:
  - name: bus
    type: nats
    servers: [ "${s.url}" ]
    subject: cefd.events
    reconnect_wait: 100ms
    ack_timeout: 2s
    batch_max_events: 200
    retry: { initial_backoff: 50ms, max_backoff: 500ms }
    buffer: { type: disk }
    stream: { create: true, name: CEFD, duplicate_window: 10m }
dead_letter: { path: ./dead.ndjson }
`;
}

/** The `cnt` of every event in the stream (the sender's sequence number). */
async function streamSeqs(s: NatsServer): Promise<number[]> {
  const c = await connect({ servers: s.url });
  try {
    const jsm = await c.jetstreamManager({ timeout: 30_000 });
    const info = await jsm.streams.info('CEFD').catch(() => null);
    if (info === null) return [];
    const out: number[] = [];
    const consumer = await jsm.consumers.add('CEFD', { ack_policy: 'none' as never, inactive_threshold: 30e9 });
    const js = c.jetstream();
    const sub = await js.consumers.get('CEFD', consumer.name);
    const n = info.state.messages;
    if (n === 0) return out;
    // Until all n came (the loop stops there): the expiry only ends a read that lacks some.
    const it = await sub.fetch({ max_messages: n, expires: 30_000 });
    for await (const m of it) {
      const ev = JSON.parse(new TextDecoder().decode(m.data)) as { cef: { typed: { baseEventCount: number } } };
      out.push(ev.cef.typed.baseEventCount);
      if (out.length === n) break;
    }
    return out;
  } finally {
    await c.close();
  }
}

async function count(s: NatsServer): Promise<number> {
  const c = await connect({ servers: s.url });
  try {
    const info = await (await c.jetstreamManager({ timeout: 30_000 })).streams.info('CEFD').catch(() => null);
    return info?.state.messages ?? 0;
  } finally {
    await c.close();
  }
}

function exactlyOnce(seqs: number[], n: number): { missing: number; dup: number } {
  const seen = new Set(seqs);
  let missing = 0;
  for (let i = 0; i < n; i++) if (!seen.has(i)) missing++;
  return { missing, dup: seqs.length - seen.size };
}

test('nats-server killed and restarted mid-stream: every event once', async () => {
  const s = await natsServer();
  const dir = tempDir();
  const port = await freePort();
  const d = runCefd(dir, config(port, s));
  children.push(d);
  await d.until('cefd started');
  const N = 20_000;
  const sending = sendKscLines(port, 0, N);
  await waitFor(async () => (await count(s)) >= 3000, 60_000, '3000 events in the stream');
  await s.stop('SIGKILL');
  await sending;
  await s.start();
  await waitFor(async () => (await count(s)) >= N, 120_000, `${N} events in the stream`);
  d.proc.kill('SIGTERM');
  expect(await d.exit).toBe(0);
  const r = exactlyOnce(await streamSeqs(s), N);
  report.push({ test: 'nats: nats-server kill -9 + restart mid-stream', sent: String(N), arrived: String(N - r.missing), lost: String(r.missing), why: `${r.dup} duplicates in the stream` });
  expect(r).toEqual({ missing: 0, dup: 0 });
});

for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
  test(`cefd ${signal} with events buffered while nats-server is down: every event once after both come back`, async () => {
    const s = await natsServer();
    const dir = tempDir();
    const port = await freePort();
    const metrics = await freePort();
    const d = runCefd(dir, config(port, s, metrics));
    children.push(d);
    await d.until('cefd started');
    const N = 10_000;
    // Half delivered, then the server goes away and the other half waits in the disk buffer.
    await sendKscLines(port, 0, N / 2);
    await waitFor(async () => (await count(s)) >= N / 2, 60_000, 'the first half in the stream');
    await s.stop('SIGTERM');
    await sendKscLines(port, N / 2, N);
    await d.until('nats output bus', 30_000);
    // Every event of the second half in the output's disk buffer (what a kill -9 keeps; a
    // frame still being decoded is lost to it, as docs/reliability.md says).
    await waitFor(
      async () => {
        const m = await scrape(metrics);
        return (m.get('cefd_output_sent_events_total{output="bus"}') ?? 0) + (m.get('cefd_output_queue_events{output="bus"}') ?? 0) >= N;
      },
      60_000,
      'every event sent or in the disk buffer',
    );
    d.proc.kill(signal);
    await d.exit;
    await s.start();
    const d2 = runCefd(dir, config(port, s));
    children.push(d2);
    await d2.until('cefd started');
    await waitFor(async () => (await count(s)) >= N, 120_000, `${N} events in the stream`);
    d2.proc.kill('SIGTERM');
    expect(await d2.exit).toBe(0);
    const r = exactlyOnce(await streamSeqs(s), N);
    report.push({ test: `nats: cefd ${signal} with events buffered, nats-server down`, sent: String(N), arrived: String(N - r.missing), lost: String(r.missing), why: `${r.dup} duplicates in the stream` });
    expect(r).toEqual({ missing: 0, dup: 0 });
  });
}
