/**
 * Stream framer: bytes in, frames out. Works on Buffers because RFC 6587 octet counts are
 * byte counts; only whole frames become strings (in decode.ts).
 *
 * Two framings, detected at the start of every frame, so a sender may switch between them:
 *
 * - Octet counting (RFC 6587 section 3.4.1, `MSG-LEN SP SYSLOG-MSG`): the frame starts with
 *   a non-zero digit, more digits, then a space. MSG-LEN bytes follow, whatever they hold.
 *   Except `1 ` followed by `DDDD-` (a time stamp) or `- ` (no time stamp): that is an RFC
 *   5424 line without its PRI (VERSION 1), read as LF framing. A one-byte counted frame
 *   is never followed by that (the next frame's count is digits and a space), so counted
 *   one-byte frames (`1 X`) keep working.
 * - Non-transparent framing (RFC 6587 section 3.4.2): anything else; the frame ends at LF.
 *   A CR right before the LF is dropped (CRLF senders), and a NUL also ends a frame (some
 *   senders use NUL as the trailer, as KUMA's tcp connector allows).
 *
 * Choices, each documented in docs/framing.md:
 * - `maxFrameBytes` bounds every frame. An LF frame with more bytes before its LF is cut:
 *   its first `maxFrameBytes` bytes are emitted flagged `truncated` as soon as they are in,
 *   the rest up to the next LF is discarded and counted, and the next frame starts after
 *   that LF, never glued to the cut one.
 * - A count larger than `maxFrameBytes` is not taken as octet counting: the frame is read
 *   as LF-terminated, digits included (as rsyslog's imtcp does), and counted. Otherwise a
 *   line that merely begins with digits and a space, such as `1493738863000 host CEF:0|`,
 *   would make the framer swallow terabytes. A count of up to `maxFrameBytes` is taken as
 *   octet counting: that is the inherent ambiguity of RFC 6587 auto-detection.
 * - Empty LF frames (blank lines, a lone CR) are skipped, not emitted (a `frame_empty`
 *   notice, which the listeners do not count: their bytes are in the received bytes): they
 *   carry nothing, and octet-counting senders that add an LF after each frame (a common
 *   deviation) produce them.
 * - At the end of the stream, the bytes of an unterminated LF frame are emitted as a frame
 *   (the sender closed the connection after its last message). An octet-counted frame cut
 *   by the end of the stream is emitted flagged `truncated` with `frame_incomplete`.
 *
 * The framer never throws on input and holds at most `maxFrameBytes + 1` bytes (or 7, the
 * `1 DDDD-` it looks at to tell an RFC 5424 line from a one-byte counted frame, when
 * `maxFrameBytes` is smaller); no frame it emits has more than `maxFrameBytes` bytes.
 */

export type FramingMode = 'lf' | 'octet';

export interface FrameSink {
  /**
   * One frame. `frame` may be a view into the chunk passed to `push`: copy it if it must
   * outlive the call.
   */
  frame(frame: Buffer, mode: FramingMode, truncated: boolean): void;
  /** Bytes thrown away after a truncation (not part of any frame). */
  discarded(bytes: number): void;
  /** A framing event worth counting. */
  notice(code: 'octet_count_too_large' | 'frame_incomplete' | 'frame_empty'): void;
}

export interface FramerOptions {
  /** Largest frame in bytes (default 65536). */
  maxFrameBytes?: number;
  /** Detect RFC 6587 octet counting (default true; UDP datagrams carry no counts). */
  octetCounting?: boolean;
}

export const DEFAULT_MAX_FRAME_BYTES = 64 * 1024;

const LF = 10;
const CR = 13;
const NUL = 0;
const SP = 32;
const D0 = 48;
const D1 = 49;
const D9 = 57;

const enum State {
  /** At a frame boundary: the next byte decides the framing. */
  Start,
  /** Reading the digits of an octet count (held in `pending`). */
  Count,
  /** Reading an LF frame (bytes so far in `pending`). */
  Line,
  /** Reading MSG-LEN bytes of an octet-counted frame. */
  Octets,
  /** Skipping the rest of an over-long LF frame up to its LF. */
  Discard,
  /**
   * `1 ` read (held in `pending`, with the bytes after it looked at so far): an RFC 5424
   * line without its PRI, or a one-byte counted frame; the next bytes tell (versionVerdict).
   */
  Version,
}

