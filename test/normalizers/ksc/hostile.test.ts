/**
 * The ksc normalizer's work on custom fields stays linear in hostile input (counted
 * operations, never wall time).
 */
import { describe, expect, test } from 'vitest';
import { decodeFrame } from '../../../src/codecs/decode.js';
import { normalizeCef } from '../../../normalizers/ksc/cef-format.js';
import type { KscWarning } from '../../../normalizers/ksc/types.js';

/** cnN and flexNumberN for N = 1..n, both labelled `L<N>` (n duplicate labels), values not numbers. */
function frame(n: number): Buffer {
  let ext = '';
  for (let i = 1; i <= n; i++) ext += ` cn${i}=x${i} cn${i}Label=L${i} flexNumber${i}=y${i} flexNumber${i}Label=L${i}`;
  return Buffer.from(`CEF:0|KasperskyLab|SecurityCenter|15.1|GNRL_EV_VIRUS_FOUND|Virus|4|rt=1700000000000${ext}`);
}

/** An array that counts the reads of its elements. */
function countingArray(reads: { n: number }): KscWarning[] {
  return new Proxy<KscWarning[]>([], {
    get(t, p, r) {
      if (typeof p === 'string' && p.length > 0 && p.charCodeAt(0) >= 48 && p.charCodeAt(0) <= 57) reads.n++;
      return Reflect.get(t, p, r) as unknown;
    },
  });
}

describe('ksc normalizer on many duplicate labels', () => {
  test('999 labels each on two slots: warnings are read a bounded number of times each', () => {
    const r = decodeFrame(frame(999), false, 0);
    if (!r.ok) throw new Error('not decoded');
    const reads = { n: 0 };
    const warnings = countingArray(reads);
    normalizeCef(r.event.cef!, warnings);
    expect(warnings.filter((w) => w.code === 'ksc_duplicate_label').length).toBe(999);
    expect(warnings.filter((w) => w.code === 'ksc_bad_number').length).toBe(2 * 999);
    // Before: every duplicate label scanned every warning (999 x ~3000 reads).
    expect(reads.n).toBeLessThanOrEqual(10 * warnings.length);
  });
});
