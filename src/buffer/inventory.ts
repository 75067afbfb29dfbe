/**
 * What the disk buffers in a state directory hold, read without opening them as queues:
 * `state_dir/buffers/<output>/` (disk-queue.ts, format segment.ts) and the stop's spill
 * files `state_dir/shutdown-spill/<output>.ndjson`. The daemon uses it to find the
 * buffers no configured output owns (orphans: events nothing will deliver), `cefd
 * buffers` to list and drop them.
 *
 * Counting reads block headers only (each carries its record count; bodies are skipped,
 * not CRC-checked, so a damaged block may count a little wrong) and streams spill files in
 * chunks: a buffer of any size is counted in bounded memory.
 */
import fs from 'node:fs';
import { join } from 'node:path';
import { BLOCK_HEADER_BYTES, findBlockMagic, isSegmentName, readBlockHeader, segmentFirstSeq } from './segment.js';

export const BUFFERS_DIR = 'buffers';
export const SPILL_DIR = 'shutdown-spill';
/** disk-queue.ts's delivered position. */
const ACK_FILE = 'ack.json';
const CHUNK = 1024 * 1024;

/** One output's buffer folder and spill file, as found on disk. */
export interface BufferEntry {
  /** The output name (the folder's, or the spill file's without `.ndjson`). */
  output: string;
  /** `state_dir/buffers/<output>/`, when it exists. */
  dir?: string;
  /** `state_dir/shutdown-spill/<output>.ndjson`, when it exists. */
  spill?: string;
  /** Undelivered records: in the segments from the delivered position on, plus the spill file's lines. */
  records: number;
  /** Bytes of those records (blocks from the delivered position on, with their headers, plus the spill file). */
  bytes: number;
  /** Bytes the folder and the spill file take on disk (what dropping them frees). */
  diskBytes: number;
  /** The oldest undelivered record's receive time (its `received` field), when the encoding carries one. */
  oldestMs?: number;
}

/** Every buffer folder and spill file under `stateDir` (those of outputs `only` accepts), sorted by output name. */
export function listBuffers(stateDir: string, only: (output: string) => boolean = () => true): BufferEntry[] {
  const byName = new Map<string, BufferEntry>();
  const entry = (output: string) => {
    let e = byName.get(output);
    if (e === undefined) byName.set(output, (e = { output, records: 0, bytes: 0, diskBytes: 0 }));
    return e;
  };
  for (const d of readdirOrEmpty(join(stateDir, BUFFERS_DIR))) {
    if (!d.isDirectory() || !only(d.name)) continue;
    const e = entry(d.name);
    e.dir = join(stateDir, BUFFERS_DIR, d.name);
    const s = countSegments(e.dir);
    e.records += s.records;
    e.bytes += s.bytes;
    e.diskBytes += s.diskBytes;
    if (s.oldestMs !== undefined) e.oldestMs = s.oldestMs;
  }
  for (const f of readdirOrEmpty(join(stateDir, SPILL_DIR))) {
    if (!f.isFile() || !f.name.endsWith('.ndjson') || !only(f.name.slice(0, -'.ndjson'.length))) continue;
    const e = entry(f.name.slice(0, -'.ndjson'.length));
    e.spill = join(stateDir, SPILL_DIR, f.name);
    const s = countLines(e.spill);
    e.records += s.records;
    e.bytes += s.bytes;
    e.diskBytes += s.bytes;
    // The spill file's records come after the segments' (disk-queue.ts takes it back behind them).
    if (e.oldestMs === undefined && s.oldestMs !== undefined) e.oldestMs = s.oldestMs;
  }
  return [...byName.values()].sort((a, b) => (a.output < b.output ? -1 : a.output > b.output ? 1 : 0));
}

/** The buffers no name in `owners` owns and that hold undelivered records (the owned ones are not read). */
export function orphanedBuffers(stateDir: string, owners: ReadonlySet<string>): BufferEntry[] {
  return listBuffers(stateDir, (o) => !owners.has(o)).filter((e) => e.records > 0);
}

