/**
 * The elasticsearch and splunk_hec outputs in the daemon (cefd as a child process, its
 * disk buffer, the emulators of test/helpers: no Elasticsearch, OpenSearch or Splunk can be
 * installed here): kill -9 while delivering and SIGTERM with the receiver down, then a
 * restart on the same state directory. Elasticsearch ends with every event exactly once
 * (create by event id: the replayed batch is answered 409 and counted as written); HEC,
 * which has no idempotency key, with every event at least once.
 */
import net from 'node:net';
import { afterEach, describe, expect, test } from 'vitest';
import { scrape, tempDir, waitFor } from '../helpers/daemon.js';
import { freePort, runCefd, type ChildDaemon } from '../helpers/child.js';
import { EsEmulator } from '../helpers/es-emulator.js';
import { HecEmulator } from '../helpers/hec-emulator.js';

const children: ChildDaemon[] = [];
const servers: { stop(): Promise<void> }[] = [];
afterEach(async () => {
  for (const c of children.splice(0)) c.proc.kill('SIGKILL');
  for (const s of servers.splice(0)) await s.stop();
});
function run(dir: string, yaml: string): ChildDaemon {
  const c = runCefd(dir, yaml);
  children.push(c);
  return c;
}

const line = (i: number) =>
  `<14>1 2026-12-06T10:00:00.000Z ksc01 - - - - CEF:0|KasperskyLab|SecurityCenter|14.2|GNRL_EV_VIRUS_FOUND|Virus found|4|rt=${1796551200000 + i} dhost=WS-${i % 50} cnt=${i} msg=Object infected\n`;

async function sendLines(port: number, from: number, n: number): Promise<void> {
  const sock = net.connect(port, '127.0.0.1');
  await new Promise((r) => sock.once('connect', r));
  for (let i = from; i < from + n; i += 500) {
    const chunk = Array.from({ length: Math.min(500, from + n - i) }, (_, k) => line(i + k)).join('');
    if (!sock.write(chunk)) await new Promise((r) => sock.once('drain', r));
  }
  await new Promise<void>((r) => sock.end(() => r()));
}

function config(port: number, metrics: number, output: string): string {
  return `state_dir: ./state
shutdown_timeout: 3s
listeners: [ { name: tcp, type: tcp, host: 127.0.0.1, port: ${port} } ]
outputs:
${output}
dead_letter: { path: ./dead.ndjson }
metrics: { host: 127.0.0.1, port: ${metrics} }
`;
}

/** Events the buffer holds or the output sent: once it reaches n, every event was accepted. */
async function accepted(metrics: number, name: string): Promise<number> {
  const m = await scrape(metrics);
  return (m.get(`cefd_output_sent_events_total{output="${name}"}`) ?? 0) + (m.get(`cefd_output_queue_events{output="${name}"}`) ?? 0);
}

