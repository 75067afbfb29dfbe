/**
 * Reloads under traffic, idle timeouts under backpressure, and UDP senders that interleave:
 * the cases where a daemon that works in the steady state can still lose, duplicate or
 * reorder events.
 */
import dgram from 'node:dgram';
import http from 'node:http';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import type { Daemon } from '../../src/daemon.js';
import { readNdjson, scrape, startFromFile, tempDir, waitFor } from '../helpers/daemon.js';

const daemons: Daemon[] = [];
afterEach(async () => {
  await Promise.all(daemons.splice(0).map((d) => d.stop()));
});

const start = (dir: string, yaml: string) => startFromFile(dir, yaml, daemons);

const line = (tag: string, i: number) => `CEF:0|V|P|1|${tag}|n|5|cnt=${i} cs1=${tag} cs1Label=Tag\n`;
const seqOf = (e: Record<string, unknown>) => (e['cef'] as { typed: { baseEventCount: number } }).typed.baseEventCount;

test('reloading a disk-buffered output while TCP and UDP traffic flows: no crash, nothing lost, TCP order kept', { timeout: 180_000 }, async () => {
  const dir = tempDir();
  const yaml = (filter: string) => `state_dir: ${dir}/state
listeners:
  - { name: tcp, type: tcp, host: 127.0.0.1, port: 0 }
  - { name: udp, type: udp, host: 127.0.0.1, port: 0 }
outputs:
  - { name: events, type: file, path: ${dir}/events.ndjson, filter: '${filter}' }
dead_letter: { path: ${dir}/dead.ndjson }
metrics: { enabled: false }
`;
  const { d, file } = await start(dir, yaml('true'));
  const tcpPort = d.ports()['tcp']!;
  const udpPort = d.ports()['udp']!;
  const sock = net.connect(tcpPort, '127.0.0.1');
  await new Promise((r) => sock.once('connect', r));
  const udp = dgram.createSocket('udp4');
  let tcpSent = 0;
  let udpSent = 0;
  let stop = false;
  const tcpPump = (async () => {
    while (!stop) {
      const chunk = Array.from({ length: 100 }, (_, k) => line('tcp', tcpSent + k)).join('');
      tcpSent += 100;
      if (!sock.write(chunk)) await new Promise((r) => sock.once('drain', r));
      await new Promise((r) => setImmediate(r));
    }
  })();
  const udpPump = (async () => {
    while (!stop) {
      await new Promise<void>((r) => udp.send(line('udp', udpSent), udpPort, '127.0.0.1', () => r()));
      udpSent++;
      if (udpSent % 20 === 0) await new Promise((r) => setTimeout(r, 1));
    }
  })();
  // Three reloads that each change the output (its filter): the buffer is handed over.
  for (const f of ['cef.name == "n"', 'exists cef', 'true']) {
    await new Promise((r) => setTimeout(r, 150));
    writeFileSync(file, yaml(f));
    expect(await d.reload()).toBe(true);
  }
  stop = true;
  await Promise.all([tcpPump, udpPump]);
  await new Promise<void>((r) => sock.end(() => r()));
  udp.close();
  // The output writes the file meanwhile: complete lines only. A loaded machine (a full test
  // run on 2 cores) takes far longer than an idle one, hence the generous bound.
  await waitFor(() => readNdjson(join(dir, 'events.ndjson'), { tolerateTornTail: true }).filter((e) => (e['cef'] as { deviceEventClassId: string }).deviceEventClassId === 'tcp').length >= tcpSent, 120_000, 'every TCP event');
  // A clean stop drains the output: then every event cefd read is in the file, and the file
  // ends with a whole line.
  expect(await d.stop()).toBe(0);
  const events = readNdjson(join(dir, 'events.ndjson'));
  const tcp = events.filter((e) => (e['cef'] as { deviceEventClassId: string }).deviceEventClassId === 'tcp').map(seqOf);
  expect(tcp).toEqual(Array.from({ length: tcpSent }, (_, i) => i));
  // UDP has no delivery guarantee on the wire; what cefd read is all there, once.
  const udpSeqs = events.filter((e) => (e['cef'] as { deviceEventClassId: string }).deviceEventClassId === 'udp').map(seqOf);
  expect(new Set(udpSeqs).size).toBe(udpSeqs.length);
  expect(udpSeqs.length).toBeGreaterThan(udpSent * 0.9);
  expect(readNdjson(join(dir, 'dead.ndjson'))).toEqual([]);
});

