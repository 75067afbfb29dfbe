/**
 * CEF record parser: header and extension, following docs/reference/cef-policy.md row by row
 * (row numbers are cited inline). Works on the decoded frame text; never throws. Hot path:
 * no regular expressions, `indexOf` for the scans, substrings only for what is kept.
 */
import { isIP } from 'node:net';
import type { Problem } from '../../errors.js';
import type { CefRecord } from '../../event.js';
import { cefTimeToIso, isKnownZone } from '../../time.js';
import { pushWarning } from '../warning-cap.js';
import { keyHash, lookupKey, lookupKeyAt, lookupKeyHashed, resetMarks, type KeyInfo } from './dictionary.js';

/** Errors and warnings collected while decoding one frame (arrays created on first use). */
export interface Diagnostics {
  errors: Problem[] | undefined;
  warnings: Problem[] | undefined;
}

export function addError(d: Diagnostics, p: Problem): void {
  (d.errors ??= []).push(p);
}

/**
 * `s.slice(start, end)` for quoting in a message, never ending inside a surrogate pair
 * (a lone half would print as `\ud83d`).
 */
export function clip(s: string, start: number, end: number): string {
  if (end < s.length && end > start) {
    const c = s.charCodeAt(end - 1);
    if (c >= 0xd800 && c <= 0xdbff) end--;
  }
  return s.slice(start, end);
}

/** Bounded: past MAX_WARNINGS a warning is only counted (../warning-cap.ts). */
export function addWarning(d: Diagnostics, p: Problem): void {
  pushWarning((d.warnings ??= []), p);
}

export interface CefOptions {
  /** Zone for CEF text time stamps without one (POLICY row 15). Default UTC. */
  defaultZone: string;
  /** Reference time for year inference. */
  nowMs: number;
}

const BACKSLASH = 92;
const PIPE = 124;
const EQ = 61;

/** Row 7: key characters `[A-Za-z0-9_.,\[\]-]`; a key starts with `[A-Za-z0-9_]`. */
const KEY_CHAR = new Uint8Array(128);
const KEY_START = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  const ch = String.fromCharCode(c);
  if (/[A-Za-z0-9_]/.test(ch)) {
    KEY_CHAR[c] = 1;
    KEY_START[c] = 1;
  } else if ('.,[]-'.includes(ch)) {
    KEY_CHAR[c] = 1;
  }
}

/** "Blank" is a space or a TAB; CR and LF are not blanks (POLICY preamble). */
function isBlank(c: number): boolean {
  return c === 32 || c === 9;
}

/** Row 10: trailing blanks, CR and LF are trimmed from raw values. */
function isTrailingSpace(c: number): boolean {
  return c === 32 || c === 9 || c === 13 || c === 10;
}

/** True when the character at `q` is preceded by an odd run of backslashes (from `floor`). */
function isEscaped(s: string, q: number, floor: number): boolean {
  let n = 0;
  let i = q - 1;
  while (i >= floor && s.charCodeAt(i) === BACKSLASH) {
    n++;
    i--;
  }
  return (n & 1) === 1;
}

/** Row 3: in the header `\|` gives `|`, `\\` gives `\`; any other backslash is kept. */
function unescapeHeader(v: string): string {
  if (v.indexOf('\\') === -1) return v;
  let out = '';
  let from = 0;
  for (let i = 0; i < v.length; i++) {
    if (v.charCodeAt(i) !== BACKSLASH || i + 1 >= v.length) continue;
    const n = v.charCodeAt(i + 1);
    if (n === PIPE || n === BACKSLASH) {
      out += v.slice(from, i);
      from = i + 1; // keep the escaped character
      i++;
    }
  }
  return out + v.slice(from);
}

/**
 * Row 9: `\=` gives `=`, `\\` gives `\`, `\n` LF, `\r` CR; every other backslash sequence
 * is kept verbatim (`\|` stays `\|`, `C:\Users` stays `C:\Users`).
 */