/**
 * Whether the bytes after a frame's `1 ` make it an RFC 5424 line without its PRI
 * (`DDDD-`: a time stamp's year; `- `: no time stamp), a one-byte counted frame, or need
 * more bytes to tell. `at(k)` is the k-th byte after the space, `avail` how many there are.
 */
function versionVerdict(at: (k: number) => number, avail: number): 'line' | 'octet' | 'more' {
  if (avail === 0) return 'more';
  const b0 = at(0);
  if (b0 === 45 /* - */) {
    if (avail < 2) return 'more';
    return at(1) === SP ? 'line' : 'octet';
  }
  for (let k = 0; k < 5; k++) {
    if (k >= avail) return 'more';
    const b = at(k);
    if (k < 4 ? b < D0 || b > D9 : b !== 45) return 'octet';
  }
  return 'line';
}

export class Framer {
  readonly maxFrameBytes: number;
  /** Most digits a count of at most maxFrameBytes can have. */
  private readonly maxDigits: number;
  private state = State.Start;
  /**
   * The current frame's bytes when it spans chunks: one buffer, doubled as it fills (up
   * to maxFrameBytes + 1), not a piece per chunk: a frame arriving a byte per read held
   * a Buffer object per byte, 135 times its size.
   */
  private pendBuf: Buffer | null = null;
  private pendingBytes = 0;
  /** Octet frames: the count, and the buffer being filled. */
  private need = 0;
  private octetBuf: Buffer | null = null;
  private octetFill = 0;
  private count = 0;
  private readonly octetCounting: boolean;
  /** Position of the next NUL in the current chunk (-1: none; -2: not looked yet). */
  private nulAt = -2;
  /**
   * The same for LF: NUL-terminated frames would otherwise rescan to the chunk's end for
   * every frame (quadratic: 1 MB of `a\0` took seconds).
   */
  private lfAt = -2;
  /**
   * Frames begun (each first byte of a frame, empty ones and cut ones too): a change tells
   * that the frame now pending is another one (the listeners' frame_timeout counts from its
   * first byte, src/sources/tcp/stream.ts).
   */
  private begun = 0;

  constructor(
    private readonly sink: FrameSink,
    opts: FramerOptions = {},
  ) {
    const max = opts.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    if (!Number.isSafeInteger(max) || max < 1) throw new RangeError(`maxFrameBytes must be a positive integer, got ${max}`);
    this.maxFrameBytes = max;
    this.maxDigits = String(max).length;
    this.octetCounting = opts.octetCounting !== false;
  }

  /** Feed the next chunk of the stream. */
  push(chunk: Buffer): void {
    const n = chunk.length;
    let pos = 0;
    this.nulAt = -2;
    this.lfAt = -2;
    while (pos < n) {
      switch (this.state) {
        case State.Start: {
          this.begun++;
          const b = chunk[pos]!;
          if (b >= D1 && b <= D9 && this.octetCounting) {
            this.state = State.Count;
            this.count = 0;
            // fall through to Count on the next loop turn without consuming
          } else {
            this.state = State.Line;
          }
          break;
        }
        case State.Count:
          pos = this.readCount(chunk, pos);
          break;
        case State.Line:
          pos = this.readLine(chunk, pos);
          break;
        case State.Octets:
          pos = this.readOctets(chunk, pos);
          break;
        case State.Version:
          pos = this.readVersion(chunk, pos);
          break;
        case State.Discard: {
          const lf = this.nextLf(chunk, pos);
          const nul = this.nextNul(chunk, pos);
          const end = lf === -1 ? nul : nul === -1 ? lf : Math.min(lf, nul);
          if (end === -1) {
            this.sink.discarded(n - pos);
            pos = n;
          } else {
            if (end > pos) this.sink.discarded(end - pos);
            pos = end + 1;
            this.state = State.Start;
          }
          break;
        }
      }
    }
  }