test('an idle timeout does not close a connection that only waits because cefd paused it', { timeout: 180_000 }, async () => {
  const dir = tempDir();
  let release: () => void = () => {};
  const gate = new Promise<void>((r) => (release = r));
  let got = 0;
  const srv = http.createServer((req, res) => {
    let n = 0;
    req.on('data', (c: Buffer) => (n += c.toString().split('\n').length - 1));
    req.on('end', () => void gate.then(() => ((got += n), res.writeHead(200).end())));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  try {
    const { d } = await start(
      dir,
      `state_dir: ${dir}/state
listeners: [ { name: tcp, type: tcp, host: 127.0.0.1, port: 0, idle_timeout: 300ms } ]
outputs: [ { name: slow, type: http, url: "http://127.0.0.1:${(srv.address() as net.AddressInfo).port}/", queue_max_events: 100, batch_max_events: 50, timeout: 60s, buffer: { type: memory } } ]
dead_letter: { path: ${dir}/dead.ndjson }
metrics: { host: 127.0.0.1, port: 0 }
`,
    );
    // Far more than cefd reads before it pauses (a few 64 KiB reads), so the sender always
    // has bytes waiting: the connection is never idle, only paused. With less, cefd could
    // read everything before the queue filled, and a loaded machine could then rightly
    // close it as idle before the pause (the likely cause of a failure seen under load).
    const n = 5000;
    const text = Array.from({ length: n }, (_, i) => `CEF:0|V|P|1|x|n|5|cnt=${i} msg=${'p'.repeat(400)}\n`).join('');
    const sock = net.connect(d.ports()['tcp']!, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    let closedEarly = false;
    sock.on('close', () => (closedEarly = true));
    sock.write(text);
    const m = async () => scrape(d.metricsPort()!);
    await waitFor(async () => (await m()).get('cefd_ingestion_paused') === 1, 60_000, 'paused');
    // Paused for well past the idle timeout (the daemon runs in this process: its 300 ms
    // timer, had it been armed, fired before this one, and the scrape below takes further
    // turns of the event loop for its decision and the close).
    await new Promise((r) => setTimeout(r, 1000));
    const during = await m();
    // Still paused, with bytes of the sender not read: it waited only because cefd paused it.
    expect(during.get('cefd_ingestion_paused')).toBe(1);
    expect(during.get('cefd_received_bytes_total{listener="tcp"}')).toBeLessThan(Buffer.byteLength(text));
    expect(during.get('cefd_connections_open{listener="tcp"}')).toBe(1);
    expect(closedEarly).toBe(false);
    release();
    await waitFor(() => got >= n, 120_000, 'all events delivered');
    expect(got).toBe(n);
    sock.destroy();
  } finally {
    srv.closeAllConnections();
    srv.close();
  }
});

test('an idle timeout closes a connection that sent nothing for that long', async () => {
  const dir = tempDir();
  const { d } = await start(
    dir,
    `state_dir: ${dir}/state
listeners: [ { name: tcp, type: tcp, host: 127.0.0.1, port: 0, idle_timeout: 300ms } ]
outputs: [ { name: events, type: file, path: ${dir}/events.ndjson } ]
dead_letter: { path: ${dir}/dead.ndjson }
metrics: { enabled: false }
`,
  );
  const sock = net.connect(d.ports()['tcp']!, '127.0.0.1');
  await new Promise((r) => sock.once('connect', r));
  let closed = false;
  sock.on('close', () => (closed = true));
  sock.resume();
  sock.write(line('x', 0));
  await waitFor(() => readNdjson(join(dir, 'events.ndjson'), { tolerateTornTail: true }).length === 1, 30_000, 'the event');
  // Then quiet: cefd closes its side.
  await waitFor(() => closed, 30_000, 'the idle connection closed');
  expect(closed).toBe(true);
});

test('UDP senders that interleave keep their own order', async () => {
  const dir = tempDir();
  const { d } = await start(
    dir,
    `state_dir: ${dir}/state
listeners: [ { name: udp, type: udp, host: 127.0.0.1, port: 0 } ]
outputs: [ { name: events, type: file, path: ${dir}/events.ndjson } ]
dead_letter: { path: ${dir}/dead.ndjson }
metrics: { enabled: false }
`,
  );
  const port = d.ports()['udp']!;
  const a = dgram.createSocket('udp4');
  const b = dgram.createSocket('udp4');
  const n = 300;
  for (let i = 0; i < n; i++) {
    await new Promise<void>((r) => a.send(line('a', i), port, '127.0.0.1', () => r()));
    await new Promise<void>((r) => b.send(line('b', i), port, '127.0.0.1', () => r()));
  }
  a.close();
  b.close();
  await waitFor(() => readNdjson(join(dir, 'events.ndjson'), { tolerateTornTail: true }).length >= 2 * n * 0.95, 30_000, 'the datagrams');
  await new Promise((r) => setTimeout(r, 200));
  const events = readNdjson(join(dir, 'events.ndjson'));
  for (const tag of ['a', 'b']) {
    const seqs = events.filter((e) => (e['cef'] as { deviceEventClassId: string }).deviceEventClassId === tag).map(seqOf);
    expect([...seqs].sort((x, y) => x - y)).toEqual(seqs);
  }
});

test('a reload that fails part-way leaves every output as it was: the one whose buffer it was about to hand over keeps delivering', async () => {
  const dir = tempDir();
  const yaml = (outputs: string) => `state_dir: ${dir}/state
listeners: [ { name: tcp, type: tcp, host: 127.0.0.1, port: 0 } ]
outputs:
${outputs}dead_letter: { path: ${dir}/dead.ndjson }
metrics: { enabled: false }
`;
  const a = `  - { name: a, type: file, path: ${dir}/a.ndjson }\n`;
  const { d, file, logs } = await start(dir, yaml(a));
  // a changes (its disk buffer would go to a new runner); b cannot start (its path is under a file).
  writeFileSync(file, yaml(`  - { name: a, type: file, path: ${dir}/a.ndjson, filter: 'exists cef' }\n  - { name: b, type: file, path: /dev/null/b.ndjson }\n`));
  expect(await d.reload()).toBe(false);
  const sock = net.connect(d.ports()['tcp']!, '127.0.0.1');
  await new Promise((r) => sock.once('connect', r));
  sock.write(Array.from({ length: 10 }, (_, i) => line('r', i)).join(''));
  await waitFor(() => readNdjson(join(dir, 'a.ndjson'), { tolerateTornTail: true }).length >= 10, 30_000, 'the 10 events in a.ndjson');
  // a itself cannot start in its new form (its buffer is handed over, then given back).
  writeFileSync(file, yaml(`  - { name: a, type: file, path: /dev/null/a.ndjson }\n`));
  expect(await d.reload()).toBe(false);
  sock.write(Array.from({ length: 10 }, (_, i) => line('r', 10 + i)).join(''));
  await waitFor(() => readNdjson(join(dir, 'a.ndjson'), { tolerateTornTail: true }).length >= 20, 30_000, 'the next 10 events in a.ndjson');
  sock.destroy();
  expect(d.flow.paused).toBe(false);
  expect(await d.stop()).toBe(0);
  expect(readNdjson(join(dir, 'a.ndjson')).map(seqOf)).toEqual(Array.from({ length: 20 }, (_, i) => i));
  expect(logs.lines.join("\n")).not.toMatch(/undelivered events stay in its disk buffer/);
});

test('settings a reload cannot apply are named (config_restart_needed): decode_workers takes effect at the next restart; logging.repeat_interval is applied', async () => {
  const dir = tempDir();
  const yaml = (workers: number, repeat: string) => `state_dir: ${dir}/state
decode_workers: ${workers}
listeners: [ { name: tcp, type: tcp, host: 127.0.0.1, port: 0 } ]
outputs: [ { name: a, type: file, path: ${dir}/a.ndjson } ]
dead_letter: { path: ${dir}/dead.ndjson }
metrics: { enabled: false }
logging: { repeat_interval: ${repeat} }
`;
  const { d, file, logs } = await start(dir, yaml(0, '10s'));
  const warned = () => logs.parsed().filter((l) => l['code'] === 'config_restart_needed');
  writeFileSync(file, yaml(2, '30s'));
  expect(await d.reload()).toBe(true);
  expect(warned()).toEqual([expect.objectContaining({ level: 'warn', key: 'decode_workers', from: 0, to: 2 })]);
  expect(warned()[0]!['msg']).toBe('decode_workers changed from 0 to 2: takes effect at the next restart (the decode worker threads: 0 now (decoding on the main thread), 2 after a restart)');
  expect(d.telemetry.repeatIntervalMs).toBe(30_000);
  // Events are still decoded (on the main thread); a reload that changes nothing more warns no more.
  const sock = net.connect(d.ports()['tcp']!, '127.0.0.1');
  await new Promise((r) => sock.once('connect', r));
  sock.end(line('w', 1));
  await waitFor(() => readNdjson(join(dir, 'a.ndjson'), { tolerateTornTail: true }).length === 1, 30_000, 'the event');
  expect(await d.reload()).toBe(true);
  expect(warned()).toHaveLength(1);
  // Back to what runs: nothing to warn about.
  writeFileSync(file, yaml(0, '10s'));
  expect(await d.reload()).toBe(true);
  expect(warned()).toHaveLength(1);
  expect(d.telemetry.repeatIntervalMs).toBe(10_000);
});

test('a listener a reload renames or removes leaves cefd_connections_open (what CefdSourceQuiet joins on): its counters may stay, its gauge goes', async () => {
  const dir = tempDir();
  const yaml = (names: string[]) => `state_dir: ${dir}/state
listeners:
${names.map((n) => `  - { name: ${n}, type: tcp, host: 127.0.0.1, port: 0 }`).join('\n')}
outputs: [ { name: events, type: file, path: ${dir}/events.ndjson } ]
dead_letter: { path: ${dir}/dead.ndjson }
metrics: { host: 127.0.0.1, port: 0 }
`;
  const { d, file } = await start(dir, yaml(['ksc', 'other']));
  const sock = net.connect(d.ports()['ksc']!, '127.0.0.1');
  await new Promise((r) => sock.once('connect', r));
  sock.end('CEF:0|V|P|1|x|n|5|cnt=1\n');
  const m = async () => scrape(d.metricsPort()!);
  await waitFor(async () => (await m()).get('cefd_last_event_received_timestamp_seconds{listener="ksc"}') !== undefined, 30_000, 'the event');
  expect((await m()).get('cefd_connections_open{listener="ksc"}')).toBeDefined();
  writeFileSync(file, yaml(['ksc-main', 'other']));
  expect(await d.reload()).toBe(true);
  const after = await m();
  expect(after.get('cefd_connections_open{listener="ksc"}')).toBeUndefined();
  expect(after.get('cefd_connections_open{listener="ksc-main"}')).toBe(0);
  expect(after.get('cefd_connections_open{listener="other"}')).toBe(0);
});
