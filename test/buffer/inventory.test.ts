/**
 * Counting what disk buffers hold without opening them (src/buffer/inventory.ts), on
 * buffers the real DiskQueue wrote: records from the delivered position on, across
 * segments, partly delivered blocks, spill files streamed in chunks, damaged blocks.
 */
import fs from 'node:fs';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { DiskQueue } from '../../src/buffer/disk-queue.js';
import { countLines, countSegments, listBuffers, orphanedBuffers } from '../../src/buffer/inventory.js';
import { tempDir } from '../helpers/daemon.js';

const rec = (i: number) => JSON.stringify({ id: `e-${i}`, received: new Date(Date.UTC(2026, 11, 1, 0, 0, i)).toISOString(), msg: 'Задача x'.repeat(1 + (i % 5)) });

function fill(dir: string, blocks: number, opts: { segmentBytes?: number } = {}): { q: DiskQueue; n: number } {
  const q = DiskQueue.open({ dir, maxBytes: 64 * 1024 * 1024, segmentBytes: opts.segmentBytes ?? 4096, fsync: 'never', fsyncIntervalMs: 1000 });
  let n = 0;
  for (let b = 0; b < blocks; b++) {
    const block = Array.from({ length: 1 + (b % 7) }, (_, k) => rec(n + k));
    n += block.length;
    q.append(block);
  }
  return { q, n };
}

test('counts every record of a buffer spread over several segments, and the oldest receive time', async () => {
  const dir = join(tempDir(), 'buffers', 'siem');
  const { q, n } = fill(dir, 60);
  const bytes = q.bytes;
  await q.close();
  expect(fs.readdirSync(dir).filter((f) => f.endsWith('.seg')).length).toBeGreaterThan(3);
  const c = countSegments(dir);
  expect(c.records).toBe(n);
  expect(c.bytes).toBe(bytes);
  expect(c.oldestMs).toBe(Date.UTC(2026, 11, 1, 0, 0, 0));
});

test('counts from the delivered position: delivered segments and the delivered part of a block are left out', async () => {
  const dir = join(tempDir(), 'buffers', 'siem');
  const { q, n } = fill(dir, 60);
  // Deliver 100 records, in batches that end inside blocks.
  let done = 0;
  while (done < 100) {
    const b = q.peek(Math.min(13, 100 - done));
    q.ack(b.length);
    done += b.length;
  }
  await q.close();
  const c = countSegments(dir);
  expect(c.records).toBe(n - 100);
  expect(c.oldestMs).toBe(Date.UTC(2026, 11, 1, 0, 0, 100));
  // The count agrees with what the queue itself replays.
  const again = DiskQueue.open({ dir, maxBytes: 64 * 1024 * 1024, fsync: 'never', fsyncIntervalMs: 1000 });
  expect(again.replayed).toBe(n - 100);
  expect(again.peek(1)).toEqual([rec(100)]);
  await again.close();
});

test('a damaged block is skipped to the next one (headers are counted, as the queue resyncs)', async () => {
  const dir = join(tempDir(), 'buffers', 'siem');
  const { q } = fill(dir, 3, { segmentBytes: 1024 * 1024 });
  await q.close();
  const seg = join(dir, fs.readdirSync(dir).find((f) => f.endsWith('.seg'))!);
  // 1 + 2 + 3 records; smash the magic of the second block.
  const buf = fs.readFileSync(seg);
  const second = 16 + buf.readUInt32LE(4);
  buf.write('XXXX', second);
  fs.writeFileSync(seg, buf);
  expect(countSegments(dir).records).toBe(1 + 3);
});

test('a spill file is counted in chunks: lines across chunk ends, a last line without its newline', () => {
  const dir = tempDir();
  const file = join(dir, 'x.ndjson');
  // About 3 MiB: three 1 MiB chunks, lines of varying length crossing their ends.
  const lines = Array.from({ length: 9000 }, (_, i) => `${rec(i)}${'y'.repeat(i % 300)}`);
  fs.writeFileSync(file, lines.join('\n'));
  const c = countLines(file);
  expect(c.records).toBe(9000);
  expect(c.bytes).toBe(fs.statSync(file).size);
  expect(c.oldestMs).toBe(Date.UTC(2026, 11, 1, 0, 0, 0));
  fs.appendFileSync(file, '\n');
  expect(countLines(file).records).toBe(9000);
  fs.writeFileSync(file, '');
  expect(countLines(file).records).toBe(0);
});

test('listBuffers joins folders and spill files by output; orphanedBuffers keeps those no owner has and that hold records', async () => {
  const state = tempDir();
  const a = fill(join(state, 'buffers', 'kept'), 5);
  await a.q.close();
  const b = fill(join(state, 'buffers', 'gone'), 5);
  await b.q.close();
  // A buffer whose records were all delivered holds nothing to warn about.
  const c = fill(join(state, 'buffers', 'empty'), 2);
  while (c.q.peek(50).length > 0) c.q.ack(50);
  await c.q.close();
  fs.mkdirSync(join(state, 'shutdown-spill'));
  fs.writeFileSync(join(state, 'shutdown-spill', 'gone.ndjson'), `${rec(900)}\n${rec(901)}\n`);
  fs.writeFileSync(join(state, 'shutdown-spill', 'spill-only.ndjson'), `${rec(902)}\n`);
  const all = listBuffers(state);
  expect(all.map((e) => [e.output, e.records])).toEqual([
    ['empty', 0],
    ['gone', b.n + 2],
    ['kept', a.n],
    ['spill-only', 1],
  ]);
  const gone = all.find((e) => e.output === 'gone')!;
  expect(gone.dir).toBe(join(state, 'buffers', 'gone'));
  expect(gone.spill).toBe(join(state, 'shutdown-spill', 'gone.ndjson'));
  expect(orphanedBuffers(state, new Set(['kept'])).map((e) => e.output)).toEqual(['gone', 'spill-only']);
  expect(listBuffers(join(state, 'nothing-here'))).toEqual([]);
});