  /**
   * The stream ended: emit what is left (see the header comment). Returns the bytes that
   * cannot be a frame, for the caller to dead-letter: an octet count (`123 `) whose frame
   * never began.
   */
  end(): Buffer | null {
    let left: Buffer | null = null;
    // `1 ` and the start of what follows, undecided: a counted frame then (the stream ended
    // before a line's time stamp could tell), as before this state existed.
    if (this.state === State.Version) {
      if (this.pendingBytes === 2) {
        this.pendBuf = null;
        this.pendingBytes = 0;
        this.need = 1;
        this.state = State.Octets;
      } else this.oneByteFrame(null);
    }
    switch (this.state) {
      case State.Count:
      case State.Line:
        if (this.pendingBytes > 0) this.emitLine(this.takePending());
        break;
      case State.Octets:
        // The bytes received become a frame flagged truncated; with none, only a notice.
        if (this.octetBuf !== null && this.octetFill > 0) {
          this.sink.frame(this.octetBuf.subarray(0, this.octetFill), 'octet', true);
        } else {
          this.sink.notice('frame_incomplete');
          left = this.countPrefix();
        }
        break;
      default:
        break;
    }
    this.reset();
    return left;
  }

  /**
   * The `MSG-LEN SP` the current octet frame began with, as received: the count has no
   * leading zero (its first digit is 1-9), so its decimal text is the bytes that were sent.
   */
  private countPrefix(): Buffer {
    return Buffer.from(`${this.need} `, 'latin1');
  }

  /**
   * Takes the bytes of an unfinished frame without emitting it (shutdown: the daemon
   * dead-letters them rather than guess that the sender was done). Resets the framer.
   * An octet-counted frame comes with its count (`123 <13>...`), as received, also when
   * no byte of the frame came after the count.
   */
  takePartial(): Buffer | null {
    let out: Buffer | null = null;
    if (this.state === State.Octets) {
      const prefix = this.countPrefix();
      out = this.octetBuf !== null && this.octetFill > 0 ? Buffer.concat([prefix, this.octetBuf.subarray(0, this.octetFill)]) : prefix;
    } else if ((this.state === State.Line || this.state === State.Count || this.state === State.Version) && this.pendingBytes > 0) {
      out = this.takePending();
    }
    this.reset();
    return out;
  }

  /** Drop any partial frame (the connection is gone without an orderly end). */
  reset(): void {
    this.state = State.Start;
    this.pendBuf = null;
    this.pendingBytes = 0;
    this.octetBuf = null;
    this.octetFill = 0;
    this.need = 0;
    this.count = 0;
  }

  /** Bytes held for an incomplete frame. */
  get bufferedBytes(): number {
    return this.state === State.Octets ? this.octetFill : this.pendingBytes;
  }

  /** Inside a frame: its first byte (or its octet count) is in, its end is not. */
  get midFrame(): boolean {
    return this.state === State.Line || this.state === State.Count || this.state === State.Octets || this.state === State.Version;
  }

  /** How many frames have begun so far (see `begun`). */
  get framesBegun(): number {
    return this.begun;
  }

  /** Skipping the rest of a frame cut at maxFrameBytes (up to its end). */
  get discarding(): boolean {
    return this.state === State.Discard;
  }

  /** Bytes allocated for the incomplete frame (at most about twice bufferedBytes). */
  get heldBytes(): number {
    return (this.pendBuf?.length ?? 0) + (this.octetBuf?.length ?? 0);
  }

  private readCount(chunk: Buffer, pos: number): number {
    const n = chunk.length;
    let i = pos;
    let count = this.count;
    let digits = this.pendingBytes;
    while (i < n) {
      const b = chunk[i]!;
      if (b >= D0 && b <= D9) {
        digits++;
        // However long the run, a space after it is worth the octet_count_too_large notice.
        if (digits > this.maxFrameBytes) break;
        // Past maxDigits+1 the count is certainly too large; stop accumulating.
        if (digits <= this.maxDigits + 1) count = count * 10 + (b - D0);
        i++;
        continue;
      }
      // `1 ` may be RFC 5424's VERSION of a line whose <PRI> a relay stripped (Wazuh
      // forwards KSC's lines as `1 2024-02-19T13:18:51.000Z host KES|11.0.0.0 - ...`,
      // FORMAT.md §7 item 10) or the count of a one-byte frame: the next bytes tell.
      if (b === SP && digits === 1 && count === 1) {
        this.keepPending(chunk, pos, i + 1);
        this.count = 0;
        this.state = State.Version;
        return i + 1;
      }
      if (b === SP && digits <= this.maxDigits && count <= this.maxFrameBytes) {
        // RFC 6587 octet counting: MSG-LEN bytes follow the space. A zero count is
        // impossible here (the first digit is 1-9).
        this.pendingBytes = 0;
        this.count = 0;
        this.need = count;
        this.octetBuf = null;
        this.octetFill = 0;
        this.state = State.Octets;
        return i + 1;
      }
      if (b === SP) this.sink.notice('octet_count_too_large');
      break;
    }
    if (i === n) {
      // Chunk ended inside the digits: keep them and wait for more.
      this.keepPending(chunk, pos, n);
      this.count = count;
      return n;
    }
    // Not an octet count: the digits so far belong to an LF frame.
    this.keepPending(chunk, pos, i);
    this.count = 0;
    this.state = State.Line;
    return i;
  }

