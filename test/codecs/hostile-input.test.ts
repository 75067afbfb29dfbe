/**
 * Hostile input stays bounded: sizes and operation counts, never wall time.
 */
import { describe, expect, test } from 'vitest';
import { decodeFrame } from '../../src/codecs/decode.js';
import { MAX_WARNINGS } from '../../src/codecs/warning-cap.js';
import { normalizeEvent, type Normalizer } from '../../src/pipeline/normalize.js';
import { Framer } from '../../src/codecs/framing/framer.js';
import { keyHash, lookupKey, probesFor } from '../../src/codecs/cef/dictionary.js';

/** `CEF:0|V|P|1|id|n|5|msg=` then ` a=` until the frame is `bytes` long. */
function duplicateKeyFrame(bytes: number): Buffer {
  const head = 'CEF:0|V|P|1|id|n|5|msg=';
  return Buffer.from(head + ' a='.repeat(Math.floor((bytes - head.length) / 3)));
}

describe('warnings per event are bounded', () => {
  test('21,000 duplicate keys give 32 warnings and one summary counting the rest', () => {
    const frame = duplicateKeyFrame(64 * 1024);
    const r = decodeFrame(frame, false, Date.UTC(2026, 0, 1));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    const w = r.event.warnings!;
    expect(w.length).toBe(MAX_WARNINGS + 1);
    expect(w.slice(0, MAX_WARNINGS).every((x) => x.code === 'cef_duplicate_key')).toBe(true);
    const dups = Math.floor((64 * 1024 - 23) / 3) - 1;
    expect(w[MAX_WARNINGS]).toEqual({
      code: 'warnings_left_out',
      message: `${dups - MAX_WARNINGS} more warnings not listed (cef_duplicate_key ${dups - MAX_WARNINGS})`,
    });
    // The record stays about the size of its frame (it was 1.8 MB for this 64 KiB frame).
    expect(Buffer.byteLength(JSON.stringify(r.event))).toBeLessThan(2 * frame.length);
  });

  test('a few warnings are listed as before, with no summary', () => {
    const r = decodeFrame(Buffer.from('CEF:0|V|P|1|id|n|5|a=1 a=2 src=x'), false, 0);
    expect(r.ok && r.event.warnings!.map((x) => x.code)).toEqual(['cef_duplicate_key', 'cef_bad_field']);
  });

  test("the normalizer's warnings join the same bound and the same summary", () => {
    const noisy: Normalizer = {
      name: 'noisy',
      accepts: () => true,
      normalize: () => ({ data: {}, type: 't', warnings: Array.from({ length: 40 }, () => ({ code: 'ksc_bad_number' })) }),
    };
    // 20 duplicate keys from decoding: 12 of the normalizer's 40 fit.
    const a = decodeFrame(Buffer.from('CEF:0|V|P|1|id|n|5|msg=' + ' a='.repeat(21)), false, 0);
    if (!a.ok) throw new Error('not decoded');
    expect(a.event.warnings!.length).toBe(20);
    normalizeEvent(a.event, [noisy]);
    expect(a.event.warnings!.length).toBe(MAX_WARNINGS + 1);
    expect(a.event.warnings![MAX_WARNINGS]!.message).toBe('28 more warnings not listed (ksc_bad_number 28)');
    // Decoding already left 26 out: the one summary counts both.
    const b = decodeFrame(Buffer.from('CEF:0|V|P|1|id|n|5|msg=' + ' a='.repeat(59)), false, 0);
    if (!b.ok) throw new Error('not decoded');
    normalizeEvent(b.event, [noisy]);
    expect(b.event.warnings!.length).toBe(MAX_WARNINGS + 1);
    expect(b.event.warnings![MAX_WARNINGS]!.message).toBe('66 more warnings not listed (cef_duplicate_key 26, ksc_bad_number 40)');
  });
});

/** A framer that keeps copies of its frames and counts its notices. */
function collecting(opts: ConstructorParameters<typeof Framer>[1] = {}) {
  const frames: { text: string; truncated: boolean }[] = [];
  const notices: string[] = [];
  let discarded = 0;
  const framer = new Framer(
    {
      frame: (b, _m, truncated) => frames.push({ text: b.toString('latin1'), truncated }),
      discarded: (n) => (discarded += n),
      notice: (c) => notices.push(c),
    },
    opts,
  );
  return { framer, frames, notices, discarded: () => discarded };
}

describe('framer memory and work are bounded', () => {
  test('a partial LF frame read one byte at a time is held in one buffer at most twice its size', () => {
    const c = collecting();
    const line = Buffer.from('x'.repeat(12000));
    let most = 0;
    for (let i = 0; i < line.length; i++) {
      c.framer.push(line.subarray(i, i + 1));
      most = Math.max(most, c.framer.heldBytes);
    }
    expect(c.framer.bufferedBytes).toBe(12000);
    expect(most).toBeLessThanOrEqual(2 * 12000);
    c.framer.push(Buffer.from('\n'));
    expect(c.frames).toEqual([{ text: line.toString('latin1'), truncated: false }]);
    expect(c.framer.heldBytes).toBe(0);
  });
});

/** `buf` with an indexOf that adds the bytes each search looks at to `work.scanned`. */
function counted(buf: Buffer, work: { scanned: number; calls: number }): Buffer {
  const plain = Buffer.prototype.indexOf;
  Object.defineProperty(buf, 'indexOf', {
    value(this: Buffer, v: number, from: number) {
      const at = plain.call(this, v, from);
      work.calls++;
      work.scanned += (at === -1 ? this.length : at + 1) - from;
      return at;
    },
  });
  return buf;
}