export function unescapeValue(v: string): string {
  let out = '';
  let from = 0;
  let i = v.indexOf('\\');
  while (i !== -1 && i + 1 < v.length) {
    const n = v.charCodeAt(i + 1);
    let rep: string | null = null;
    if (n === EQ) rep = '=';
    else if (n === BACKSLASH) rep = '\\';
    else if (n === 110 /* n */) rep = '\n';
    else if (n === 114 /* r */) rep = '\r';
    if (rep !== null) {
      out += v.slice(from, i) + rep;
      from = i + 2;
      i = v.indexOf('\\', i + 2);
    } else {
      i = v.indexOf('\\', i + 1);
    }
  }
  return from === 0 ? v : out + v.slice(from);
}

/** Row 6: 0-10, or the v25 words in any case. */
function validSeverity(s: string): boolean {
  const n = s.length;
  if (n === 1) {
    const c = s.charCodeAt(0);
    return c >= 48 && c <= 57;
  }
  if (n === 2) return s === '10';
  switch (s.toLowerCase()) {
    case 'unknown':
    case 'low':
    case 'medium':
    case 'high':
    case 'very-high':
      return true;
    default:
      return false;
  }
}

function isDigits(s: string, from: number): boolean {
  if (from >= s.length) return false;
  for (let i = from; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

/** Row 15: `[+-]?[0-9]+`; numbers beyond 2^53 stay decimal strings. */
export function toInt(v: string): number | string | null {
  const c = v.charCodeAt(0);
  const from = c === 43 || c === 45 ? 1 : 0;
  if (!isDigits(v, from)) return null;
  if (v.length - from <= 15) {
    // Exact: every step stays below 2^53 (what Number(v) gives, without its runtime call).
    let n = 0;
    for (let i = from; i < v.length; i++) n = n * 10 + (v.charCodeAt(i) - 48);
    return c === 45 ? -n : n;
  }
  const num = Number(v);
  return Number.isSafeInteger(num) ? num : v;
}

/**
 * True for the IPv4 addresses `net.isIPv4` accepts (four decimal octets 0-255, no leading
 * zeros), without its regular expression; anything else goes on to `net.isIP`, so the
 * result is isIP's. test/codecs/cef.test.ts compares the two.
 */
export function isIPv4Text(v: string): boolean {
  const n = v.length;
  if (n < 7 || n > 15) return false;
  let i = 0;
  for (let part = 0; part < 4; part++) {
    if (part > 0) {
      if (v.charCodeAt(i) !== 46 /* . */) return false;
      i++;
    }
    const start = i;
    let octet = 0;
    while (i < n && i - start < 4) {
      const c = v.charCodeAt(i) - 48;
      if (c < 0 || c > 9) break;
      octet = octet * 10 + c;
      i++;
    }
    const len = i - start;
    if (len === 0 || len > 3 || (len > 1 && v.charCodeAt(start) === 48) || octet > 255) return false;
  }
  return i === n;
}

function convert(info: KeyInfo, v: string, d: Diagnostics, opts: CefOptions): string | number | null {
  switch (info.type) {
    case 'int':
      return toInt(v);
    case 'ip':
      return isIPv4Text(v) || isIP(v) !== 0 ? v : null;
    case 'time': {
      // Epoch milliseconds need no zone; a text time without one of its own is read in the
      // record's `dtz` (deviceTimeZone), as ArcSight and Logstash do, else the configured zone.
      const c = v.charCodeAt(0);
      return cefTimeToIso(v, c >= 48 && c <= 57 ? opts.defaultZone : recordZone(d, opts), opts.nowMs);
    }
    default:
      return null;
  }
}

/** The extension being parsed (for recordZone): its text and bounds, and its zone once looked up. */
let extText = '';
let extStart = 0;
let extEnd = 0;
let extZone: string | undefined;
const zoneEq = new Int32Array(2);
const ZONE_KEYS = ['dtz=', 'deviceTimeZone='] as const;

/**
 * The zone of the record's text times without a zone of their own: its `dtz` /
 * `deviceTimeZone` when that is a zone name Intl knows, else the configured one (warning
 * `cef_bad_field` on deviceTimeZone). Looked up once per record, and only for a text time
 * (rare: most senders write epoch milliseconds); `dtz` may come after the time.
 */
function recordZone(d: Diagnostics, opts: CefOptions): string {
  if (extZone !== undefined) return extZone;
  extZone = opts.defaultZone;
  const s = extText;
  // The last one, as for any key written twice (row 12).
  let vStart = -1;
  for (const name of ZONE_KEYS) {
    for (let at = s.indexOf(name, extStart); at !== -1 && at < extEnd; at = s.indexOf(name, at + 1)) {
      if ((at === extStart || isBlank(s.charCodeAt(at - 1))) && at + name.length > vStart) vStart = at + name.length;
    }
  }
  if (vStart === -1) return extZone;
  const k = nextKey(s, vStart, extEnd, zoneEq);
  let vEnd = k === -1 ? extEnd : k;
  while (vEnd > vStart && isTrailingSpace(s.charCodeAt(vEnd - 1))) vEnd--;
  const zone = unescapeValue(s.slice(vStart, vEnd));
  if (zone !== '' && isKnownZone(zone)) extZone = zone;
  else addWarning(d, { code: 'cef_bad_field', key: 'deviceTimeZone', message: `not a time zone name; text times without a zone are read in ${opts.defaultZone}` });
  return extZone;
}

/**
 * The converted value of a typed key, when it says something the text does not
 * (docs/event-format.md, "cef.typed"): numbers always (a JSON number), time stamps when the
 * ISO text differs from the written one; IP addresses never (the validated text is the
 * written text). Undefined otherwise; a value that does not convert is a warning.
 */
function typedValue(info: KeyInfo, value: string, d: Diagnostics, opts: CefOptions): string | number | undefined {
  if (value === '') {
    // Row 11: kept as "", not typed.
    addWarning(d, { code: 'cef_bad_field', key: info.full, message: 'empty value' });
    return undefined;
  }
  const t = convert(info, value, d, opts);
  if (t === null) {
    addWarning(d, { code: 'cef_bad_field', key: info.full, message: `not a valid ${info.type === 'int' ? 'integer' : info.type === 'ip' ? 'IP address' : 'time stamp'}` });
    return undefined;
  }
  return t !== value ? t : undefined;
}

function setOwn(obj: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__') {
    Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
  } else {
    obj[key] = value;
  }
}

function hasOwn(obj: Record<string, unknown>, key: string): boolean {
  return obj[key] !== undefined && Object.prototype.hasOwnProperty.call(obj, key);
}

const HEADER_NAMES = ['version', 'deviceVendor', 'deviceProduct', 'deviceVersion', 'deviceEventClassId', 'name', 'severity'] as const;

/**
 * Position of `=` ending the key that starts at `p` (row 7), or -1 when the text at `p`
 * is not `key=`.
 */
function keyAt(s: string, p: number, end: number): number {
  const c0 = s.charCodeAt(p);
  if (c0 >= 128 || KEY_START[c0] !== 1) return -1;
  let i = p + 1;
  while (i < end) {
    const c = s.charCodeAt(i);
    if (c === EQ) return i;
    if (c >= 128 || KEY_CHAR[c] !== 1) return -1;
    i++;
  }
  return -1;
}

/**
 * Finds the next pair boundary after `from` (inside a value): an unescaped `=` whose
 * preceding text is a key token (row 7) preceded by a blank (rows 7, 8). Returns the
 * start of the key token, or -1. `eqOut[0]` receives the `=` position and `eqOut[1]` the
 * key's hash (dictionary.ts keyHash), made on the walk back over it.
 */
function nextKey(s: string, from: number, end: number, eqOut: Int32Array): number {
  let q = s.indexOf('=', from);
  while (q !== -1 && q < end) {
    // Walk back over key characters. A backslash before `=` (escaped or not) is not a key
    // character, so escaped `\=` never ends a value.
    let k = q - 1;
    let h = 0;
    while (k >= from) {
      const c = s.charCodeAt(k);
      if (c >= 128 || KEY_CHAR[c] !== 1) break;
      h = keyHash(h, c);
      k--;
    }
    const tokenStart = k + 1;
    if (tokenStart < q && k >= from && isBlank(s.charCodeAt(k))) {
      const c = s.charCodeAt(tokenStart);
      if (KEY_START[c] === 1) {
        eqOut[0] = q;
        eqOut[1] = h;
        return tokenStart;
      }
    }
    q = s.indexOf('=', q + 1);
  }
  return -1;
}

const eqPos = new Int32Array(2);

/** Scratch for the header fields of the record being parsed (parseCef is not re-entered). */
const headerFields: string[] = [];

/** What parseCef hands its caller beside the record. */
export interface CefOut {
  /**
   * `rt` converted (ISO 8601 UTC) when it converted to a text other than the written one:
   * the caller makes it the event's `timestamp`, so it is not put in `cef.typed`.
   */
  receiptTime: string | undefined;
}

const RECEIPT_TIME = lookupKey('rt')!;

/**
 * Parses the CEF record starting at `start` (the `C` of `CEF:`). Never throws. With `out`,
 * the converted `rt` goes to `out.receiptTime` instead of `typed`.
 */

/**
 * Parses the CEF record starting at `start` (the `C` of `CEF:`). Never throws.
 */
export function parseCef(s: string, start: number, d: Diagnostics, opts: CefOptions, out?: CefOut): CefRecord {
  const total = s.length;
  // ---- header (rows 2-6) ----
  const fields = headerFields;
  fields.length = 0;
  let p = start + 4;
  // Fields before the first backslash have no escapes to look for (most headers have none).
  let backslash = s.indexOf('\\', p);
  while (fields.length < 7) {
    let q = s.indexOf('|', p);
    if (q === -1) break;
    if (backslash !== -1 && backslash < q) {
      while (q !== -1 && isEscaped(s, q, p)) q = s.indexOf('|', q + 1);
      if (q === -1) break;
      fields.push(unescapeHeader(s.slice(p, q)));
      backslash = s.indexOf('\\', q + 1);
    } else {
      fields.push(s.slice(p, q));
    }
    p = q + 1;
  }
  // End of the extension: trailing blanks, CR and LF of the last value are trimmed (row 10).
  let extEnd = total;
  while (extEnd > p && isTrailingSpace(s.charCodeAt(extEnd - 1))) extEnd--;
  let extStart = p;
  let hasExtension = true;
  if (fields.length < 7) {
    // Row 5: the text after the last unescaped `|` is extensions when it starts (after
    // blanks) with `key=`, else the next header field, also when empty (row 4: `|n|` ends
    // with an empty severity, `|id|` with an empty name). Without any `|`, nothing follows
    // the version.
    let b = p;
    while (b < extEnd && isBlank(s.charCodeAt(b))) b++;
    const looksLikeExtension = fields.length > 0 && b < extEnd && keyAt(s, b, extEnd) !== -1;
    if (!looksLikeExtension) {
      hasExtension = false;
      let tEnd = total;
      while (tEnd > p && (s.charCodeAt(tEnd - 1) === 10 || s.charCodeAt(tEnd - 1) === 13)) tEnd--;
      if (tEnd > p || fields.length > 0) fields.push(unescapeHeader(s.slice(p, tEnd)));
    } else {
      extStart = b;
    }
    if (fields.length < 7) {
      addError(d, {
        code: 'cef_incomplete_header',
        message: `CEF header has ${fields.length} of 7 fields`,
      });
    }
  }
  const version = fields[0] ?? '';
  const rec: CefRecord = {
    version,
    deviceVendor: fields[1],
    deviceProduct: fields[2],
    deviceVersion: fields[3],
    deviceEventClassId: fields[4],
    name: fields[5],
    severity: fields[6],
    extensions: {},
    custom: undefined,
    typed: undefined,
  };
  if (fields.length < 7) {
    // Missing fields are absent, not "" (row 5).
    for (let i = Math.max(fields.length, 1); i < 7; i++) delete (rec as unknown as Record<string, unknown>)[HEADER_NAMES[i]!];
  }
  if (!isDigits(version, 0)) {
    addError(d, { code: 'cef_bad_version', message: `CEF version is not a number: ${JSON.stringify(clip(version, 0, 32))}` });
  }
  if (rec.severity !== undefined && !validSeverity(rec.severity)) {
    addWarning(d, { code: 'cef_bad_severity', message: `severity ${JSON.stringify(clip(rec.severity, 0, 32))} kept as written` });
  }
  if (out !== undefined) out.receiptTime = undefined;
  if (hasExtension) parseExtension(s, extStart, extEnd, rec, d, opts, out);
  fields.length = 0;
  return rec;
}

/** Record counter: KeyInfo.mark === current record means "seen in this record". */
let recordMark = 0;

/** Scratch for the custom keys of the record being parsed (parseCef is not re-entered). */
const customScratch: KeyInfo[] = [];

function parseExtension(s: string, start: number, end: number, rec: CefRecord, d: Diagnostics, opts: CefOptions, out: CefOut | undefined): void {
  const ext = rec.extensions;
  extText = s;
  extStart = start;
  extEnd = end;
  extZone = undefined;
  // Made on the first converted value: most records have none besides `rt`.
  let typed: Record<string, string | number> | undefined;
  if (++recordMark > 0x3fffffff) {
    recordMark = 1;
    resetMarks();
  }
  const mark = recordMark;
  let p = start;
  while (p < end && isBlank(s.charCodeAt(p))) p++;
  // Custom keys of this record in the order they first came (scratch: customSeen[0, nSeen)).
  const customSeen = customScratch;
  let nSeen = 0;
  let nextBackslash = s.indexOf('\\', p);
  // The `=` of the key at `p` and the key's hash when nextKey found them already (else
  // keyAt looks).
  let knownEq = -1;
  let knownHash = 0;
  while (p < end) {
    const hashed = knownEq !== -1;
    const hash = knownHash;
    const eq = hashed ? knownEq : keyAt(s, p, end);
    if (eq === -1) {
      // Row 18: text that is not key=value, up to the next pair.
      const k = nextKey(s, p, end, eqPos);
      let stop = k === -1 ? end : k;
      while (stop > p && isBlank(s.charCodeAt(stop - 1))) stop--;
      addWarning(d, {
        code: 'cef_unparsed_extension',
        message: clip(s, p, Math.min(stop, p + 256)),
      });
      if (k === -1) break;
      p = k;
      knownEq = eqPos[0]!;
      knownHash = eqPos[1]!;
      continue;
    }
    const vStart = eq + 1;
    const k = nextKey(s, vStart, end, eqPos);
    let vEnd = k === -1 ? end : k;
    // Row 10: blanks before the next key separate; trailing blanks, CR, LF of the raw value go.
    while (vEnd > vStart && isTrailingSpace(s.charCodeAt(vEnd - 1))) vEnd--;
    let value: string;
    if (nextBackslash !== -1 && nextBackslash < vStart) nextBackslash = s.indexOf('\\', vStart);
    if (nextBackslash !== -1 && nextBackslash < vEnd) {
      value = unescapeValue(s.slice(vStart, vEnd));
    } else {
      value = s.slice(vStart, vEnd);
    }
    const info = hashed ? lookupKeyHashed(s, p, eq, hash) : lookupKeyAt(s, p, eq);
    if (info === undefined) {
      // Unknown key: kept as written, as a string.
      const key = s.slice(p, eq);
      if (hasOwn(ext, key)) addWarning(d, { code: 'cef_duplicate_key', key, message: 'duplicate key; the last value wins' });
      setOwn(ext, key, value);
    } else {
      const full = info.full;
      if (info.mark === mark) {
        // Row 12: last value wins; keys compare by full name.
        addWarning(d, { code: 'cef_duplicate_key', key: full, message: `duplicate key ${s.slice(p, eq)}; the last value wins` });
        if (typed !== undefined) delete typed[full];
        if (info === RECEIPT_TIME && out !== undefined) out.receiptTime = undefined;
      } else {
        info.mark = mark;
        if (info.customBase !== undefined) customSeen[nSeen++] = info;
      }
      if (info.customBase !== undefined) {
        // Custom fields are placed once the record is read: a pair goes to `cef.custom`.
        info.value = value;
      } else {
        ext[full] = value;
        if (info.type !== 'string' && info.type !== 'text') {
          const t = typedValue(info, value, d, opts);
          if (t !== undefined) {
            if (info === RECEIPT_TIME && out !== undefined) out.receiptTime = t as string;
            else (typed ??= {})[full] = t;
          }
        }
      }
    }
    if (k === -1) break;
    p = k;
    knownEq = eqPos[0]!;
    knownHash = eqPos[1]!;
  }
  if (nSeen > 0) typed = placeCustom(customSeen, nSeen, mark, rec, typed, d, opts);
  if (typed !== undefined) {
    // A duplicate key may have taken its converted value out again.
    for (const _ in typed) {
      rec.typed = typed;
      break;
    }
  }
}

/**
 * Custom fields (csN, cnN, ... with their Labels), in the order they first arrived. A
 * value whose Label arrived too is one field named by its label: `cef.custom["cs3:TaskName"]`
 * (slot short name, `:`, label; docs/event-format.md). Its value is the JSON number when
 * the text is that number as written (`cn1=4`), else the text (with the converted value
 * in `typed` under the full name, as for any key). A value or Label without its other
 * half (row 16 warns), or a pair with an empty Label, stays in `extensions` under its
 * full names.
 */
function placeCustom(
  seen: KeyInfo[],
  nSeen: number,
  mark: number,
  rec: CefRecord,
  typed: Record<string, string | number> | undefined,
  d: Diagnostics,
  opts: CefOptions,
): Record<string, string | number> | undefined {
  const ext = rec.extensions;
  let custom: Record<string, string | number> | undefined;
  for (let i = 0; i < nSeen; i++) {
    const info = seen[i]!;
    const pair = info.pair!;
    const paired = pair.mark === mark;
    if (!paired) {
      addWarning(d, {
        code: 'cef_custom_field_unpaired',
        key: info.full,
        message: info.isLabel ? `${info.full} has no value (${info.customBase!})` : `${info.customBase!} has no label (${info.customBase!}Label)`,
      });
    }
    // A pair folds when its label names it: an empty Label leaves both keys in `extensions`.
    const folds = paired && (info.isLabel ? info.value : pair.value) !== '';
    if (info.isLabel) {
      if (!folds) ext[info.full] = info.value;
      continue;
    }
    const value = info.value;
    const t = info.type !== 'string' && info.type !== 'text' ? typedValue(info, value, d, opts) : undefined;
    if (!folds) {
      if (t !== undefined) (typed ??= {})[info.full] = t;
      ext[info.full] = value;
      continue;
    }
    let v: string | number = value;
    // A number written as that number is the field's value; else the text is, and the
    // converted value goes to `typed` as for any key.
    if (typeof t === 'number' && String(t) === value) v = t;
    else if (t !== undefined) (typed ??= {})[info.full] = t;
    const label = pair.value;
    let key: string;
    if (label === info.lastLabel) {
      key = info.lastCustomKey;
    } else {
      key = `${info.customShort!}:${label}`;
      info.lastLabel = label;
      info.lastCustomKey = key;
    }
    custom ??= {};
    setOwn(custom, key, v);
  }
  rec.custom = custom;
  return typed;
}