describe('bulk outputs in the daemon', () => {
  test('elasticsearch: kill -9 while delivering, restart: every event indexed exactly once', async () => {
    const es = new EsEmulator();
    await es.start();
    servers.push(es);
    es.delayMs = 60; // slow enough that the kill lands mid-delivery
    const dir = tempDir();
    const port = await freePort();
    const metrics = await freePort();
    const yaml = config(port, metrics, `  - { name: es, type: elasticsearch, url: "${es.url}", index: "cefd-%Y.%m.%d", batch_max_events: 200, retry: { initial_backoff: 50ms, max_backoff: 500ms } }`);
    const d = run(dir, yaml);
    await d.until('cefd started');
    const n = 6000;
    await sendLines(port, 0, n);
    await waitFor(async () => (await accepted(metrics, 'es')) >= n, 30_000, 'every event in the buffer');
    await waitFor(() => es.docs().length >= 1000, 30_000, 'delivery under way');
    d.proc.kill('SIGKILL');
    await d.exit;
    const before = es.docs().length;
    es.delayMs = 0;
    const again = run(dir, yaml);
    await again.until('cefd started');
    await waitFor(() => es.docs().length >= n, 60_000, 'every event indexed');
    await waitFor(async () => (await scrape(metrics)).get('cefd_output_queue_events{output="es"}') === 0, 30_000, 'the buffer drained');
    const docs = es.docs();
    expect(docs).toHaveLength(n);
    expect(new Set(docs.map((x) => x.id)).size).toBe(n);
    // ECS by default, encoded on the decode workers; the document's event.id is its _id.
    for (const x of docs) {
      expect((x.source['ecs'] as { version: string }).version).toMatch(/^8\./);
      expect((x.source['event'] as { id: string }).id).toBe(x.id);
    }
    const sent = es.requests.reduce((s, r) => s + r.items, 0);
    console.log(`elasticsearch kill -9: ${before} indexed before the kill, ${sent} create actions for ${n} events (${sent - n} answered 409: already written)`);
    again.proc.kill('SIGTERM');
    expect(await again.exit).toBe(0);
  });

  test('elasticsearch: down at start, SIGTERM with events buffered, back: every event indexed once after the restart', async () => {
    const probe = new EsEmulator();
    await probe.start();
    const esPort = probe.port;
    await probe.stop();
    const dir = tempDir();
    const port = await freePort();
    const metrics = await freePort();
    const yaml = config(port, metrics, `  - { name: es, type: elasticsearch, url: "http://127.0.0.1:${esPort}", index: "cefd-%Y.%m.%d", retry: { initial_backoff: 50ms, max_backoff: 200ms } }`);
    const d = run(dir, yaml);
    await d.until('cefd started');
    await sendLines(port, 0, 1000);
    await waitFor(async () => (await scrape(metrics)).get('cefd_output_queue_events{output="es"}') === 1000, 30_000, 'events buffered');
    d.proc.kill('SIGTERM');
    expect(await d.exit).toBe(0);
    const es = new EsEmulator({ port: esPort });
    await es.start();
    servers.push(es);
    const again = run(dir, yaml);
    await again.until('cefd started');
    await waitFor(() => es.docs().length >= 1000, 30_000, 'every event indexed');
    expect(new Set(es.docs().map((x) => x.id)).size).toBe(1000);
    again.proc.kill('SIGTERM');
    expect(await again.exit).toBe(0);
  });

  test('splunk_hec: down at start, SIGTERM with events buffered, back: every event received after the restart', async () => {
    const probe = new HecEmulator();
    await probe.start();
    const hecPort = probe.port;
    await probe.stop();
    const dir = tempDir();
    const port = await freePort();
    const metrics = await freePort();
    const yaml = config(port, metrics, `  - { name: hec, type: splunk_hec, url: "http://127.0.0.1:${hecPort}", token: tok-1234, retry: { initial_backoff: 50ms, max_backoff: 200ms } }`);
    const d = run(dir, yaml);
    await d.until('cefd started');
    await sendLines(port, 0, 1000);
    await waitFor(async () => (await scrape(metrics)).get('cefd_output_queue_events{output="hec"}') === 1000, 30_000, 'events buffered');
    d.proc.kill('SIGTERM');
    expect(await d.exit).toBe(0);
    const hec = new HecEmulator({ tokens: ['tok-1234'], port: hecPort });
    await hec.start();
    servers.push(hec);
    const again = run(dir, yaml);
    await again.until('cefd started');
    await waitFor(() => hec.events.length >= 1000, 30_000, 'every event received');
    expect(new Set(hec.events.map((e) => (e.event as { id: string }).id)).size).toBe(1000);
    again.proc.kill('SIGTERM');
    expect(await again.exit).toBe(0);
  });

  test('splunk_hec: kill -9 while delivering, restart: every event received at least once', async () => {
    const hec = new HecEmulator({ tokens: ['tok-1234'] });
    await hec.start();
    servers.push(hec);
    hec.delayMs = 60;
    const dir = tempDir();
    const port = await freePort();
    const metrics = await freePort();
    const yaml = config(port, metrics, `  - { name: hec, type: splunk_hec, url: "${hec.url}", token: tok-1234, sourcetype: "kaspersky:ksc", batch_max_events: 200, retry: { initial_backoff: 50ms, max_backoff: 500ms } }`);
    const d = run(dir, yaml);
    await d.until('cefd started');
    const n = 6000;
    await sendLines(port, 0, n);
    await waitFor(async () => (await accepted(metrics, 'hec')) >= n, 30_000, 'every event in the buffer');
    await waitFor(() => hec.events.length >= 1000, 30_000, 'delivery under way');
    d.proc.kill('SIGKILL');
    await d.exit;
    hec.delayMs = 0;
    const again = run(dir, yaml);
    await again.until('cefd started');
    await waitFor(async () => new Set(hec.events.map((e) => (e.event as { id: string }).id)).size >= n, 60_000, 'every event received');
    const ids = hec.events.map((e) => (e.event as { id: string }).id);
    expect(new Set(ids).size).toBe(n);
    expect(hec.events.every((e) => e.sourcetype === 'kaspersky:ksc' && e.host === 'ksc01' && typeof e.time === 'number')).toBe(true);
    console.log(`splunk_hec kill -9: ${ids.length} received for ${n} events (${ids.length - n} again after the restart)`);
    again.proc.kill('SIGTERM');
    expect(await again.exit).toBe(0);
  });
});
