/**
 * The shutdown spill (src/pipeline/spill.ts): reads kept at stop are written 0600 with
 * their listener, peer and receive time, and the next start (a real daemon process)
 * decodes them before its listener opens, then removes the file.
 */
import fs from 'node:fs';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { SPILL_FILE, SpillWriter, takeSpill, type SpilledRead } from '../../src/pipeline/spill.js';
import { Pipeline, type SourceContext } from '../../src/pipeline/pipeline.js';
import { compileRoutes } from '../../src/pipeline/router.js';
import type { OutputRunner } from '../../src/pipeline/output-runner.js';
import { WorkerPool } from '../../src/workers/worker-pool.js';
import { Telemetry } from '../../src/telemetry/telemetry.js';
import { LogCapture, readNdjson, tempDir } from '../helpers/daemon.js';
import { freePort, runCefd, type ChildDaemon } from '../helpers/child.js';

const children: ChildDaemon[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.proc.kill('SIGKILL');
});

const frame = (i: number) => Buffer.from(`<14>1 2026-11-28T10:00:00.000Z ksc01 - - - - CEF:0|KasperskyLab|SecurityCenter|14.2|KLPRCI_TaskState|Running|1|cnt=${i} cs3=Kept cs3Label=TaskName`);

test('written 0600, read back whole (frames, truncation, origin)', () => {
  const dir = tempDir();
  const w = new SpillWriter(dir);
  expect(w.write({ listener: 'tcp', peer: '127.0.0.1:5000', receivedMs: 1_700_000_000_000, frames: [frame(0), Buffer.from([0xff, 0x00, 0x0a])], truncated: [false, true] })).toBe(true);
  expect(w.write({ listener: 'tls', peer: '127.0.0.2:6000', tlsFingerprint: 'AB', receivedMs: 1, frames: [frame(1)], truncated: [false] })).toBe(true);
  w.close();
  expect(w.frames).toBe(3);
  expect(fs.statSync(join(dir, SPILL_FILE)).mode & 0o777).toBe(0o600);
  const got = takeSpill(dir)!;
  expect(got.bad).toEqual([]);
  expect(got.reads.map((r) => [r.listener, r.peer, r.tlsFingerprint, r.receivedMs, r.truncated])).toEqual([
    ['tcp', '127.0.0.1:5000', undefined, 1_700_000_000_000, [false, true]],
    ['tls', '127.0.0.2:6000', 'AB', 1, [false]],
  ]);
  expect(Buffer.concat(got.reads[0]!.frames)).toEqual(Buffer.concat([frame(0), Buffer.from([0xff, 0x00, 0x0a])]));
  got.done();
  expect(takeSpill(dir)).toBeNull();
});

/** cefd on `dir`'s state folder (a file output, one TCP listener), started. */
async function startOn(dir: string): Promise<ChildDaemon> {
  const d = runCefd(
    dir,
    `state_dir: ./state
listeners: [ { name: tcp, type: tcp, host: 127.0.0.1, port: ${await freePort()} } ]
outputs: [ { name: events, type: file, path: ./events.ndjson } ]
dead_letter: { path: ./dead.ndjson }
metrics: { enabled: false }
`,
  );
  children.push(d);
  await d.until('cefd started');
  return d;
}

test('the next start decodes the kept reads before new input and removes the file', async () => {
  const dir = tempDir();
  const state = join(dir, 'state');
  fs.mkdirSync(state, { mode: 0o700 });
  const w = new SpillWriter(state);
  w.write({ listener: 'tcp', peer: '127.0.0.1:5000', receivedMs: Date.now(), frames: Array.from({ length: 100 }, (_, i) => frame(i)), truncated: Array(100).fill(false) });
  w.close();
  const d = await startOn(dir);
  // Logged before the listener opened.
  const text = d.text();
  expect(text.indexOf('decoded 100 frames kept by the last stop')).toBeGreaterThan(-1);
  expect(text.indexOf('decoded 100 frames kept by the last stop')).toBeLessThan(text.indexOf('listening for tcp'));
  d.proc.kill('SIGTERM');
  expect(await d.exit).toBe(0);
  const events = readNdjson(join(dir, 'events.ndjson'));
  expect(events.map((e) => (e['cef'] as { typed: Record<string, number> }).typed['baseEventCount'])).toEqual(Array.from({ length: 100 }, (_, i) => i));
  expect(events.every((e) => e['listener'] === 'tcp')).toBe(true);
  expect(fs.existsSync(join(state, SPILL_FILE))).toBe(false);
  expect(fs.existsSync(join(state, `${SPILL_FILE}.replaying`))).toBe(false);
});

const spillRead = (i: number): SpilledRead => ({ listener: 'tcp', peer: '127.0.0.1:5000', receivedMs: 1_700_000_000_000 + i, frames: [frame(i)], truncated: [false] });
const cntOf = (r: SpilledRead) => Number(/cnt=(\d+)/.exec(r.frames[0]!.toString())![1]);
const spillOf = (dir: string, from: number, to: number) => {
  const w = new SpillWriter(dir);
  for (let i = from; i < to; i++) w.write(spillRead(i));
  w.close();
};