  /** State.Version: decides with the bytes after `1 ` (those held, then the chunk's). */
  private readVersion(chunk: Buffer, pos: number): number {
    const held = this.pendingBytes - 2;
    const buf = this.pendBuf!;
    const at = (k: number): number => (k < held ? buf[2 + k]! : chunk[pos + k - held]!);
    const verdict = versionVerdict(at, held + chunk.length - pos);
    if (verdict === 'more') {
      this.keepPending(chunk, pos, chunk.length);
      return chunk.length;
    }
    if (verdict === 'line') {
      // The bytes held so far begin the line; it goes on from `pos`.
      this.state = State.Line;
      // Up to 7 bytes (`1 DDDD-`) are held to decide: with a smaller maxFrameBytes they may
      // already pass the limit. Cut there, as readLine would have with the same bytes.
      if (this.pendingBytes > this.maxFrameBytes) this.cutHeld();
      return pos;
    }
    if (held === 0) {
      this.oneByteFrame(chunk[pos]!);
      return pos + 1;
    }
    this.oneByteFrame(null);
    return pos;
  }

  /**
   * `1 X` was a one-byte counted frame: emits X (`byte`, or the first byte held after the
   * space) and feeds the bytes held after it again, as the start of the next frame.
   */
  private oneByteFrame(byte: number | null): void {
    const rest = byte === null && this.pendingBytes > 3 ? Buffer.from(this.pendBuf!.subarray(3, this.pendingBytes)) : null;
    const body = Buffer.from([byte ?? this.pendBuf![2]!]);
    this.pendBuf = null;
    this.pendingBytes = 0;
    this.state = State.Start;
    this.sink.frame(body, 'octet', false);
    if (rest !== null) {
      // At most four bytes; push() re-aims the chunk's NUL/LF positions: keep the outer ones.
      const nulAt = this.nulAt;
      const lfAt = this.lfAt;
      this.push(rest);
      this.nulAt = nulAt;
      this.lfAt = lfAt;
    }
  }

  private readLine(chunk: Buffer, pos: number): number {
    const n = chunk.length;
    const lf = this.nextLf(chunk, pos);
    const nul = this.nextNul(chunk, pos);
    let end = lf;
    if (nul !== -1 && (lf === -1 || nul < lf)) end = nul;
    const limit = this.maxFrameBytes + 1 - this.pendingBytes; // bytes this chunk may add before the cut
    if (end === -1) {
      // No terminator in this chunk.
      if (n - pos >= limit) return this.truncate(chunk, pos, pos + limit);
      this.keepPending(chunk, pos, n);
      return n;
    }
    if (end - pos >= limit) {
      // Over-long: cut at maxFrameBytes, discard up to and including the terminator.
      this.truncate(chunk, pos, pos + limit);
      const extra = end - (pos + limit);
      if (extra > 0) this.sink.discarded(extra);
      this.state = State.Start;
      return end + 1;
    }
    if (this.pendingBytes === 0) {
      this.emitLine(chunk.subarray(pos, end));
    } else {
      this.keepPending(chunk, pos, end);
      this.emitLine(this.takePending());
    }
    this.state = State.Start;
    return end + 1;
  }

