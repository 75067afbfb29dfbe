import { Framer, type FramingMode } from '../../src/codecs/framing/framer.js';

export interface Collected {
  frames: { text: string; mode: FramingMode; truncated: boolean }[];
  discarded: number;
  notices: string[];
}

/** Runs `chunks` through a framer and records everything it reports. */
export function frameChunks(chunks: Buffer[], maxFrameBytes?: number): Collected {
  const out: Collected = { frames: [], discarded: 0, notices: [] };
  const f = new Framer(
    {
      frame: (b, mode, truncated) => out.frames.push({ text: b.toString('latin1'), mode, truncated }),
      discarded: (n) => (out.discarded += n),
      notice: (c) => out.notices.push(c),
    },
    maxFrameBytes === undefined ? {} : { maxFrameBytes },
  );
  for (const c of chunks) f.push(c);
  f.end();
  return out;
}

export function frameAll(input: string | Buffer, maxFrameBytes?: number): Collected {
  return frameChunks([typeof input === 'string' ? Buffer.from(input, 'latin1') : input], maxFrameBytes);
}

/** Cuts `buf` at the given offsets. */
export function cut(buf: Buffer, offsets: number[]): Buffer[] {
  const pts = [...new Set(offsets.map((o) => Math.max(0, Math.min(buf.length, o))))].sort((a, b) => a - b);
  const parts: Buffer[] = [];
  let prev = 0;
  for (const p of pts) {
    parts.push(buf.subarray(prev, p));
    prev = p;
  }
  parts.push(buf.subarray(prev));
  return parts;
}
