/**
 * The shutdown spill: frames that were read from a socket but not decoded when the stop
 * budget ran out (reads still on the decode workers). They are good events we ran out of
 * time for, not dead letters: they are written here, in state_dir (0600), and decoded at
 * the next start before any listener opens (daemon.ts), with the listener, peer, TLS
 * fingerprint and receive time they had.
 *
 * One NDJSON line per read (job): `{"v":1,"listener","peer","tls_fingerprint"?,
 * "received_ms","framing":"payload","frames":[base64...],"truncated":[0|1...]}`. Frames
 * are frame payloads, their framing (LF or octet count) already removed by the framer;
 * `truncated` marks a frame the framer cut at max_frame_bytes. See docs/reliability.md.
 */
import { closeSync, existsSync, fsyncSync, openSync, readdirSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { fsyncDir } from '../state-dir.js';

export const SPILL_FILE = 'shutdown-spill.ndjson';

export interface SpilledRead {
  listener: string;
  peer: string;
  tlsFingerprint?: string;
  receivedMs: number;
  frames: Buffer[];
  truncated: boolean[];
}

/** Appends reads to the spill file; opened on the first read, closed by close(). */
export class SpillWriter {
  private fd: number | null = null;
  /** Frames written. */
  frames = 0;
  /** The first write error (the frames then go to the dead-letter output instead). */
  error: string | null = null;

  constructor(private readonly dir: string) {}

  get path(): string {
    return join(this.dir, SPILL_FILE);
  }

  /** Returns false when the read could not be written (the caller dead-letters it). */
  write(r: SpilledRead): boolean {
    try {
      this.fd ??= openSync(this.path, 'a', 0o600);
      const line = JSON.stringify({
        v: 1,
        listener: r.listener,
        peer: r.peer,
        ...(r.tlsFingerprint !== undefined ? { tls_fingerprint: r.tlsFingerprint } : {}),
        received_ms: r.receivedMs,
        framing: 'payload',
        frames: r.frames.map((f) => f.toString('base64')),
        truncated: r.truncated.map((t) => (t ? 1 : 0)),
      });
      writeSync(this.fd, `${line}\n`);
      this.frames += r.frames.length;
      return true;
    } catch (e) {
      this.error ??= (e as Error).message;
      return false;
    }
  }

  close(): void {
    if (this.fd === null) return;
    try {
      fsyncSync(this.fd);
    } catch {
      // The data is written; an fsync failure leaves it to the page cache.
    }
    closeSync(this.fd);
    this.fd = null;
  }
}

/** Name of the n-th file taken for replay: `.replaying`, then `.replaying.1`, `.replaying.2`, ... */
const takenName = (n: number): string => `${SPILL_FILE}.replaying${n === 0 ? '' : `.${n}`}`;

/** The files taken for replay and not deleted yet, oldest first (their numbers, see takenName). */
function takenFiles(dir: string): number[] {
  const re = /^shutdown-spill\.ndjson\.replaying(?:\.([1-9]\d*))?$/;
  const out: number[] = [];
  if (!existsSync(dir)) return out;
  for (const f of readdirSync(dir)) {
    const m = re.exec(f);
    if (m !== null) out.push(m[1] === undefined ? 0 : Number(m[1]));
  }
  return out.sort((a, b) => a - b);
}

/**
 * Takes the spill files of the last stops, if any: the stop's file is renamed first, so a
 * crash while its frames are replayed replays them again at the next start (at least
 * once), never loses them. Lines that do not parse are returned as `bad` (their text, for
 * the dead letter).
 *
 * A file taken by an earlier start outlives it when that start crashed before its events
 * were on disk (`done` not called, daemon.ts); a later stop may then have spilled its own
 * reads to a new file beside it. Every taken file is older than the stop's file, so the
 * stop's file is renamed to the next number (an atomic rename: after a crash, either the
 * stop's file or its taken name exists, never both and never a half) and all are read
 * oldest first: each connection's reads stay in the order they were read. `files` lists
 * them, in that order; `done` deletes them.
 */
export function takeSpill(dir: string): { reads: SpilledRead[]; bad: string[]; files: string[]; done: () => void } | null {
  const path = join(dir, SPILL_FILE);
  const taken = takenFiles(dir);
  if (existsSync(path)) {
    const next = taken.length === 0 ? 0 : taken[taken.length - 1]! + 1;
    renameSync(path, join(dir, takenName(next)));
    fsyncDir(dir);
    taken.push(next);
  }
  if (taken.length === 0) return null;
  const files = taken.map((n) => join(dir, takenName(n)));
  const reads: SpilledRead[] = [];
  const bad: string[] = [];
  const lines = files.flatMap((f) => readFileSync(f, 'utf8').split('\n'));
  for (const line of lines) {
    if (line === '') continue;
    try {
      const o = JSON.parse(line) as { listener: string; peer: string; tls_fingerprint?: string; received_ms: number; frames: string[]; truncated: number[] };
      if (typeof o.listener !== 'string' || !Array.isArray(o.frames)) throw new Error('not a spilled read');
      reads.push({
        listener: o.listener,
        peer: String(o.peer ?? ''),
        ...(typeof o.tls_fingerprint === 'string' ? { tlsFingerprint: o.tls_fingerprint } : {}),
        receivedMs: Number(o.received_ms) || Date.now(),
        frames: o.frames.map((f) => Buffer.from(f, 'base64')),
        truncated: o.frames.map((_, i) => o.truncated?.[i] === 1),
      });
    } catch {
      bad.push(line);
    }
  }
  // Oldest first: a crash half-way leaves newer files only, replayed again in their order.
  return { reads, bad, files, done: () => files.forEach((f) => unlinkSync(f)) };
}
