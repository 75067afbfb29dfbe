/**
 * A disk-backed event queue: an output's buffer under `<state_dir>/buffers/<output>/`.
 * An event counts as accepted once it is appended here; the output's delivered position
 * is persisted, so after a restart (or a crash of cefd itself) the undelivered events are
 * replayed in order.
 *
 * On disk: segment files of blocks, one block per append (one socket read's worth of
 * events); the format is segment.ts's. The body being NDJSON, a batch read from the
 * buffer goes to a file or an HTTP output as it is: each event is encoded once, when
 * appended. A block whose header, CRC or record count does not check (a crash mid-write,
 * a bad disk) is skipped and counted; reading resynchronizes at the next block magic whose CRC checks.
 * Appends always go to a fresh segment after a restart, so a torn tail is never appended to.
 *
 * The delivered position (`ack.json`: segment, block offset, index in the block) is
 * written at most every 200 ms and at close, without fsync: after a crash some delivered
 * events are delivered again (at least once; every event carries a stable `id`).
 *
 * Write errors (disk full, read-only file system) keep the records in a bounded memory
 * overflow, reported through `writeError`; the owner pauses the sources, and the overflow
 * is written to disk as soon as a write succeeds again (checked at each append and every
 * second).
 *
 * `maxBytes` is where the buffer counts as full (fill() >= 1: the owner pauses the sources,
 * or with `whenFull: drop_newest` drops what does not fit and reports it through
 * `onDropped`). What still comes after that with `block` (the reads in flight when the
 * sources paused; sources that cannot pause up to the hard limit, fill() 2, at
 * overrunBytes past maxBytes) is written to the segment files past maxBytes, not held in
 * memory: an event counts as accepted once appended, and a crash while the output stays
 * down must not lose what the other outputs got. One block larger than maxBytes by itself
 * goes to an empty buffer (fits()).
 * At close, what still waits in memory (after a write error) goes to the spill file
 * (`spillFile`, 0600); the next open takes it back a chunk at a time as room frees (never
 * all of it into memory), ahead of any new append, counts as full until all of it is on
 * disk, and deletes it once every record of it is on disk or delivered (a crash before that
 * hands those records out again: at least once). See docs/reliability.md.
 */
import fs from 'node:fs';
import { dirname, join } from 'node:path';
import { encodeNdjson } from '../outputs/shared/encode.js';
import { fsyncDir, fsyncDirLater } from '../state-dir.js';
import { BytesBatch, StringBatch, splitNdjson, type EventQueue, type QueueBatch } from './queue.js';

import { BLOCK_HEADER_BYTES as HEADER, blockHeader, bodyMatches, findBlockMagic, isSegmentName, readBlockHeader, segmentFirstSeq, segmentName } from './segment.js';

const ACK_FILE = 'ack.json';

export interface DiskQueueOptions {
  dir: string;
  /** Most bytes of segment files kept (undelivered events, plus the delivered part of the oldest segment). */
  maxBytes: number;
  /** Segment size; default maxBytes/8, between 64 KiB and 32 MiB. */
  segmentBytes?: number;
  fsync: 'never' | 'batch' | 'interval';
  fsyncIntervalMs: number;
  /** Reports corrupt data found while reading: bytes skipped. */
  onCorrupt?: (bytes: number, where: string) => void;
  /** Reports a write that failed (the records are held in memory). */
  onWriteError?: (error: string) => void;
  /** Reports that writes succeed again. */
  onWriteRecovered?: () => void;
  /** `drop_newest`: an append that does not fit is dropped (reported), not held in memory. Default `block`. */
  whenFull?: 'block' | 'drop_newest';
  /** Reports records dropped because they did not fit (`whenFull: drop_newest`). */
  onDropped?: (records: number) => void;
  /**
   * Where close() keeps the records still waiting in memory (NDJSON, mode 0600), outside
   * the segment files; read back at open. Without it they are written past `maxBytes`.
   */
  spillFile?: string;
  /** Reports what close() kept in the spill file (`error`: it could not be written, the records are lost). */
  onSpilled?: (records: number, path: string, error?: string) => void;
}

interface Segment {
  firstSeq: number;
  path: string;
  /** Bytes in the file (known: we wrote it, or we stat-ed it at open). */
  size: number;
  /** Corrupt stretches found at open: start offset → where the next valid block starts (already reported). */
  skips?: Map<number, number>;
}

interface AheadBlock {
  seg: Segment;
  offset: number;
  /** The block's NDJSON body (a private copy). */
  body: Buffer;
  count: number;
  /** Records of this block already acknowledged (or delivered before a restart). */
  taken: number;
  /** Byte offset in `body` of the first record not taken. */
  takenBytes: number;
}

interface AckPos {
  segment: number;
  offset: number;
  index: number;
}

export class DiskQueue implements EventQueue {
  readonly durable = true;
  private segments: Segment[] = [];
  private writeFd = -1;
  private nextSeq = 0;
  /** Records on disk not yet acknowledged (valid ones). */
  private diskCount = 0;
  /** Blocks read ahead of the ack point, and how many of their records are not acknowledged. */
  private ahead: AheadBlock[] = [];
  private aheadCount = 0;
  /** The last batch handed out by peek (a retry gets the same one). */
  private peeked: { batch: QueueBatch; max: number; fromOverflow: boolean } | null = null;
  /** Read cursor: next block to read. */
  private readSeg = 0;
  private readOffset = 0;
  /** Ack point: the first unacknowledged record's block and index. */
  private ackPos: AckPos | null = null;
  private ackDirty = false;
  private ackTimer: NodeJS.Timeout | null = null;
  private fsyncTimer: NodeJS.Timeout | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private dirty = false;
  /** Records that could not be written (memory), in order after everything on disk. */
  private overflow: string[] = [];
  /** Records at the head of the overflow that came from the spill file at open (it is deleted when they are gone). */
  private fromSpill = 0;
  /**
   * The spill file taken at open while part of it is unread: read a chunk at a time as
   * room frees, so memory never holds all of it. Its unread records come after the
   * overflow's first `fromSpill` records and before the rest of the overflow.
   */
  private spill: { fd: number; path: string; offset: number; end: number; left: number } | null = null;
  private static readonly SPILL_CHUNK_BYTES = 256 * 1024;
  private static readonly SPILL_CHUNK_RECORDS = 1000;
  /** How many overflow records the last peek handed out (not acked yet). */
  private overflowInFlight = 0;
  private error: string | null = null;
  private readonly segmentBytes: number;
  private scratch = Buffer.allocUnsafe(256 * 1024);
  /** The tail of what was appended (block bodies by `segment:offset`), so a caught-up reader skips the disk. */
  private readonly tail = new Map<string, { body: Buffer; count: number; blockBytes: number }>();
  private tailBytes = 0;
  private static readonly TAIL_MAX_BYTES = 16 * 1024 * 1024;
  private closed = false;
  /** Events found undelivered at open. */
  readonly replayed: number;

