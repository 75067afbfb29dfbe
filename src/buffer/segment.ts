/**
 * The disk buffer's on-disk format (disk-queue.ts reads and writes it; it must not change
 * without a migration: buffers written by an earlier cefd must replay).
 *
 * Segment files `<16 hex digits>.seg` (named after the sequence number of their
 * first record), each a run of blocks, one block per append (one socket read's worth of
 * events):
 *
 *     u32 magic "CEFB" | u32 body bytes | u32 record count | u32 CRC-32 of the body | body
 *     body = the records as NDJSON: each record's UTF-8 JSON text and a newline
 *
 * All integers little-endian. The CRC covers a whole block, so it costs one native call per
 * append, not per event. Records are JSON texts (or other encodings without a raw newline).
 */
import fs from 'node:fs';
import { crc32 } from 'node:zlib';

/** "CEFB" read as a little-endian u32. */
export const BLOCK_MAGIC = 0x42464543;
const MAGIC_BYTES = Buffer.from([0x43, 0x45, 0x46, 0x42]);
export const BLOCK_HEADER_BYTES = 16;
/** No block is larger than this (a sanity bound when reading headers). */
export const MAX_BLOCK_BYTES = 256 * 1024 * 1024;

const SEGMENT_NAME = /^[0-9a-f]{16}\.seg$/;

/** The file name of the segment whose first record has sequence number `firstSeq`. */
export function segmentName(firstSeq: number): string {
  return `${firstSeq.toString(16).padStart(16, '0')}.seg`;
}

export function isSegmentName(name: string): boolean {
  return SEGMENT_NAME.test(name);
}

/** The sequence number a segment file name carries. */
export function segmentFirstSeq(name: string): number {
  return parseInt(name.slice(0, 16), 16);
}

/** The header of a block holding `body` (`count` NDJSON records). */
export function blockHeader(body: Buffer, count: number): Buffer {
  const head = Buffer.allocUnsafe(BLOCK_HEADER_BYTES);
  head.writeUInt32LE(BLOCK_MAGIC, 0);
  head.writeUInt32LE(body.length, 4);
  head.writeUInt32LE(count, 8);
  head.writeUInt32LE(crc32(body), 12);
  return head;
}

export interface BlockHeader {
  bodyBytes: number;
  count: number;
  crc: number;
}

/**
 * A block header read from `head`, or null when it cannot be one: wrong magic, a body
 * larger than the bound or than the `room` left in the segment after the header's
 * start, or more records than bytes.
 */
export function readBlockHeader(head: Buffer, room: number): BlockHeader | null {
  if (head.length < BLOCK_HEADER_BYTES || head.readUInt32LE(0) !== BLOCK_MAGIC) return null;
  const bodyBytes = head.readUInt32LE(4);
  const count = head.readUInt32LE(8);
  const crc = head.readUInt32LE(12);
  if (bodyBytes > MAX_BLOCK_BYTES || BLOCK_HEADER_BYTES + bodyBytes > room || count > bodyBytes) return null;
  return { bodyBytes, count, crc };
}

/** Whether `body` is what the header says (its CRC-32). */
/**
 * The body is the one the header describes: its length, its CRC, and as many records
 * (lines) as the header's count says. The CRC covers the body only, so a damaged count
 * would otherwise go unnoticed and throw off the queue's length and acknowledgements.
 */
export function bodyMatches(body: Buffer, h: BlockHeader): boolean {
  return body.length === h.bodyBytes && crc32(body) === h.crc && lineCount(body, h.count + 1) === h.count;
}

/** Newlines in `body`, counting no further than `limit`. */
function lineCount(body: Buffer, limit: number): number {
  let n = 0;
  let i = body.indexOf(10);
  while (i !== -1 && n < limit) {
    n++;
    i = body.indexOf(10, i + 1);
  }
  return n;
}

/** The next offset at or after `from` in the open file `fd` where a block magic starts, or `size`. */
export function findBlockMagic(fd: number, from: number, size: number): number {
  const chunk = Buffer.allocUnsafe(64 * 1024);
  let off = from;
  while (off < size) {
    const n = fs.readSync(fd, chunk, 0, chunk.length, off);
    if (n <= 0) break;
    const i = chunk.subarray(0, n).indexOf(MAGIC_BYTES);
    if (i !== -1) return off + i;
    off += Math.max(1, n - 3);
  }
  return size;
}
