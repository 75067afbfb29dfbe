/**
 * Orphaned disk buffers: an output removed from the configuration (at a restart or by a
 * reload) leaves undelivered events in `state_dir/buffers/<output>/`. A real daemon says
 * so (warning `buffer_orphaned`, gauge cefd_buffer_orphaned_bytes), `cefd buffers` lists
 * them, `cefd buffers drop` deletes them only when safe, and adding the output back
 * under its name delivers them.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { DiskQueue } from '../../src/buffer/disk-queue.js';
import type { Daemon } from '../../src/daemon.js';
import { freePort, runCli } from '../helpers/child.js';
import { readNdjson, scrape, sendTcp, startFromFile, tempDir, waitFor, waitLines, type LogCapture } from '../helpers/daemon.js';

const daemons: Daemon[] = [];
afterEach(async () => {
  await Promise.all(daemons.splice(0).map((d) => d.stop()));
});

const start = (dir: string, yaml: string) => startFromFile(dir, yaml, daemons);

const line = (i: number) => `CEF:0|V|P|1|orphan|n|5|cnt=${i}\n`;
const N = 300;

/** YAML with the `events` file output, and `extra` outputs (YAML flow mappings). */
function yaml(dir: string, extra: string[]): string {
  return `state_dir: ${dir}/state
shutdown_timeout: 1s
listeners: [ { name: tcp, type: tcp, host: 127.0.0.1, port: 0 } ]
outputs:
  - { name: events, type: file, path: ${dir}/events.ndjson }
${extra.map((e) => `  - ${e}\n`).join('')}dead_letter: { path: ${dir}/dead.ndjson }
metrics: { host: 127.0.0.1, port: 0 }
`;
}

/** An HTTP output to a port nothing listens on: its events stay in its disk buffer. */
async function deadHttp(name: string): Promise<string> {
  return `{ name: ${name}, type: http, url: "http://127.0.0.1:${await freePort()}/", retry: { initial_backoff: 1s, max_backoff: 1s } }`;
}

/** Sends N events and waits until both outputs have them (the file written, the HTTP output's buffer holding them). */
async function sendAndBuffer(d: Daemon, dir: string, output: string): Promise<void> {
  await sendTcp(d.ports()['tcp']!, Array.from({ length: N }, (_, i) => line(i)));
  await waitLines(join(dir, 'events.ndjson'), N);
  await waitFor(async () => (await scrape(d.metricsPort()!)).get(`cefd_output_queue_events{output="${output}"}`) === N, 10_000, `${N} events queued for ${output}`);
}

const orphanWarnings = (logs: LogCapture) => logs.parsed().filter((l) => l['code'] === 'buffer_orphaned');