  /** New limits and callbacks (a reload hands this buffer to a new output slot). */
  setOptions(o: Omit<DiskQueueOptions, 'dir' | 'segmentBytes'>): void {
    Object.assign(this.opts, o);
    if (this.fsyncTimer !== null) clearInterval(this.fsyncTimer);
    this.fsyncTimer = null;
    if (this.opts.fsync === 'interval') {
      this.fsyncTimer = setInterval(() => this.fsyncNow(), Math.max(1, this.opts.fsyncIntervalMs));
      this.fsyncTimer.unref();
    }
  }

  private constructor(private readonly opts: DiskQueueOptions) {
    this.segmentBytes = opts.segmentBytes ?? Math.min(32 * 1024 * 1024, Math.max(64 * 1024, Math.floor(opts.maxBytes / 8)));
    this.replayed = 0;
  }

  /** Opens (creating if needed) the buffer folder, recovers what is there. Throws when the folder is unusable. */
  static open(opts: DiskQueueOptions): DiskQueue {
    const q = new DiskQueue(opts);
    // Buffered events are as private as the rest of state_dir (src/state-dir.ts): 0700 / 0600.
    fs.mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
    // Fail now, not at the first event, when the folder cannot be written.
    fs.accessSync(opts.dir, fs.constants.W_OK);
    q.recover();
    q.openWriteSegment();
    q.takeSpill();
    (q as { replayed: number }).replayed = q.length;
    if (opts.fsync === 'interval') {
      q.fsyncTimer = setInterval(() => q.fsyncNow(), Math.max(1, opts.fsyncIntervalMs));
      q.fsyncTimer.unref();
    }
    return q;
  }

  get length(): number {
    return this.diskCount + this.overflow.length + (this.spill?.left ?? 0);
  }

  /**
   * Bytes held: segment files, memory overflow, and the unread part of the spill file
   * taken at open (what `cefd_buffer_bytes` shows and `cefd buffers` counts on disk).
   */
  get bytes(): number {
    return this.boundedBytes() + (this.spill !== null ? this.spill.end - this.spill.offset : 0);
  }

  /** Bytes of segment files plus memory overflow (what `maxBytes` bounds; the spill file is outside it). */
  private boundedBytes(): number {
    let b = 0;
    for (const s of this.segments) b += s.size;
    for (const r of this.overflow) b += r.length;
    return b;
  }

  /**
   * How full the buffer is: 1 is full (the owner pauses the sources or drops), 2 the hard
   * limit for sources that cannot be paused. Records held in memory after a write error
   * count as full at once, up to `overflowMax` records for the hard limit.
   */
  fill(): number {
    const b = this.boundedBytes();
    const max = this.opts.maxBytes;
    // Past maxBytes: 2 once the overrun (written after the buffer was full) reaches overrunBytes.
    const disk = b <= max ? b / max : 1 + (b - max) / this.overrunBytes;
    if (this.overflow.length === 0 && this.spill === null) return disk;
    return Math.max(disk, 1 + this.overflow.length / this.overflowMax);
  }

  /**
   * Bytes past maxBytes at which the buffer reaches the hard limit (fill() 2): sources that
   * cannot be paused (UDP) are then refused; those that pause only finish what was in
   * flight. maxBytes itself, at most 16 MiB.
   */
  get overrunBytes(): number {
    return Math.min(this.opts.maxBytes, DiskQueue.OVERRUN_MAX_BYTES);
  }

  static readonly OVERRUN_MAX_BYTES = 16 * 1024 * 1024;

  /** Records held in memory while the disk cannot be written, at most (the hard limit). */
  overflowMax = 10_000;

  /** The last write error, while records are held in memory; null when writes work. */
  get writeError(): string | null {
    return this.error;
  }

  get overflowLength(): number {
    return this.overflow.length;
  }

  // ---- recovery ----