test('a file an earlier start took and did not finish is replayed first, then the next stops\' files, at any crash point', () => {
  const dir = tempDir();
  // Stop 1 spills 0-2; a start takes them and crashes before its events are on disk (no done()).
  spillOf(dir, 0, 3);
  expect(takeSpill(dir)!.reads.map(cntOf)).toEqual([0, 1, 2]);
  // The next run is stopped under overload: 3-4 spilled beside the taken file.
  spillOf(dir, 3, 5);
  const second = takeSpill(dir)!;
  expect(second.reads.map(cntOf)).toEqual([0, 1, 2, 3, 4]);
  expect(second.files.map((f) => f.slice(dir.length + 1))).toEqual([`${SPILL_FILE}.replaying`, `${SPILL_FILE}.replaying.1`]);
  expect(fs.existsSync(join(dir, SPILL_FILE))).toBe(false);
  expect(fs.statSync(second.files[1]!).mode & 0o777).toBe(0o600);
  // That start crashes too, and a third stop spills 5.
  spillOf(dir, 5, 6);
  const third = takeSpill(dir)!;
  expect(third.reads.map(cntOf)).toEqual([0, 1, 2, 3, 4, 5]);
  // A crash half-way through deleting them (the oldest gone): the rest again, in order,
  // before what a later stop spilled.
  fs.unlinkSync(third.files[0]!);
  spillOf(dir, 6, 7);
  const fourth = takeSpill(dir)!;
  expect(fourth.reads.map(cntOf)).toEqual([3, 4, 5, 6]);
  fourth.done();
  expect(takeSpill(dir)).toBeNull();
  expect(fs.readdirSync(dir)).toEqual([]);
});

test('the next start decodes an unfinished replay and the last stop\'s spill, in that order, before its listener opens', async () => {
  const dir = tempDir();
  const state = join(dir, 'state');
  fs.mkdirSync(state, { mode: 0o700 });
  // An earlier start took 0-49 and crashed; the stop of a later run spilled 50-99.
  spillOf(state, 0, 50);
  fs.renameSync(join(state, SPILL_FILE), join(state, `${SPILL_FILE}.replaying`));
  spillOf(state, 50, 100);
  const d = await startOn(dir);
  d.proc.kill('SIGTERM');
  expect(await d.exit).toBe(0);
  const events = readNdjson(join(dir, 'events.ndjson'));
  expect(events.map((e) => (e['cef'] as { typed: Record<string, number> }).typed['baseEventCount'])).toEqual(Array.from({ length: 100 }, (_, i) => i));
  expect(fs.readdirSync(state).filter((f) => f.startsWith(SPILL_FILE))).toEqual([]);
  // Said, and before the listener opened.
  const text = d.text();
  expect(text).toContain('replaying 2 spill files, oldest first');
  expect(text.indexOf('decoded 100 frames kept by the last stop')).toBeGreaterThan(-1);
  expect(text.indexOf('decoded 100 frames kept by the last stop')).toBeLessThan(text.indexOf('listening for tcp'));
});

test('stopping: reads the closing decode workers did not finish are kept in order, none dead-lettered', async () => {
  const telemetry = new Telemetry({ destination: new LogCapture(), processMetrics: false });
  const sink = (name: string) => {
    const s = { name, records: 0, enqueueMany: (r: string[]) => void (s.records += r.length), enqueueNdjson: (_b: Buffer, n: number) => void (s.records += n) };
    return s as unknown as OutputRunner & { records: number };
  };
  const out = sink('out');
  const dead = sink('dead_letter');
  const pipeline = new Pipeline([out], dead, telemetry, { defaultZone: 'UTC', includeRaw: false, routes: compileRoutes([{}]) });
  const pool = new WorkerPool(2, () => {});
  pipeline.useWorkers(pool, await pool.init({ defaultZone: 'UTC', includeRaw: false, routes: [{}], event: {}, chains: { tcp: [] }, baseDir: process.cwd() }));
  const ctx: SourceContext = { listener: 'tcp', peer: '127.0.0.1:7000', normalizers: [], stats: telemetry.listener('tcp'), pause: () => {}, resume: () => {} };
  const n = 20_000;
  for (let i = 0; i < n; i += 1000) {
    for (let k = i; k < i + 1000; k++) pipeline.frame(frame(k), 'lf', false, ctx);
    pipeline.commit(ctx);
  }
  const kept: SpilledRead[] = [];
  pipeline.spillFailedReads((r) => (kept.push(r), true));
  await pool.close();
  await pipeline.drain(100);
  const keptCnt = kept.flatMap((r) => r.frames.map((f) => Number(/cnt=(\d+)/.exec(f.toString())![1])));
  // The workers had not answered yet (close() fails their jobs at once): something was kept.
  expect(keptCnt.length).toBeGreaterThan(0);
  expect(dead.records).toBe(0);
  expect(out.records + keptCnt.length).toBe(n);
  // What was kept is what follows the delivered reads, in order.
  expect(keptCnt).toEqual(Array.from({ length: keptCnt.length }, (_, i) => out.records + i));
  expect(kept.every((r) => r.listener === 'tcp' && r.peer === '127.0.0.1:7000')).toBe(true);
});