describe('NUL-terminated frames are found in linear work', () => {
  test('40,000 frames of "a\\0" in one chunk scan each byte a bounded number of times', () => {
    const n = 40000;
    const work = { scanned: 0, calls: 0 };
    const c = collecting();
    c.framer.push(counted(Buffer.from('a\0'.repeat(n), 'latin1'), work));
    expect(c.frames.length).toBe(n);
    // Quadratic before: each frame's LF search ran to the chunk's end (n * n bytes).
    expect(work.scanned).toBeLessThanOrEqual(4 * 2 * n);
  });

  test('the same after an over-long frame (the discard state)', () => {
    const work = { scanned: 0, calls: 0 };
    const c = collecting({ maxFrameBytes: 4 });
    const n = 20000;
    c.framer.push(counted(Buffer.from('aaaaaaaa\0'.repeat(n), 'latin1'), work));
    expect(c.frames.length).toBe(n);
    expect(c.frames.every((f) => f.truncated && f.text === 'aaaa')).toBe(true);
    expect(work.scanned).toBeLessThanOrEqual(4 * 9 * n);
  });
});

describe('the key dictionary cannot be clustered by input', () => {
  const slotOf = (k: string) => {
    let h = 0;
    for (let i = k.length - 1; i >= 0; i--) h = keyHash(h, k.charCodeAt(i));
    return h & 8191;
  };
  test('custom keys chosen to hash into one window leave lookups of a miss bounded', () => {
    const families = [
      ['cs', 'deviceCustomString'], ['cn', 'deviceCustomNumber'], ['cfp', 'deviceCustomFloatingPoint'],
      ['c6a', 'deviceCustomIPv6Address'], ['flexString', 'flexString'], ['flexNumber', 'flexNumber'],
      ['flexDate', 'flexDate'], ['deviceCustomDate', 'deviceCustomDate'],
    ];
    const window = [4000, 4800];
    const chosen: string[] = [];
    for (const [short, full] of families) {
      for (let n = 1; n <= 999; n++) {
        for (const k of [`${short}${n}`, `${full}${n}`, `${short}${n}Label`, `${full}${n}Label`]) {
          const s = slotOf(k);
          if (s >= window[0]! && s < window[1]!) chosen.push(k);
        }
      }
    }
    expect(chosen.length).toBeGreaterThan(1000);
    // Sent as a record, as a sender would.
    const r = decodeFrame(Buffer.from('CEF:0|V|P|1|id|n|5|' + chosen.map((k) => `${k}=1`).join(' ')), false, 0);
    expect(r.ok).toBe(true);
    for (const k of chosen) expect(lookupKey(k)).toBeDefined();
    // A key nobody knows, hashing to the window's start: before, it walked the whole run.
    let miss = '';
    for (let i = 0; miss === ''; i++) if (slotOf(`zz${i}`) === window[0]) miss = `zz${i}`;
    expect(lookupKey(miss)).toBeUndefined();
    expect(probesFor(miss)).toBeLessThanOrEqual(33);
  });
});

describe('an octet count is kept with what follows it', () => {
  test('takePartial gives the count, with the bytes after it or alone', () => {
    const c = collecting();
    c.framer.push(Buffer.from('123 '));
    expect(c.framer.takePartial()?.toString('latin1')).toBe('123 ');
    c.framer.push(Buffer.from('45'));
    c.framer.push(Buffer.from('6 <13>ab'));
    expect(c.framer.takePartial()?.toString('latin1')).toBe('456 <13>ab');
    expect(c.framer.takePartial()).toBeNull();
  });

  test('end() after a count alone returns it (and counts frame_incomplete); with body bytes the body is the truncated frame', () => {
    const c = collecting();
    c.framer.push(Buffer.from('<13>x\n123 '));
    expect(c.framer.end()?.toString('latin1')).toBe('123 ');
    expect(c.notices).toEqual(['frame_incomplete']);
    c.framer.push(Buffer.from('20 <13>abc'));
    expect(c.framer.end()).toBeNull();
    expect(c.frames.slice(1)).toEqual([{ text: '<13>abc', truncated: true }]);
  });
});

describe('small edges', () => {
  test('a count of 21 or more digits before a space is noticed like one of 20', () => {
    for (const n of [20, 21, 40]) {
      const c = collecting();
      c.framer.push(Buffer.from(`${'9'.repeat(n)} <13>x\n`));
      expect(c.notices).toEqual(['octet_count_too_large']);
      expect(c.frames).toEqual([{ text: `${'9'.repeat(n)} <13>x`, truncated: false }]);
    }
  });

  test('quoted input in warnings is never cut inside a surrogate pair', () => {
    const emoji = '\u{1F600}';
    const r = decodeFrame(Buffer.from(`CEF:0|V|P|1|id|n|${'s'.repeat(31)}${emoji}|a=1`), false, 0);
    if (!r.ok) throw new Error('not decoded');
    const w = r.event.warnings!.find((x) => x.code === 'cef_bad_severity')!;
    expect(w.message).toBe(`severity ${JSON.stringify('s'.repeat(31))} kept as written`);
    const v = decodeFrame(Buffer.from(`CEF:${'1'.repeat(31)}${emoji}|V|P|1|id|n|5|a=1`), false, 0);
    if (!v.ok) throw new Error('not decoded');
    expect(v.event.errors!.find((x) => x.code === 'cef_bad_version')!.message).not.toMatch(/\\ud83d/);
    const t = decodeFrame(Buffer.from(`<13>1 2026-01-01T00:00:00Z${'x'.repeat(19)}${emoji}${emoji} host app - - - CEF:0|V|P|1|id|n|5|a=1`), false, 0);
    if (!t.ok) throw new Error('not decoded');
    for (const x of t.event.warnings ?? []) expect(x.message ?? '').not.toMatch(/\\ud83[dD]/);
  });
});