  /**
   * The frame has more than maxFrameBytes bytes before its terminator: emit the first
   * maxFrameBytes, count the one extra byte seen, and discard until the terminator.
   * `cut` is the position of the (maxFrameBytes+1)-th byte of the frame plus one.
   */
  private truncate(chunk: Buffer, pos: number, cut: number): number {
    this.keepPending(chunk, pos, cut - 1);
    const frame = this.takePending();
    this.sink.discarded(1);
    this.sink.frame(frame, 'lf', true);
    this.state = State.Discard;
    return cut;
  }

  /**
   * Like truncate, when the bytes held (no terminator among them) already number more than
   * maxFrameBytes: the first maxFrameBytes are the frame, the others are discarded, in the
   * order truncate reports them (the byte past the limit first), and the rest of the line
   * is skipped from where the chunk stands.
   */
  private cutHeld(): void {
    const held = this.pendingBytes;
    const max = this.maxFrameBytes;
    const frame = this.pendBuf!.subarray(0, max);
    this.pendBuf = null;
    this.pendingBytes = 0;
    this.sink.discarded(1);
    this.sink.frame(frame, 'lf', true);
    if (held > max + 1) this.sink.discarded(held - max - 1);
    this.state = State.Discard;
  }

  private readOctets(chunk: Buffer, pos: number): number {
    const n = chunk.length;
    const need = this.need;
    if (this.octetBuf === null && n - pos >= need) {
      // Whole frame in this chunk: no copy.
      this.state = State.Start;
      this.sink.frame(chunk.subarray(pos, pos + need), 'octet', false);
      return pos + need;
    }
    if (this.octetBuf === null) {
      this.octetBuf = Buffer.allocUnsafe(need);
      this.octetFill = 0;
    }
    const take = Math.min(need - this.octetFill, n - pos);
    chunk.copy(this.octetBuf, this.octetFill, pos, pos + take);
    this.octetFill += take;
    if (this.octetFill === need) {
      const frame = this.octetBuf;
      this.octetBuf = null;
      this.octetFill = 0;
      this.state = State.Start;
      this.sink.frame(frame, 'octet', false);
    }
    return pos + take;
  }

  /** NUL is rare: search each chunk for it once, not once per frame. */
  private nextNul(chunk: Buffer, pos: number): number {
    let at = this.nulAt;
    if (at === -2 || (at !== -1 && at < pos)) {
      at = chunk.indexOf(NUL, pos);
      this.nulAt = at;
    }
    return at;
  }

  /** Like nextNul: a position found stays valid until the frames pass it. */
  private nextLf(chunk: Buffer, pos: number): number {
    let at = this.lfAt;
    if (at === -2 || (at !== -1 && at < pos)) {
      at = chunk.indexOf(LF, pos);
      this.lfAt = at;
    }
    return at;
  }

  private keepPending(chunk: Buffer, from: number, to: number): void {
    if (to <= from) return;
    const need = this.pendingBytes + (to - from);
    let buf = this.pendBuf;
    if (buf === null || buf.length < need) {
      // Doubling: copies stay linear in the frame's size however small the reads.
      let cap = buf === null ? Math.max(to - from, 256) : buf.length * 2;
      while (cap < need) cap *= 2;
      cap = Math.max(need, Math.min(cap, this.maxFrameBytes + 1));
      const grown = Buffer.allocUnsafe(cap);
      if (buf !== null) buf.copy(grown, 0, 0, this.pendingBytes);
      this.pendBuf = buf = grown;
    }
    // Copy: the caller may reuse the chunk after push() returns.
    chunk.copy(buf, this.pendingBytes, from, to);
    this.pendingBytes = need;
  }

  /** Hands the held bytes over (the buffer is not reused: the frame may outlive the call). */
  private takePending(): Buffer {
    const frame = this.pendBuf === null ? Buffer.alloc(0) : this.pendBuf.subarray(0, this.pendingBytes);
    this.pendBuf = null;
    this.pendingBytes = 0;
    return frame;
  }

  /** A whole LF frame (a trailing CR dropped; an empty one is only a notice). */
  private emitLine(frame: Buffer): void {
    let len = frame.length;
    if (len > 0 && frame[len - 1] === CR) len--;
    if (len === 0) {
      this.sink.notice('frame_empty');
      return;
    }
    this.sink.frame(len === frame.length ? frame : frame.subarray(0, len), 'lf', false);
  }
}
