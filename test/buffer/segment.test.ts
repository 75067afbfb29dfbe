/**
 * The disk buffer's on-disk format (src/buffer/segment.ts) is frozen: block headers are
 * byte-for-byte what earlier versions wrote, and a segment file written by hand from the
 * documented layout replays through the disk queue.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { DiskQueue } from '../../src/buffer/disk-queue.js';
import { blockHeader, bodyMatches, isSegmentName, readBlockHeader, segmentFirstSeq, segmentName } from '../../src/buffer/segment.js';
import { tempDir } from '../helpers/temp.js';

test('a block header is magic "CEFB", body bytes, record count, CRC-32 of the body, all u32 little-endian', () => {
  // Expected bytes computed outside cefd (Python: struct.pack('<IIII', ...), zlib.crc32).
  expect(blockHeader(Buffer.from('{"a":1}\n'), 1).toString('hex')).toBe('43454642080000000100000046a3e874');
  const h = readBlockHeader(Buffer.from('43454642080000000100000046a3e874', 'hex'), 24);
  expect(h).toEqual({ bodyBytes: 8, count: 1, crc: 0x74e8a346 });
  expect(bodyMatches(Buffer.from('{"a":1}\n'), h!)).toBe(true);
  expect(bodyMatches(Buffer.from('{"a":2}\n'), h!)).toBe(false);
  // A body running past the segment's end, a wrong magic, more records than bytes: no block.
  expect(readBlockHeader(Buffer.from('43454642080000000100000046a3e874', 'hex'), 23)).toBeNull();
  expect(readBlockHeader(Buffer.from('43454643080000000100000046a3e874', 'hex'), 24)).toBeNull();
  expect(readBlockHeader(Buffer.from('43454642080000000900000046a3e874', 'hex'), 24)).toBeNull();
});

test('segment files are named after their first sequence number, 16 hex digits', () => {
  expect(segmentName(0x2a)).toBe('000000000000002a.seg');
  expect(isSegmentName('000000000000002a.seg')).toBe(true);
  expect(isSegmentName('2a.seg')).toBe(false);
  expect(segmentFirstSeq('000000000000002a.seg')).toBe(42);
});

test('a buffer written by hand from the documented layout replays in order, a damaged block skipped', async () => {
  const dir = tempDir();
  const body = Buffer.from('{"i":0}\n{"i":1}\n');
  const block = (b: Buffer, count: number, crc: number) => {
    const head = Buffer.alloc(16);
    head.writeUInt32LE(0x42464543, 0);
    head.writeUInt32LE(b.length, 4);
    head.writeUInt32LE(count, 8);
    head.writeUInt32LE(crc, 12);
    return Buffer.concat([head, b]);
  };
  const good = block(body, 2, 93863332);
  const bad = block(Buffer.from('{"i":9}\n'), 1, 12345);
  const third = Buffer.from('{"i":2}\n');
  writeFileSync(join(dir, '0000000000000000.seg'), Buffer.concat([good, bad, blockHeader(third, 1), third]));
  const corrupt: number[] = [];
  const q = DiskQueue.open({ dir, maxBytes: 1024 * 1024, fsync: 'never', fsyncIntervalMs: 1000, onCorrupt: (n) => corrupt.push(n) });
  expect(q.peek(10)).toEqual(['{"i":0}', '{"i":1}', '{"i":2}']);
  expect(corrupt.reduce((a, b) => a + b, 0)).toBe(bad.length);
  await q.close();
});
