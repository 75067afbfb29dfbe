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
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';

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

/**
 * Takes the spill file of the last stop, if any: renamed first, so a crash while its
 * frames are replayed replays them again at the next start (at least once), never loses
 * them. Lines that do not parse are returned as `bad` (their text, for the dead letter).
 */
export function takeSpill(dir: string): { reads: SpilledRead[]; bad: string[]; done: () => void } | null {
  const path = join(dir, SPILL_FILE);
  const taking = `${path}.replaying`;
  if (!existsSync(taking)) {
    if (!existsSync(path)) return null;
    renameSync(path, taking);
  }
  const reads: SpilledRead[] = [];
  const bad: string[] = [];
  for (const line of readFileSync(taking, 'utf8').split('\n')) {
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
  return { reads, bad, done: () => unlinkSync(taking) };
}
