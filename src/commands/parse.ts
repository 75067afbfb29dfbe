/**
 * `cefd parse [FILE...]`: frames files or stdin (LF or octet counting, detected per
 * frame), decodes each frame, runs the normalizers, and prints one JSON object per frame
 * in input order: the daemon's event format, or `{"error": {...}, "raw": ...}` for a frame
 * that is not an event. An input that ends right after an octet count (`123 `), before any
 * byte of its frame, is reported as the daemon dead-letters it at a connection's end
 * (src/sources/tcp/stream.ts): code `frame_incomplete_at_close`, the count as the raw bytes.
 */
import { createReadStream } from 'node:fs';
import { once } from 'node:events';
import type { Readable, Writable } from 'node:stream';
import { isUtf8 } from 'node:buffer';
import { Framer } from '../codecs/framing/framer.js';
import { decodeFrame, type DecodeOptions } from '../codecs/decode.js';
import { normalizeEvent, type Normalizer } from '../pipeline/normalize.js';
import { createEncoder, isJsonEncoding } from '../codecs/encoders/registry.js';
import type { EventOptions } from '../codecs/encoders/native.js';
import type { EncodeProblems, Encoder } from '../codecs/encoders/encoder.js';
import type { CefdEvent } from '../event.js';

export interface ParseCommandOptions extends DecodeOptions {
  maxFrameBytes?: number;
  normalizers: readonly Normalizer[];
  /** Indent the JSON (for people). */
  pretty?: boolean;
  /** Encoder name (src/codecs/encoders/registry.ts); default `native`. */
  encoding?: string;
  /** The native event's options (config `event`). */
  event?: EventOptions;
  /**
   * Print each event as an output with this encoder gets it (the command line compiles it
   * as an output's `encoding` is, router.ts); when set, `encoding` and `event` are not read.
   */
  encoder?: Encoder;
}

export interface ParseStats {
  frames: number;
  events: number;
  failed: number;
  truncated: number;
  discardedBytes: number;
}

/** The dead-letter / parse failure record of a frame that is not an event. */
export function failureRecord(frame: Buffer, code: string, message: string, truncated = false): Record<string, unknown> {
  const rec: Record<string, unknown> = { error: { code, message } };
  if (truncated) rec['truncated'] = true;
  if (isUtf8(frame)) rec['raw'] = frame.toString('utf8');
  else rec['rawBase64'] = frame.toString('base64');
  return rec;
}

/** Parses every input in order and writes NDJSON to `out`. */
export async function parseInputs(inputs: Readable[], out: Writable, opts: ParseCommandOptions): Promise<ParseStats> {
  const stats: ParseStats = { frames: 0, events: 0, failed: 0, truncated: 0, discardedBytes: 0 };
  const indent = opts.pretty ? 2 : undefined;
  const encoder = opts.encoder ?? createEncoder({ codec: opts.encoding ?? 'native', event: opts.event });
  // A JSON encoding is indented with --pretty; a CEF line is printed as it is.
  const json = isJsonEncoding(encoder.codec);
  let lines: string[] = [];
  const encode = (ev: CefdEvent, buf: Buffer): string => {
    let rec: string;
    try {
      rec = encoder.encode(ev);
    } catch (e) {
      // As the daemon does (ingest.ts): an event a normalizer made unencodable is a failure.
      stats.failed++;
      return JSON.stringify(failureRecord(buf, 'event_unserializable', `the event cannot be encoded: ${(e as Error).message}`), null, indent);
    }
    return indent !== undefined && json ? JSON.stringify(JSON.parse(rec), null, indent) : rec;
  };
  const framer = new Framer(
    {
      frame(buf, _mode, truncated) {
        stats.frames++;
        if (truncated) stats.truncated++;
        const r = decodeFrame(buf, truncated, Date.now(), opts);
        if (r.ok) {
          stats.events++;
          normalizeEvent(r.event, opts.normalizers);
          lines.push(encode(r.event, buf));
        } else {
          stats.failed++;
          lines.push(JSON.stringify(failureRecord(buf, r.failure.code, r.failure.message), null, indent));
        }
      },
      discarded(n) {
        stats.discardedBytes += n;
      },
      notice() {},
    },
    opts.maxFrameBytes === undefined ? {} : { maxFrameBytes: opts.maxFrameBytes },
  );
  const flush = async () => {
    if (lines.length === 0) return;
    const text = lines.join('\n') + '\n';
    lines = [];
    if (!out.write(text)) await once(out, 'drain');
  };
  for (const input of inputs) {
    for await (const chunk of input) {
      framer.push(chunk as Buffer);
      await flush();
    }
    const left = framer.end();
    if (left !== null) {
      stats.failed++;
      lines.push(JSON.stringify(failureRecord(left, 'frame_incomplete_at_close', 'the input ended after an octet count, before its frame', true), null, indent));
    }
    await flush();
  }
  return stats;
}

/**
 * What the encoder could not carry in the records printed (Encoder.problems, codes of stage
 * `encode`, docs/error-codes.md): one line per code with its count and the last case, for
 * stderr after the records ('' when there is nothing), as an output counts them in
 * `cefd_output_encode_problems_total`.
 */
export function encodeProblemsText(problems: EncodeProblems): string {
  const taken = problems.take();
  if (taken.length === 0) return '';
  taken.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const lines = taken.map(([code, n]) => `  ${code}: ${n} (last: ${problems.last.get(code) ?? ''})`);
  return `cefd parse: what the encoding could not carry, per code:\n${lines.join('\n')}\n`;
}

export function openInputs(files: string[]): Readable[] {
  if (files.length === 0 || (files.length === 1 && files[0] === '-')) return [process.stdin];
  return files.map((f) => (f === '-' ? process.stdin : createReadStream(f)));
}