test('an output removed while cefd was stopped: warned at start, listed, not dropped while in use or while cefd runs, delivered when added back', { timeout: 60_000 }, async () => {
  const dir = tempDir();
  const state = join(dir, 'state');
  const first = await start(dir, yaml(dir, [await deadHttp('siem')]));
  await sendAndBuffer(first.d, dir, 'siem');
  // A clean stop keeps them in the disk buffer; then nothing is configured under that name.
  await first.d.stop();
  expect(orphanWarnings(first.logs)).toEqual([]);
  // The stop emptied the lock file (src/state-dir.ts): no pid of a stopped daemon in it.
  expect(readFileSync(join(state, 'cefd.lock'), 'utf8')).toBe('');
  // And two records a stop could not fit in the buffer (disk-queue.ts's spill file: encoded records, one a line).
  mkdirSync(join(state, 'shutdown-spill'), { recursive: true });
  writeFileSync(join(state, 'shutdown-spill', 'siem.ndjson'), [N, N + 1].map((i) => `${JSON.stringify({ id: `s${i}`, cef: { typed: { baseEventCount: i } } })}\n`).join(''));

  const { d, file, logs } = await start(dir, yaml(dir, []));
  const warned = orphanWarnings(logs);
  expect(warned).toHaveLength(1);
  expect(warned[0]).toMatchObject({ level: 'warn', output: 'siem', events: N + 2, paths: [join(state, 'buffers', 'siem'), join(state, 'shutdown-spill', 'siem.ndjson')] });
  expect(warned[0]!['bytes']).toBeGreaterThan(N * 50);
  expect(String(warned[0]!['msg'])).toContain('cefd buffers drop siem');
  const metrics = await scrape(d.metricsPort()!);
  expect(metrics.get('cefd_buffer_orphaned_bytes{output="siem"}')).toBe(warned[0]!['bytes']);
  // The in-use buffer of `events` is not an orphan.
  expect(metrics.has('cefd_buffer_orphaned_bytes{output="events"}')).toBe(false);

  const listed = await runCli(['buffers', '--config', file, '--json'], dir);
  expect(listed.code).toBe(0);
  const rows = listed.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  expect(rows.map((r) => [r['output'], r['configured'], r['in_use'], r['records']])).toEqual([
    ['dead_letter', true, true, 0],
    ['events', true, true, 0],
    ['siem', false, false, N + 2],
  ]);
  expect(Date.parse(String(rows[2]!['oldest']))).toBeGreaterThan(Date.now() - 600_000);
  const table = await runCli(['buffers', '--config', file], dir);
  expect(table.stdout).toMatch(/siem\s+orphaned\s+302\s/);
  expect(table.stdout).toMatch(/events\s+in use\s+0\s/);

  // Not while the daemon runs; never a configured output's buffer.
  const whileRunning = await runCli(['buffers', 'drop', 'siem', '--config', file], dir);
  expect(whileRunning.code).toBe(1);
  expect(whileRunning.stderr).toContain(`cefd (pid ${process.pid}) runs on ${state}`);
  const inUse = await runCli(['buffers', 'drop', 'events', '--config', file], dir);
  expect(inUse.code).toBe(1);
  expect(inUse.stderr).toContain('output events is configured with a disk buffer');
  expect(existsSync(join(state, 'buffers', 'siem'))).toBe(true);

  // Added back under the same name (another type: what matters is the name): delivered.
  writeFileSync(file, yaml(dir, [`{ name: siem, type: file, path: ${dir}/siem.ndjson }`]));
  expect(await d.reload()).toBe(true);
  const got = await waitLines(join(dir, 'siem.ndjson'), N + 2);
  expect(got.map((e) => (e['cef'] as { typed: { baseEventCount: number } }).typed.baseEventCount)).toEqual(Array.from({ length: N + 2 }, (_, i) => i));
  await waitFor(() => !existsSync(join(state, 'shutdown-spill', 'siem.ndjson')), 10_000, 'the spill file taken back and deleted');
  await waitFor(async () => !(await scrape(d.metricsPort()!)).has('cefd_buffer_orphaned_bytes{output="siem"}'), 10_000, 'the gauge to leave siem');
  expect(readNdjson(join(dir, 'dead.ndjson'))).toEqual([]);
});

