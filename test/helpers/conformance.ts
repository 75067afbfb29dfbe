/**
 * Runs one vector of fixtures/cef/vectors.json through the decoder and compares header and
 * extensions as docs/reference/cef-policy.md's "Conformance test" section says.
 */
import { decodeFrame } from '../../src/codecs/decode.js';
import { fullName } from '../../src/codecs/cef/dictionary.js';
import { allExtensions } from '../../src/codecs/cef/view.js';

export interface Vector {
  id: string;
  input: string;
  input_base64?: string;
  header: Record<string, string> | null;
  extensions: Record<string, string> | null;
  extensions_complete?: boolean;
}

export const HEADER_FIELDS = ['version', 'deviceVendor', 'deviceProduct', 'deviceVersion', 'deviceEventClassId', 'name', 'severity'] as const;

/** Differences between our result and the vector's expectation; empty when they match. */
export function compareVector(v: Vector, nowMs = Date.UTC(2026, 10, 28)): string[] {
  const bytes = v.input_base64 !== undefined ? Buffer.from(v.input_base64, 'base64') : Buffer.from(v.input, 'utf8');
  const r = decodeFrame(bytes, false, nowMs);
  const cef = r.ok ? r.event.cef : undefined;
  const diffs: string[] = [];
  if (v.header === null) {
    if (cef !== undefined) diffs.push('expected no CEF record, got one');
    return diffs;
  }
  if (cef === undefined) return [`expected a CEF record, got ${r.ok ? 'an event without cef' : r.failure.code}`];
  for (const f of HEADER_FIELDS) {
    const want = v.header[f];
    const got = (cef as unknown as Record<string, string | undefined>)[f];
    if (want !== got) diffs.push(`header.${f}: want ${JSON.stringify(want)}, got ${JSON.stringify(got)}`);
  }
  const want: Record<string, string> = {};
  for (const [k, val] of Object.entries(v.extensions ?? {})) want[fullName(k)] = val;
  // Custom pairs are folded into `cef.custom` (docs/event-format.md); compare them as written.
  const got = allExtensions(cef);
  for (const [k, val] of Object.entries(want)) {
    if (!Object.prototype.hasOwnProperty.call(got, k)) diffs.push(`extension ${k}: missing (want ${JSON.stringify(val)})`);
    else if (got[k] !== val) diffs.push(`extension ${k}: want ${JSON.stringify(val)}, got ${JSON.stringify(got[k])}`);
  }
  if (v.extensions_complete !== false) {
    for (const k of Object.keys(got)) {
      if (!Object.prototype.hasOwnProperty.call(want, k)) diffs.push(`extension ${k}: extra (got ${JSON.stringify(got[k])})`);
    }
  }
  return diffs;
}