function readdirOrEmpty(dir: string): fs.Dirent[] {
  try {
    return fs.readdirSync(dir, { withFileTypes: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
}

interface Count {
  records: number;
  bytes: number;
  diskBytes: number;
  oldestMs?: number;
}

/**
 * Undelivered records of a buffer folder: its segments from the delivered position in
 * ack.json on (the same rule disk-queue.ts's recovery applies: segments before the ack
 * segment are delivered; an ack naming no segment there counts from the start).
 */
export function countSegments(dir: string): Count {
  const out: Count = { records: 0, bytes: 0, diskBytes: 0 };
  const names = readdirOrEmpty(dir);
  for (const n of names) if (n.isFile()) out.diskBytes += statSize(join(dir, n.name));
  const segs = names.filter((n) => n.isFile() && isSegmentName(n.name)).map((n) => n.name).sort();
  let ack: { segment: number; offset: number; index: number } | null = null;
  try {
    const a = JSON.parse(fs.readFileSync(join(dir, ACK_FILE), 'utf8')) as { segment: number; offset: number; index: number };
    if (Number.isSafeInteger(a.segment) && Number.isSafeInteger(a.offset) && Number.isSafeInteger(a.index)) ack = a;
  } catch {
    ack = null;
  }
  let live = segs;
  if (ack !== null) {
    live = segs.filter((n) => segmentFirstSeq(n) >= ack!.segment);
    if (live.length === 0 || segmentFirstSeq(live[0]!) !== ack.segment) ack = null;
  }
  live.forEach((n, i) => {
    const from = i === 0 && ack !== null ? ack : null;
    let first = true;
    walkBlocks(join(dir, n), from?.offset ?? 0, (count, blockBytes, fd, bodyAt) => {
      // The block at the delivered position is partly delivered: its first `index` records.
      const skip = first && from !== null ? Math.min(count, from.index) : 0;
      first = false;
      out.records += count - skip;
      out.bytes += blockBytes;
      if (out.oldestMs === undefined && count > skip) {
        const t = receivedOf(fd, bodyAt, blockBytes - BLOCK_HEADER_BYTES, skip);
        if (t !== undefined) out.oldestMs = t;
      }
    });
  });
  return out;
}

/**
 * Calls `each(count, blockBytes, fd, bodyOffset)` for every block of a segment from byte
 * `from`, reading headers in 1 MiB chunks; a header that does not check is skipped to the
 * next block magic (as disk-queue.ts resyncs).
 */
function walkBlocks(path: string, from: number, each: (count: number, blockBytes: number, fd: number, bodyAt: number) => void): void {
  let fd: number;
  try {
    fd = fs.openSync(path, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return; // delivered and deleted meanwhile
    throw e;
  }
  try {
    const size = fs.fstatSync(fd).size;
    const chunk = Buffer.allocUnsafe(CHUNK);
    let chunkAt = -1;
    let chunkLen = 0;
    let off = from;
    while (off + BLOCK_HEADER_BYTES <= size) {
      if (chunkAt < 0 || off < chunkAt || off + BLOCK_HEADER_BYTES > chunkAt + chunkLen) {
        chunkLen = fs.readSync(fd, chunk, 0, CHUNK, off);
        chunkAt = off;
        if (chunkLen < BLOCK_HEADER_BYTES) break;
      }
      const h = readBlockHeader(chunk.subarray(off - chunkAt, off - chunkAt + BLOCK_HEADER_BYTES), size - off);
      if (h === null) {
        off = findBlockMagic(fd, off + 1, size);
        continue;
      }
      each(h.count, BLOCK_HEADER_BYTES + h.bodyBytes, fd, off + BLOCK_HEADER_BYTES);
      off += BLOCK_HEADER_BYTES + h.bodyBytes;
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** Records of a spill file (NDJSON lines; a last line without its newline counts), streamed. */
export function countLines(path: string): Count {
  const out: Count = { records: 0, bytes: 0, diskBytes: 0 };
  let fd: number;
  try {
    fd = fs.openSync(path, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return out;
    throw e;
  }
  try {
    const chunk = Buffer.allocUnsafe(CHUNK);
    let pos = 0;
    let lastByte = 0x0a;
    for (;;) {
      const n = fs.readSync(fd, chunk, 0, CHUNK, pos);
      if (n <= 0) break;
      if (pos === 0) out.oldestMs = receivedIn(chunk.subarray(0, n));
      let at = 0;
      for (;;) {
        const lf = chunk.indexOf(0x0a, at);
        if (lf === -1 || lf >= n) break;
        out.records++;
        at = lf + 1;
      }
      lastByte = chunk[n - 1]!;
      pos += n;
    }
    if (lastByte !== 0x0a) out.records++;
    out.bytes = pos;
    out.diskBytes = pos;
  } finally {
    fs.closeSync(fd);
  }
  if (out.oldestMs === undefined) delete out.oldestMs;
  return out;
}

function statSize(path: string): number {
  try {
    return fs.statSync(path).size;
  } catch {
    return 0;
  }
}

/** The `received` time of record `index` of the block body at `bodyAt` (reads at most 64 KiB of it). */
function receivedOf(fd: number, bodyAt: number, bodyBytes: number, index: number): number | undefined {
  const b = Buffer.allocUnsafe(Math.min(bodyBytes, 64 * 1024));
  const n = fs.readSync(fd, b, 0, b.length, bodyAt);
  let at = 0;
  for (let i = 0; i < index && at < n; i++) {
    const lf = b.indexOf(0x0a, at);
    if (lf === -1 || lf >= n) return undefined;
    at = lf + 1;
  }
  return receivedIn(b.subarray(at, n));
}

/** The native event's receive time (docs/event-format.md: `received`) in the first line of `text`, if it has one. */
function receivedIn(text: Buffer): number | undefined {
  const lf = text.indexOf(0x0a);
  const line = text.subarray(0, lf === -1 ? text.length : lf).toString('utf8');
  const m = /"received":"([^"]{10,40})"/.exec(line);
  if (m === null) return undefined;
  const ms = Date.parse(m[1]!);
  return Number.isFinite(ms) ? ms : undefined;
}
