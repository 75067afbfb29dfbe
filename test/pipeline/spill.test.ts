/**
 * The shutdown spill (src/pipeline/spill.ts): reads kept at stop are written 0600 with
 * their listener, peer and receive time, and the next start (a real daemon process)
 * decodes them before its listener opens, then removes the file.
 */
import fs from 'node:fs';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { SPILL_FILE, SpillWriter, takeSpill } from '../../src/pipeline/spill.js';
import { readNdjson, tempDir } from '../helpers/daemon.js';
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

test('the next start decodes the kept reads before new input and removes the file', async () => {
  const dir = tempDir();
  const state = join(dir, 'state');
  fs.mkdirSync(state, { mode: 0o700 });
  const w = new SpillWriter(state);
  w.write({ listener: 'tcp', peer: '127.0.0.1:5000', receivedMs: Date.now(), frames: Array.from({ length: 100 }, (_, i) => frame(i)), truncated: Array(100).fill(false) });
  w.close();
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