  private recover(): void {
    const names = fs.readdirSync(this.opts.dir).filter(isSegmentName).sort();
    for (const n of names) {
      const path = join(this.opts.dir, n);
      // An entry that is no readable segment file (a folder, a dangling link, one another
      // user made unreadable) is damage like a corrupt block: skipped and reported, and the
      // rest of the buffer (and every other output) goes on.
      let size = 0;
      try {
        const st = fs.statSync(path);
        if (!st.isFile()) throw new Error('not a regular file');
        size = st.size;
        fs.closeSync(fs.openSync(path, 'r'));
      } catch (e) {
        this.opts.onCorrupt?.(size, `${path}: not a readable segment file, skipped (${(e as Error).message})`);
        continue;
      }
      this.segments.push({ firstSeq: segmentFirstSeq(n), path, size });
    }
    let ack: AckPos | null = null;
    try {
      const a = JSON.parse(fs.readFileSync(join(this.opts.dir, ACK_FILE), 'utf8')) as AckPos;
      if (Number.isSafeInteger(a.segment) && Number.isSafeInteger(a.offset) && Number.isSafeInteger(a.index)) ack = a;
    } catch {
      ack = null;
    }
    // Drop segments wholly before the ack point.
    if (ack !== null) {
      const keep: Segment[] = [];
      for (const s of this.segments) {
        if (s.firstSeq < ack.segment) fs.rmSync(s.path, { force: true });
        else keep.push(s);
      }
      this.segments = keep;
      if (this.segments.length === 0 || this.segments[0]!.firstSeq !== ack.segment) ack = null;
    }
    // Count valid records from the ack point on (this also validates every block).
    for (let i = 0; i < this.segments.length; i++) {
      const s = this.segments[i]!;
      const from = i === 0 && ack !== null ? ack.offset : 0;
      let counted = 0;
      let first = true;
      this.scan(s, from, (_off, count) => {
        let c = count;
        if (first && i === 0 && ack !== null && _off === ack.offset) c = Math.max(0, count - ack.index);
        first = false;
        counted += c;
      });
      this.diskCount += counted;
      // Only a name for the next segment: it must sort after every existing one.
      this.nextSeq = Math.max(this.nextSeq, s.firstSeq + counted + 1);
    }
    if (this.segments.length > 0) {
      this.readSeg = 0;
      this.readOffset = ack !== null ? ack.offset : 0;
      if (ack !== null && ack.index > 0) {
        // The first block is partly delivered: read it now and drop the delivered part
        // (only from that block: when it no longer reads back, the next good one is whole).
        this.pendingSkip = { seg: this.segments[0]!, offset: ack.offset, records: ack.index };
      }
      this.ackPos = ack ?? { segment: this.segments[0]!.firstSeq, offset: 0, index: 0 };
    }
  }