test('an output removed by a reload: warned once it stopped; after the stop cefd buffers drop deletes it', { timeout: 60_000 }, async () => {
  const dir = tempDir();
  const state = join(dir, 'state');
  const { d, file, logs } = await start(dir, yaml(dir, [await deadHttp('old')]));
  await sendAndBuffer(d, dir, 'old');
  writeFileSync(file, yaml(dir, []));
  expect(await d.reload()).toBe(true);
  // The removed output drains for up to shutdown_timeout (it cannot), then is reported.
  await waitFor(() => orphanWarnings(logs).length === 1, 15_000, 'the buffer_orphaned warning');
  expect(orphanWarnings(logs)[0]).toMatchObject({ output: 'old', events: N });
  expect((await scrape(d.metricsPort()!)).get('cefd_buffer_orphaned_bytes{output="old"}')).toBeGreaterThan(0);
  // Its events were not dropped: they are on disk.
  expect(logs.parsed().filter((l) => l['reason'] === 'reload_undelivered')).toEqual([]);
  await d.stop();

  // A spill file of another removed output is listed (and dropped) with it.
  mkdirSync(join(state, 'shutdown-spill'), { recursive: true });
  writeFileSync(join(state, 'shutdown-spill', 'old.ndjson'), '{"id":"x"}\n{"id":"y"}\n');
  const before = await runCli(['buffers', '--config', file, '--json'], dir);
  const old = before.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>).find((r) => r['output'] === 'old')!;
  expect(old).toMatchObject({ configured: false, records: N + 2, paths: ['buffers/old', 'shutdown-spill/old.ndjson'] });

  const dropped = await runCli(['buffers', 'drop', 'old', '--config', file], dir);
  expect(dropped.stderr).toBe('');
  expect(dropped.code).toBe(0);
  expect(dropped.stdout).toContain(`${N + 2} undelivered events`);
  expect(existsSync(join(state, 'buffers', 'old'))).toBe(false);
  expect(existsSync(join(state, 'shutdown-spill', 'old.ndjson'))).toBe(false);
  expect(existsSync(join(state, 'buffers', 'events'))).toBe(true);
  const again = await runCli(['buffers', 'drop', 'old', '--config', file], dir);
  expect(again.code).toBe(1);
  expect(again.stderr).toContain('no disk buffer or spill file of output old');
  const bad = await runCli(['buffers', 'drop', '../state', '--config', file], dir);
  expect(bad.code).toBe(64);
});

test('a lock file left by a daemon that is gone does not block cefd buffers drop', async () => {
  const dir = tempDir();
  const state = join(dir, 'state');
  mkdirSync(join(state, 'shutdown-spill'), { recursive: true });
  writeFileSync(join(state, 'shutdown-spill', 'gone.ndjson'), '{"id":"x"}\n');
  // What a crash leaves: the lock file with the pid of a process that ended (a child that
  // has exited), not locked any more.
  const pid = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout;
  writeFileSync(join(state, 'cefd.lock'), `${pid}\n`);
  writeFileSync(join(dir, 'cefd.yaml'), yaml(dir, []));
  const r = await runCli(['buffers', 'drop', 'gone', '--config', join(dir, 'cefd.yaml')], dir);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  expect(existsSync(join(state, 'shutdown-spill', 'gone.ndjson'))).toBe(false);
  expect(readFileSync(join(state, 'cefd.lock'), 'utf8')).toBe('');
});

test('an output switched to a memory buffer leaves its disk buffer orphaned: listed as such, and may be dropped', async () => {
  const dir = tempDir();
  const state = join(dir, 'state');
  const q = DiskQueue.open({ dir: join(state, 'buffers', 'events'), maxBytes: 1024 * 1024, fsync: 'never', fsyncIntervalMs: 1000 });
  q.append(['{"id":"a"}', '{"id":"b"}', '{"id":"c"}']);
  await q.close();
  writeFileSync(join(dir, 'cefd.yaml'), `state_dir: ${state}
outputs: [ { name: events, type: file, path: ${dir}/events.ndjson, buffer: { type: memory } } ]
dead_letter: { path: ${dir}/dead.ndjson }
`);
  const table = await runCli(['buffers', '--config', join(dir, 'cefd.yaml')], dir);
  expect(table.stderr).toBe('');
  expect(table.stdout).toMatch(/events\s+orphaned \(buffer\.type memory\)\s+3\s/);
  expect(table.stdout).toContain('1 orphaned buffer holds undelivered events');
  const r = await runCli(['buffers', 'drop', 'events', '--config', join(dir, 'cefd.yaml')], dir);
  expect(r.code).toBe(0);
  expect(existsSync(join(state, 'buffers', 'events'))).toBe(false);
});