  /**
   * Takes back what the last close() could not fit, after everything on disk and before
   * any new append: read a chunk at a time (at most SPILL_CHUNK_RECORDS records or
   * SPILL_CHUNK_BYTES) into the memory overflow as space frees, and moved to disk from
   * there (the buffer counts as full meanwhile). The file stays until all of it has left
   * memory. A last line without its newline (a torn write) is not a record.
   */
  private takeSpill(): void {
    const path = this.opts.spillFile;
    if (path === undefined) return;
    let fd: number;
    try {
      fd = fs.openSync(path, 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
    let left = 0;
    let end = 0;
    try {
      // Count the records (whole lines) without holding them.
      const size = fs.fstatSync(fd).size;
      const chunk = Buffer.allocUnsafe(DiskQueue.SPILL_CHUNK_BYTES);
      for (let off = 0; off < size; ) {
        const n = fs.readSync(fd, chunk, 0, chunk.length, off);
        if (n <= 0) break;
        for (let lf = chunk.indexOf(0x0a); lf !== -1 && lf < n; lf = chunk.indexOf(0x0a, lf + 1)) {
          left++;
          end = off + lf + 1;
        }
        off += n;
      }
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
    if (left === 0) {
      fs.closeSync(fd);
      fs.rmSync(path, { force: true });
      return;
    }
    this.spill = { fd, path, offset: 0, end, left };
    this.flushOverflow();
    this.startRetry();
  }

  /** Reads the next chunk of the spill file into the overflow, after its spill part (the rest of the overflow came later). */
  private loadSpill(): void {
    const sp = this.spill!;
    const recs: string[] = [];
    try {
      let want = Math.min(DiskQueue.SPILL_CHUNK_BYTES, sp.end - sp.offset);
      for (;;) {
        const buf = Buffer.allocUnsafe(want);
        let n = 0;
        while (n < want) {
          const r = fs.readSync(sp.fd, buf, n, want - n, sp.offset + n);
          if (r <= 0) break;
          n += r;
        }
        let at = 0;
        for (let lf = buf.indexOf(0x0a); lf !== -1 && lf < n && recs.length < DiskQueue.SPILL_CHUNK_RECORDS; lf = buf.indexOf(0x0a, at)) {
          recs.push(buf.toString('utf8', at, lf));
          at = lf + 1;
        }
        if (recs.length > 0) {
          sp.offset += at;
          break;
        }
        // One record longer than the chunk: read more of it (the file ends in a newline at `end`).
        if (n < want || want >= sp.end - sp.offset) throw new Error('the file changed while it was read');
        want = Math.min(want * 2, sp.end - sp.offset);
      }
    } catch (e) {
      // What is left of it cannot be read: reported as skipped, like a corrupt block.
      this.opts.onCorrupt?.(sp.end - sp.offset, `${sp.path} at ${sp.offset}: ${(e as Error).message}`);
      sp.offset = sp.end;
      sp.left = recs.length;
    }
    sp.left -= recs.length;
    this.overflow = this.fromSpill === 0 ? recs.concat(this.overflow) : this.overflow.slice(0, this.fromSpill).concat(recs, this.overflow.slice(this.fromSpill));
    this.fromSpill += recs.length;
    if (sp.offset >= sp.end || sp.left <= 0) {
      fs.closeSync(sp.fd);
      this.spill = null;
      // Every record of it is in memory now; the file goes once they have left it.
      if (this.fromSpill === 0) this.spillLeft();
    }
  }

  /**
   * `n` records left the head of the overflow (to disk, or delivered from memory): the
   * barriers of onDisk() move on, and once none from the spill file is left, it goes.
   */
  private leftOverflow(n: number): void {
    this.heldOut += n - Math.min(n, this.fromSpill);
    this.checkBarriers();
    if (this.fromSpill === 0) return;
    this.fromSpill -= Math.min(n, this.fromSpill);
    if (this.fromSpill > 0 || this.spill !== null) return;
    this.spillLeft();
  }

  /** Every record of the spill file taken at open is on disk or delivered: it goes, once that is durable. */
  private spillLeft(): void {
    const path = this.opts.spillFile!;
    this.afterDurable(() => fs.rmSync(path, { force: true }));
  }

  /** Records ever held in the overflow by an append (not those from the spill file), and how many of them have left it. */
  private heldIn = 0;
  private heldOut = 0;
  private barriers: { target: number; resolve: () => void }[] = [];

  /**
   * Resolves once every record appended so far is in the segment files (or delivered),
   * durable as the fsync policy says, or, at close, in the fsynced spill file; never when
   * close() could not keep them. The daemon deletes the raw shutdown spill only then.
   */
  onDisk(): Promise<void> {
    return new Promise((resolve) => {
      this.barriers.push({ target: this.heldIn, resolve });
      this.checkBarriers();
    });
  }

  private checkBarriers(): void {
    while (this.barriers.length > 0 && this.barriers[0]!.target <= this.heldOut) this.afterDurable(this.barriers.shift()!.resolve);
  }

  /** Records into the overflow from an append (they count for onDisk()). */
  private holdRecords(records: readonly string[]): void {
    for (const r of records) this.overflow.push(r);
    this.heldIn += records.length;
  }

  /** fsyncs of rolled segments still running (closeWriteFd), by file descriptor. */
  private readonly rolling = new Map<number, Promise<void>>();
  /** Callbacks of afterDurable() not run yet (close() runs them). */
  private readonly durableWaiters = new Set<() => void>();

  /**
   * Runs `then` once what is written now is durable as the fsync policy says: the fsyncs
   * of rolled segments have finished and the segment being written is fsynced (with
   * `fsync: never`, at once: the page cache has it, which survives a crash of cefd).
   */
  private afterDurable(then: () => void): void {
    const run = () => {
      if (!this.durableWaiters.delete(run)) return;
      if (this.opts.fsync !== 'never' && this.writeFd !== -1) {
        try {
          fs.fsyncSync(this.writeFd);
        } catch {
          // the page cache has it
        }
      }
      then();
    };
    this.durableWaiters.add(run);
    if (this.opts.fsync === 'never' || this.rolling.size === 0) run();
    else void Promise.all(this.rolling.values()).then(run);
  }

  /** close(): what afterDurable() waits for, now (the rolled segments fsynced synchronously). */
  private settleDurable(): void {
    if (this.durableWaiters.size === 0) return;
    for (const fd of this.rolling.keys()) {
      try {
        fs.fsyncSync(fd);
      } catch {
        // the page cache has it
      }
    }
    this.rolling.clear();
    for (const run of [...this.durableWaiters]) run();
  }

  /** Records of the block at the acknowledged position to drop when it is read (delivered before a restart); a different block read first (that one no longer reads back) is whole. */
  private pendingSkip: { seg: Segment; offset: number; records: number } | null = null;

  /**
   * Walks the valid blocks of `s` from byte `from`: `each(offset, count)`. Corrupt
   * stretches are skipped (resynchronizing at the next magic with a valid CRC), counted,
   * and reported once per stretch. Returns the end of the last valid block.
   */
  private scan(s: Segment, from: number, each: (offset: number, count: number) => void): void {
    const fd = fs.openSync(s.path, 'r');
    try {
      let off = from;
      let badFrom = -1;
      const head = Buffer.allocUnsafe(HEADER);
      while (off + HEADER <= s.size) {
        const ok = this.readBlockAt(fd, s, off, head, false);
        if (ok !== null) {
          if (badFrom !== -1) {
            this.opts.onCorrupt?.(off - badFrom, `${s.path} at ${badFrom}`);
            badFrom = -1;
          }
          each(off, ok.count);
          off += HEADER + ok.bodyBytes;
          continue;
        }
        if (badFrom === -1) badFrom = off;
        off = this.resync(fd, s, off + 1);
        (s.skips ??= new Map()).set(badFrom, off);
      }
      if (badFrom === -1 && off < s.size) {
        badFrom = off;
        (s.skips ??= new Map()).set(badFrom, s.size);
      }
      if (badFrom !== -1) this.opts.onCorrupt?.(s.size - badFrom, `${s.path} at ${badFrom}`);
    } finally {
      fs.closeSync(fd);
    }
  }

  /** The block at `off` if its header and CRC check, else null. */
  private readBlockAt(fd: number, s: Segment, off: number, head: Buffer, wantBody: boolean): { count: number; bodyBytes: number; body: Buffer | null } | null {
    if (fs.readSync(fd, head, 0, HEADER, off) !== HEADER) return null;
    const h = readBlockHeader(head, s.size - off);
    if (h === null) return null;
    const { bodyBytes, count } = h;
    if (this.scratch.length < bodyBytes) this.scratch = Buffer.allocUnsafe(bodyBytes);
    const body = this.scratch.subarray(0, bodyBytes);
    if (fs.readSync(fd, body, 0, bodyBytes, off + HEADER) !== bodyBytes) return null;
    if (!bodyMatches(body, h)) return null;
    return { count, bodyBytes, body: wantBody ? body : null };
  }

  /** The next offset at or after `from` where a block magic starts, or the segment end. */
  private resync(fd: number, s: Segment, from: number): number {
    return findBlockMagic(fd, from, s.size);
  }

  // ---- writing ----

  private openWriteSegment(): void {
    const s: Segment = { firstSeq: this.nextSeq, path: join(this.opts.dir, segmentName(this.nextSeq)), size: 0 };
    const fd = fs.openSync(s.path, 'a', 0o600);
    // The new file's name survives a power loss only once its folder is fsynced (once per
    // segment, off the event loop as the data's fsync at a roll; its data follows the fsync policy).
    if (this.opts.fsync !== 'never') fsyncDirLater(this.opts.dir);
    if (this.writeFd !== -1) this.closeWriteFd();
    this.writeFd = fd;
    this.segments.push(s);
    if (this.ackPos === null) this.ackPos = { segment: s.firstSeq, offset: 0, index: 0 };
  }

  /**
   * Closes the segment being written. Unless `fsync: never`, its data is fsynced first,
   * asynchronously (a segment roll must not stall the event loop for a disk flush);
   * `sync` waits for it (close()).
   */
  private closeWriteFd(sync = false): void {
    const fd = this.writeFd;
    if (fd === -1) return;
    this.writeFd = -1;
    const flush = this.opts.fsync !== 'never' && this.dirty;
    this.dirty = false;
    if (sync) {
      if (flush) {
        try {
          fs.fsyncSync(fd);
        } catch {
          // nothing more to do at close
        }
      }
      fs.closeSync(fd);
      return;
    }
    if (!flush) {
      fs.close(fd, () => undefined);
      return;
    }
    this.rolling.set(
      fd,
      new Promise<void>((resolve) =>
        fs.fsync(fd, () => {
          this.rolling.delete(fd);
          fs.close(fd, () => undefined);
          resolve();
        }),
      ),
    );
  }

  /** Writes one block of `count` records, `body` their NDJSON (kept by the tail cache); throws on failure after undoing a partial write. */
  private writeNdjson(body: Buffer, count: number): void {
    this.writeParts(blockHeader(body, count), body, count);
  }

  /** Writes a block as header + body (`body` becomes the buffer's own). */
  private writeParts(head: Buffer, body: Buffer, count: number): void {
    let seg = this.segments[this.segments.length - 1]!;
    const size = HEADER + body.length;
    if (seg.size > 0 && seg.size + size > this.segmentBytes) {
      this.openWriteSegment();
      seg = this.segments[this.segments.length - 1]!;
    }
    const offset = seg.size;
    let done = 0;
    try {
      done = fs.writevSync(this.writeFd, [head, body]);
      while (done < size) {
        done += done < HEADER
          ? fs.writevSync(this.writeFd, [head.subarray(done), body])
          : fs.writeSync(this.writeFd, body, done - HEADER, size - done);
      }
    } catch (e) {
      if (done > 0) {
        try {
          fs.ftruncateSync(this.writeFd, offset);
        } catch {
          // The torn block fails its CRC and is skipped when read.
          seg.size = offset + done;
        }
      }
      throw e;
    }
    seg.size += size;
    this.nextSeq += count;
    this.diskCount += count;
    this.dirty = true;
    if (this.opts.fsync === 'batch') {
      try {
        fs.fsyncSync(this.writeFd);
      } catch (e) {
        // The block is written (the page cache has it); only its durability is in doubt:
        // report, but do not queue it a second time.
        const err = e as NodeJS.ErrnoException;
        this.opts.onWriteError?.(`fsync: ${err.code ?? ''} ${err.message}`);
      }
    }
    // A reader that is caught up takes the body from here (no read, no CRC check).
    this.tail.set(`${seg.firstSeq}:${offset}`, { body, count, blockBytes: size });
    this.tailBytes += size;
    while (this.tailBytes > DiskQueue.TAIL_MAX_BYTES && this.tail.size > 1) {
      const first = this.tail.keys().next().value as string;
      this.tailBytes -= this.tail.get(first)!.blockBytes;
      this.tail.delete(first);
    }
  }

  /**
   * Appends records already encoded as NDJSON (`count` lines, each ending in a newline):
   * no second UTF-8 encoding, no copy (header and body go out in one vectored write, and
   * the body itself is what a caught-up reader gets). A write that fails keeps the
   * records in memory (see failed()).
   */
  appendNdjson(ndjson: Buffer, count: number): void {
    if (count === 0) return;
    if (this.overflow.length > 0 || this.spill !== null || this.closed) {
      this.hold(splitNdjson(ndjson));
      return;
    }
    if (!this.fits(ndjson.length) && this.opts.whenFull === 'drop_newest') {
      this.opts.onDropped?.(count);
      return;
    }
    // With `block`, an append past maxBytes (what the sources sent before they paused;
    // fill() >= 1 from now on) goes to disk all the same: held in memory it would be lost in
    // a crash, however long the output stays down. The owner bounds it (fill() 2).
    try {
      this.writeNdjson(ndjson, count);
      if (this.error !== null) this.recovered();
    } catch (e) {
      this.holdRecords(splitNdjson(ndjson));
      this.failed(e);
    }
  }

  append(records: readonly string[]): void {
    if (records.length === 0) return;
    if (this.overflow.length > 0 || this.spill !== null || this.closed) this.hold(records);
    else this.appendNdjson(encodeNdjson(records), records.length);
  }

  /**
   * Order: what waits in memory goes first; it is retried on a timer (not here: that
   * would re-encode the whole overflow on every read). Appends after close (never in
   * normal operation: a bug) are not kept in memory, where nothing would ever take them.
   */
  private hold(records: readonly string[]): void {
    if (this.closed) this.spillAfterClose(records);
    else this.holdRecords(records);
  }

  /**
   * Records appended after close(): added to the spill file, which the next open takes
   * back, and reported (onSpilled); without one, or when it cannot be written, reported
   * as lost.
   */
  private spillAfterClose(records: readonly string[]): void {
    const path = this.opts.spillFile;
    if (path === undefined) {
      this.opts.onSpilled?.(records.length, '(no spill file)', 'the buffer is closed');
      return;
    }
    try {
      fs.mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      const fd = fs.openSync(path, 'a', 0o600);
      try {
        const body = encodeNdjson(records);
        let done = 0;
        while (done < body.length) done += fs.writeSync(fd, body, done);
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      this.opts.onSpilled?.(records.length, path);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      this.opts.onSpilled?.(records.length, path, `the buffer is closed; ${err.code ?? 'error'}: ${err.message}`);
    }
  }

  private recovered(): void {
    if (this.retryTimer !== null) {
      clearInterval(this.retryTimer);
      this.retryTimer = null;
    }
    this.error = null;
    this.opts.onWriteRecovered?.();
  }

  /** Bytes of deleted segments whose unlink has not finished. */
  private deletingBytes = 0;

  /** Bytes of segment files (what maxBytes bounds on disk), those being deleted included. */
  private get diskBytes(): number {
    let b = this.deletingBytes;
    for (const s of this.segments) b += s.size;
    return b;
  }

  /** See EventQueue.takes: room on disk for `bytes` and nothing held in memory. */
  takes(bytes: number): boolean {
    return this.overflow.length === 0 && this.spill === null && !this.closed && this.fits(bytes);
  }

  /** Whether `n` more bytes (plus a block header) stay within maxBytes; an empty disk takes any one block. */
  private fits(n: number): boolean {
    const d = this.diskBytes;
    return d === 0 || d + n + 64 <= this.opts.maxBytes;
  }

  private startRetry(): void {
    if (this.retryTimer === null) {
      this.retryTimer = setInterval(() => this.flushOverflow(), 1000);
      this.retryTimer.unref();
    }
  }

  private failed(e: unknown): void {
    const err = e as NodeJS.ErrnoException;
    const text = `${err.code ?? 'error'}: ${err.message}`;
    const first = this.error === null;
    this.error = text;
    if (first) this.opts.onWriteError?.(text);
    if (this.retryTimer === null) {
      this.retryTimer = setInterval(() => this.flushOverflow(), 1000);
      this.retryTimer.unref();
    }
  }

  /** Tries to move the memory overflow to disk (not while part of it is handed out by the last peek). */
  flushOverflow(): void {
    if (this.closed) return;
    // While part of the overflow is handed out by the last peek (in memory only), nothing
    // after it goes to disk: it would be replayed before the part in flight after a stop,
    // and survive a crash that loses that part (a hole). ack() flushes once it is settled.
    if (this.overflowInFlight > 0) return;
    for (;;) {
      if (this.fromSpill === 0 && this.spill !== null) this.loadSpill();
      if (this.overflow.length === 0) {
        // Everything held in memory was delivered from there: probe the disk with an empty
        // block, so the error clears (and its metric) as soon as writes work again.
        if (this.error === null) {
          if (this.retryTimer !== null) clearInterval(this.retryTimer);
          this.retryTimer = null;
          return;
        }
        try {
          this.writeNdjson(Buffer.alloc(0), 0);
          this.recovered();
        } catch (e) {
          this.failed(e);
        }
        return;
      }
      // Records appended since open wait behind the unread part of the spill file.
      const limit = this.spill !== null ? this.fromSpill : this.overflow.length;
      // Within maxBytes: the longest prefix that fits (the rest waits for more space); an
      // empty disk takes at least one record, however long.
      let room = this.opts.maxBytes - this.diskBytes - 64;
      let n = 0;
      while (n < limit && (room -= Buffer.byteLength(this.overflow[n]!) + 1) >= 0) n++;
      if (n === 0 && this.diskBytes === 0) n = 1;
      // Records held after a write error, none of the spill file before them: with `block`
      // they go to disk past maxBytes too, as appends do (appendNdjson), not wait in memory.
      if (this.fromSpill === 0 && this.spill === null && this.opts.whenFull !== 'drop_newest') n = limit;
      if (n === 0) return;
      const rest = this.overflow.slice(0, n);
      try {
        // A fresh segment: the failed one may end in a torn block.
        if (this.error !== null && this.segments[this.segments.length - 1]!.size > 0) this.openWriteSegment();
        this.writeNdjson(encodeNdjson(rest), rest.length);
        this.overflow.splice(0, rest.length);
        this.leftOverflow(rest.length);
        if (this.error !== null) this.recovered();
      } catch (e) {
        this.failed(e);
        return;
      }
      // All that could go went: the next chunk of the spill file, if there is room.
      if (n < limit || this.spill === null) return;
    }
  }

  private fsyncNow(): void {
    if (!this.dirty || this.writeFd === -1) return;
    this.dirty = false;
    fs.fsync(this.writeFd, () => undefined);
  }

  // ---- reading ----

  /** Reads the next valid block at the read cursor into `ahead`; false at the end of the data on disk. */
  private readNextBlock(): boolean {
    while (this.readSeg < this.segments.length) {
      const s = this.segments[this.readSeg]!;
      if (this.readOffset + HEADER > s.size) {
        if (this.readSeg === this.segments.length - 1) return false;
        this.readSeg++;
        this.readOffset = 0;
        continue;
      }
      const cached = this.tail.get(`${s.firstSeq}:${this.readOffset}`);
      if (cached !== undefined) {
        this.pushAhead(s, this.readOffset, cached.body, cached.count);
        this.readOffset += cached.blockBytes;
        return true;
      }
      const known = s.skips?.get(this.readOffset);
      if (known !== undefined) {
        // Found and reported when the buffer was opened.
        this.readOffset = known;
        continue;
      }
      let fd: number;
      try {
        fd = this.readFdFor(s);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        // The file was deleted while cefd ran (by hand, a cleaner): what was left of it is
        // lost, reported like a corrupt block, and the rest of the buffer goes on (retrying
        // the open would stop the output for good). Appends after it go to a new file.
        this.opts.onCorrupt?.(s.size - this.readOffset, `${s.path}: the segment file was deleted while cefd ran; its undelivered events from offset ${this.readOffset} are lost`);
        this.readOffset = s.size;
        if (this.readSeg === this.segments.length - 1 && !this.closed) this.openWriteSegment();
        continue;
      }
      const b = this.readBlockAt(fd, s, this.readOffset, this.head, true);
      if (b === null) {
        // Corrupt since it was written or counted: skip to the next good block. Its
        // records are lost; the count is corrected when the reader reaches the end.
        const at = this.readOffset;
        const next = this.resync(fd, s, at + 1);
        this.opts.onCorrupt?.(next - at, `${s.path} at ${at}`);
        this.readOffset = next;
        continue;
      }
      this.pushAhead(s, this.readOffset, Buffer.from(b.body!), b.count);
      this.readOffset += HEADER + b.bodyBytes;
      return true;
    }
    return false;
  }

  private pushAhead(seg: Segment, offset: number, body: Buffer, count: number): void {
    const at = this.pendingSkip;
    const skip = at !== null && at.seg === seg && at.offset === offset ? Math.min(at.records, count) : 0;
    this.pendingSkip = null;
    const blk: AheadBlock = { seg, offset, body, count, taken: 0, takenBytes: 0 };
    if (skip > 0) advanceBlock(blk, skip);
    this.ahead.push(blk);
    this.aheadCount += count - skip;
  }

  private readonly head = Buffer.allocUnsafe(HEADER);
  private readFd = -1;
  private readFdPath = '';

  private readFdFor(s: Segment): number {
    if (this.readFdPath !== s.path) {
      if (this.readFd !== -1) fs.closeSync(this.readFd);
      this.readFd = -1;
      this.readFdPath = '';
      this.readFd = fs.openSync(s.path, 'r');
      this.readFdPath = s.path;
    }
    return this.readFd;
  }

  /** Up to `max` records from the head, not removed (strings). */
  peek(max: number): string[] {
    return this.peekBatch(max).records.slice();
  }

  /**
   * Up to `max` records from the head, not removed: NDJSON bytes straight from the blocks
   * (what the outputs write), with the strings decoded only if someone asks. A second
   * call before ack() returns the same batch.
   */
  peekBatch(max: number): QueueBatch {
    if (this.peeked !== null && this.peeked.max === max) return this.peeked.batch;
    if (this.overflowInFlight > 0) {
      // Records handed out from memory and not acknowledged yet: the same batch again
      // (flushOverflow writes nothing after them meanwhile), never more than `max` (a
      // runner with a smaller batch took the buffer over).
      const recs = this.overflow.slice(0, Math.min(this.overflowInFlight, max));
      this.overflowInFlight = recs.length;
      const batch = new StringBatch(recs);
      this.peeked = { batch, max, fromOverflow: true };
      return batch;
    }
    let more = true;
    while (this.aheadCount < max && (more = this.readNextBlock())) {
      // read more
    }
    // Everything on disk has been read: what the count still says was lost to corruption.
    if (!more && this.diskCount > this.aheadCount) this.diskCount = this.aheadCount;
    if (this.aheadCount === 0) {
      // Caught up with the disk: hand out what waits in memory (not past the unread part of
      // the spill file).
      if (this.fromSpill === 0 && this.spill !== null) this.loadSpill();
      const recs = this.overflow.slice(0, this.spill !== null ? Math.min(max, this.fromSpill) : max);
      this.overflowInFlight = recs.length;
      const batch = new StringBatch(recs);
      this.peeked = { batch, max, fromOverflow: true };
      return batch;
    }
    let need = Math.min(max, this.aheadCount);
    const count = need;
    const slices: Buffer[] = [];
    for (const blk of this.ahead) {
      if (need === 0) break;
      const avail = blk.count - blk.taken;
      const take = Math.min(avail, need);
      const end = take === avail ? blk.body.length : nthLineEnd(blk.body, blk.takenBytes, take);
      slices.push(blk.body.subarray(blk.takenBytes, end));
      need -= take;
    }
    const batch = new BytesBatch(count, slices);
    this.overflowInFlight = 0;
    this.peeked = { batch, max, fromOverflow: false };
    return batch;
  }

  ack(n: number): void {
    const fromOverflow = this.peeked?.fromOverflow === true;
    this.peeked = null;
    if (n <= 0 || this.closed) return;
    if (fromOverflow) {
      this.overflow.splice(0, n);
      this.overflowInFlight = 0;
      this.leftOverflow(n);
      // What waited behind them may go to disk now.
      if (this.overflow.length > 0 && this.error === null) this.flushOverflow();
      return;
    }
    let k = Math.min(n, this.aheadCount);
    this.aheadCount -= k;
    this.diskCount = Math.max(0, this.diskCount - k);
    while (k > 0 && this.ahead.length > 0) {
      const blk = this.ahead[0]!;
      const avail = blk.count - blk.taken;
      if (k >= avail) {
        k -= avail;
        this.ahead.shift();
        this.tail.delete(`${blk.seg.firstSeq}:${blk.offset}`);
      } else {
        advanceBlock(blk, k);
        k = 0;
      }
    }
    const head = this.ahead[0];
    this.ackPos = head !== undefined
      ? { segment: head.seg.firstSeq, offset: head.offset, index: head.taken }
      : { segment: this.segments[this.readSeg]!.firstSeq, offset: this.readOffset, index: 0 };
    this.dropDeliveredSegments();
    this.recycleIfEmpty();
    this.scheduleAckWrite();
    // Space freed: records waiting for it (not a write error: that retries on its timer).
    if (this.overflow.length > 0 && this.error === null) this.flushOverflow();
  }

  /** Deletes segments before the ack point (never the one being written). */
  private dropDeliveredSegments(): void {
    const ack = this.ackPos;
    if (ack === null) return;
    while (this.segments.length > 1 && this.segments[0]!.firstSeq < ack.segment) {
      const s = this.segments.shift()!;
      this.readSeg--;
      if (this.readFdPath === s.path) {
        fs.closeSync(this.readFd);
        this.readFd = -1;
        this.readFdPath = '';
      }
      // Deleted in the background; its bytes count against maxBytes until they are gone.
      this.deletingBytes += s.size;
      fs.rm(s.path, { force: true }, () => {
        this.deletingBytes -= s.size;
        if (this.overflow.length > 0 && this.error === null) this.flushOverflow();
      });
    }
  }

  /**
   * Everything on disk is delivered: start a fresh segment and delete the current one,
   * so a caught-up buffer holds no bytes (and a full disk gets its space back).
   */
  private recycleIfEmpty(): void {
    if (this.diskCount > 0 || this.aheadCount > 0 || this.closed) return;
    const cur = this.segments[this.segments.length - 1]!;
    // Not after every delivered batch: only once the segment holds a fair amount (or a
    // write error wants the space back).
    if (cur.size < this.segmentBytes / 4 && this.error === null) return;
    if (cur.size === 0 || this.readSeg !== this.segments.length - 1 || this.readOffset < cur.size) return;
    try {
      this.openWriteSegment();
    } catch {
      return; // keep the current one
    }
    this.readSeg = this.segments.length - 1;
    this.readOffset = 0;
    this.ahead = [];
    this.tail.clear();
    this.tailBytes = 0;
    this.ackPos = { segment: this.segments[this.readSeg]!.firstSeq, offset: 0, index: 0 };
    this.dropDeliveredSegments();
  }

  private scheduleAckWrite(): void {
    this.ackDirty = true;
    if (this.ackTimer !== null) return;
    this.ackTimer = setTimeout(() => {
      this.ackTimer = null;
      this.writeAck();
    }, 200);
    this.ackTimer.unref();
  }

  private writeAck(): void {
    if (!this.ackDirty || this.ackPos === null) return;
    this.ackDirty = false;
    const tmp = join(this.opts.dir, `${ACK_FILE}.tmp`);
    try {
      fs.writeFileSync(tmp, JSON.stringify(this.ackPos), { mode: 0o600 });
      fs.renameSync(tmp, join(this.opts.dir, ACK_FILE));
    } catch {
      // Not fatal: after a crash more is delivered again.
      this.ackDirty = true;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.flushOverflowAtClose();
    // After the last flush: a write failing there starts the retry timer again.
    for (const t of [this.ackTimer, this.retryTimer, this.fsyncTimer]) if (t !== null) clearTimeout(t);
    this.ackTimer = this.retryTimer = this.fsyncTimer = null;
    this.writeAck();
    this.closeWriteFd(true);
    this.settleDurable();
    if (this.readFd !== -1) fs.closeSync(this.readFd);
    this.readFd = -1;
    this.readFdPath = '';
    // An empty last segment is just clutter.
    const last = this.segments[this.segments.length - 1];
    if (last !== undefined && last.size === 0 && this.segments.length > 1) fs.rmSync(last.path, { force: true });
  }

  /**
   * Records still waiting in memory (after a write error; appends behind a spill file taken
   * at open): what can go goes to disk (flushOverflow), the rest to the spill file
   * (replacing the one taken at open, whose records are among them) (docs/reliability.md).
   */
  private flushOverflowAtClose(): void {
    this.peeked = null;
    this.overflowInFlight = 0;
    if (this.overflow.length === 0 && this.spill === null) return;
    this.closed = false;
    this.flushOverflow();
    this.closed = true;
    // A deletion of the spill file taken at open may wait for an fsync: it happens now,
    // before a new spill file takes that name.
    this.settleDurable();
    if (this.overflow.length === 0 && this.spill === null) return;
    const path = this.opts.spillFile;
    if (path === undefined) {
      // No place outside the buffer: written past the bound rather than lost.
      this.closed = false;
      this.opts.maxBytes = Number.MAX_SAFE_INTEGER;
      this.flushOverflow();
      this.closed = true;
      return;
    }
    const sp = this.spill;
    const n = this.overflow.length + (sp?.left ?? 0);
    const tmp = `${path}.tmp`;
    try {
      fs.mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      fs.rmSync(tmp, { force: true });
      const fd = fs.openSync(tmp, 'w', 0o600);
      try {
        const write = (body: Buffer) => {
          let done = 0;
          while (done < body.length) done += fs.writeSync(fd, body, done);
        };
        // In order: the spill records in memory, the unread rest of the spill file, then
        // what was appended since open.
        const head = sp !== null ? this.fromSpill : this.overflow.length;
        write(encodeNdjson(this.overflow.slice(0, head)));
        if (sp !== null) {
          const chunk = Buffer.allocUnsafe(DiskQueue.SPILL_CHUNK_BYTES);
          for (let off = sp.offset; off < sp.end; ) {
            const r = fs.readSync(sp.fd, chunk, 0, Math.min(chunk.length, sp.end - off), off);
            if (r <= 0) throw new Error(`${sp.path} ended early`);
            write(chunk.subarray(0, r));
            off += r;
          }
          write(encodeNdjson(this.overflow.slice(head)));
        }
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      fs.renameSync(tmp, path);
      // The rename itself survives a power loss only once the folder is fsynced.
      fsyncDir(dirname(path));
      // Kept (fsynced): for onDisk() they have left memory.
      this.heldOut += this.overflow.length - this.fromSpill;
      this.overflow = [];
      this.fromSpill = 0;
      this.checkBarriers();
      this.opts.onSpilled?.(n, path);
    } catch (e) {
      fs.rmSync(tmp, { force: true });
      const err = e as NodeJS.ErrnoException;
      this.opts.onSpilled?.(n, path, `${err.code ?? 'error'}: ${err.message}`);
    }
    if (sp !== null) {
      fs.closeSync(sp.fd);
      this.spill = null;
    }
  }
}

/** Byte offset just after the `n`-th newline at or after `from`. */
function nthLineEnd(body: Buffer, from: number, n: number): number {
  let at = from;
  for (let i = 0; i < n; i++) {
    const lf = body.indexOf(0x0a, at);
    if (lf === -1) return body.length;
    at = lf + 1;
  }
  return at;
}

function advanceBlock(blk: AheadBlock, n: number): void {
  blk.takenBytes = nthLineEnd(blk.body, blk.takenBytes, n);
  blk.taken += n;
}
