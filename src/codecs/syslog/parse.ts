/**
 * Syslog header parser: RFC 5424, RFC 3164 (with or without PRI), or none. Works on the
 * decoded frame text; never throws. A header it cannot read leaves the rest of the frame
 * as the message.
 *
 * Accepted forms:
 * - RFC 5424 `<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD [MSG]`, also without `<PRI>`
 *   (relays such as Wazuh strip it: `1 2024-02-19T13:18:51.000Z EXAMPLE-PC ...`).
 * - RFC 3164 `<PRI>Mmm dd hh:mm:ss host tag: msg`, PRI optional, hostname and tag optional;
 *   the timestamp may carry a year, a fraction and a zone (the CEF spec's text formats,
 *   which CEF senders put in front of `CEF:`); the year is inferred when absent.
 * - An RFC 3339 timestamp instead of the RFC 3164 one (`2014-06-07T18:55:09Z host tag msg`).
 * - `<PRI>` alone before the message (`<14>CEF:0|...`).
 */
import type { SyslogHeader } from '../../event.js';
import type { Diagnostics } from '../cef/parse.js';
import { addWarning, clip } from '../cef/parse.js';
import { isoFromParsed, parseRfc3339, parseTextTime } from '../../time.js';

export interface SyslogOptions {
  /** Zone for timestamps without one (RFC 3164). Default UTC. */
  defaultZone: string;
  /** Reference time for RFC 3164 year inference. */
  nowMs: number;
}

export interface SyslogResult {
  header: SyslogHeader | undefined;
  /** Index in the text where the message starts. */
  msgStart: number;
  /**
   * POLICY row 17: an RFC 5424 header, or an RFC 3164 one with at least its timestamp.
   * A frame without CEF is an event only when its header is readable.
   */
  readable: boolean;
}

const SP = 32;
const BOM = 0xfeff;

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

/** End of the space-delimited token at `p`. */
function tokenEnd(s: string, p: number): number {
  const i = s.indexOf(' ', p);
  return i === -1 ? s.length : i;
}

/** `-` is RFC 5424's NILVALUE. */
function field(s: string, from: number, to: number): string | undefined {
  if (to === from + 1 && s.charCodeAt(from) === 45) return undefined;
  return to > from ? s.slice(from, to) : undefined;
}

function setOwn(obj: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__') Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
  else obj[key] = value;
}

export function parseSyslog(s: string, start: number, d: Diagnostics, opts: SyslogOptions): SyslogResult {
  let p = start;
  let pri = -1;
  if (s.charCodeAt(p) === 60 /* < */) {
    let i = p + 1;
    let v = 0;
    while (i < s.length && i - p <= 3 && isDigit(s.charCodeAt(i))) {
      v = v * 10 + s.charCodeAt(i) - 48;
      i++;
    }
    if (i > p + 1 && s.charCodeAt(i) === 62 /* > */ && v <= 191) {
      pri = v;
      p = i + 1;
    }
  }
  const c = s.charCodeAt(p);
  // RFC 5424: VERSION (1-2 digits, not 0) SP, then a timestamp or '-'.
  if (isDigit(c) && c !== 48) {
    let i = p + 1;
    if (isDigit(s.charCodeAt(i))) i++;
    const after = s.charCodeAt(i + 1);
    // After a PRI, `VERSION SP` is enough; without one, a timestamp or `-` must follow.
    if (s.charCodeAt(i) === SP && (pri >= 0 || isDigit(after) || after === 45)) {
      const r = parse5424(s, i + 1, pri, d, opts);
      if (r !== null) return r;
    }
  }
  // RFC 3164 timestamp (Mmm dd ...), or an RFC 3339 one in its place.
  if ((c >= 65 && c <= 90) || (c >= 97 && c <= 122) || isDigit(c)) {
    const t = isDigit(c) ? parseRfc3339(s, p, opts.defaultZone) : parseTextTime(s, p, opts);
    if (t !== null && (t.end === s.length || s.charCodeAt(t.end) === SP)) {
      const header: SyslogHeader = { format: 'rfc3164' };
      if (pri >= 0) {
        header.facility = pri >> 3;
        header.severity = pri & 7;
      }
      header.timestamp = isoFromParsed(t);
      const msgStart = parse3164Rest(s, t.end, header);
      return { header, msgStart, readable: true };
    }
  }
  if (pri >= 0) {
    // `<PRI>` then the message itself (`<14>CEF:0|...`), or an unreadable header.
    const header: SyslogHeader = { format: 'rfc3164', facility: pri >> 3, severity: pri & 7 };
    if (!s.startsWith('CEF:', p) && !(s.charCodeAt(p) === BOM && s.startsWith('CEF:', p + 1))) {
      addWarning(d, { code: 'syslog_bad_header', message: 'no RFC 5424 version or RFC 3164 timestamp after <PRI>' });
    }
    return { header, msgStart: p, readable: false };
  }
  return { header: undefined, msgStart: start, readable: false };
}

/** After the RFC 3164 timestamp: optional hostname, optional `TAG[pid]:`. */
function parse3164Rest(s: string, p: number, h: SyslogHeader): number {
  const n = s.length;
  while (p < n && s.charCodeAt(p) === SP) p++;
  if (p >= n || s.startsWith('CEF:', p)) return p;
  // A first token that is itself a tag means there is no hostname.
  let tag = readTag(s, p, h);
  if (tag !== -1) return tag;
  const e = tokenEnd(s, p);
  h.hostname = s.slice(p, e);
  p = e;
  while (p < n && s.charCodeAt(p) === SP) p++;
  if (p >= n || s.startsWith('CEF:', p)) return p;
  tag = readTag(s, p, h);
  return tag === -1 ? p : tag;
}

/**
 * `TAG:` or `TAG[PID]:` at `p` (TAG: up to 48 non-blank characters without `:` or `[`),
 * followed by a space, the end, or `CEF:`. Sets appName/procId; returns where the message
 * starts, or -1.
 */
function readTag(s: string, p: number, h: SyslogHeader): number {
  if (s.startsWith('CEF:', p)) return -1;
  const n = s.length;
  let i = p;
  while (i < n && i - p < 48) {
    const c = s.charCodeAt(i);
    if (c === SP || c === 58 /* : */ || c === 91 /* [ */ || c === 9) break;
    i++;
  }
  if (i === p || i >= n) return -1;
  let pidStart = -1;
  let pidEnd = -1;
  let j = i;
  if (s.charCodeAt(j) === 91) {
    pidStart = j + 1;
    const close = s.indexOf(']', pidStart);
    if (close === -1 || close - pidStart > 128 || s.indexOf(' ', pidStart) !== -1 && s.indexOf(' ', pidStart) < close) return -1;
    pidEnd = close;
    j = close + 1;
  }
  if (s.charCodeAt(j) !== 58) return -1;
  j++;
  const next = s.charCodeAt(j);
  if (j < n && next !== SP && !s.startsWith('CEF:', j)) return -1;
  h.appName = s.slice(p, i);
  if (pidStart !== -1 && pidEnd > pidStart) h.procId = s.slice(pidStart, pidEnd);
  if (next === SP) j++;
  return j;
}

function parse5424(s: string, p: number, pri: number, d: Diagnostics, opts: SyslogOptions): SyslogResult | null {
  const n = s.length;
  const h: SyslogHeader = { format: 'rfc5424' };
  if (pri >= 0) {
    h.facility = pri >> 3;
    h.severity = pri & 7;
  }
  // TIMESTAMP
  let e = tokenEnd(s, p);
  if (!(e === p + 1 && s.charCodeAt(p) === 45)) {
    const t = parseRfc3339(s, p, opts.defaultZone);
    if (t === null || t.end !== e) {
      // Not a timestamp: this is not an RFC 5424 header unless a PRI said it was one.
      if (pri < 0) return null;
      // A header cut right after VERSION (`<14>1 CEF:0|...`): the message starts at `CEF:`.
      if (s.startsWith('CEF:', p)) return { header: h, msgStart: p, readable: true };
      addWarning(d, { code: 'syslog_bad_timestamp', message: `unreadable timestamp ${JSON.stringify(clip(s, p, Math.min(e, p + 40)))}` });
    } else {
      h.timestamp = isoFromParsed(t);
    }
  }
  // HOSTNAME APP-NAME PROCID MSGID (one named store each: a store by a varying name is
  // slower than these four fixed ones)
  for (let f = 0; f < 4; f++) {
    if (e >= n) return { header: h, msgStart: n, readable: true };
    p = e + 1;
    // Senders that cut the header short (`<14>1 TS HOST CEF:0|...`, SC4S style, or even
    // `<14>1 TS CEF:0|...`): the message starts where `CEF:` does.
    if (s.startsWith('CEF:', p)) return { header: h, msgStart: p, readable: true };
    e = tokenEnd(s, p);
    const v = field(s, p, e);
    if (v === undefined) continue;
    if (f === 0) h.hostname = v;
    else if (f === 1) h.appName = v;
    else if (f === 2) h.procId = v;
    else h.msgId = v;
  }
  if (e >= n) return { header: h, msgStart: n, readable: true };
  p = e + 1;
  if (s.startsWith('CEF:', p)) return { header: h, msgStart: p, readable: true };
  // STRUCTURED-DATA
  const c = s.charCodeAt(p);
  if (c === 45 /* - */ && (p + 1 === n || s.charCodeAt(p + 1) === SP)) {
    p++;
  } else if (c === 91 /* [ */) {
    const sd: Record<string, Record<string, string>> = {};
    const r = parseStructuredData(s, p, sd, d);
    if (r.ok) {
      p = r.end;
    } else {
      addWarning(d, { code: 'syslog_bad_structured_data', message: r.message });
      if (r.end > p) h.structuredData = sd;
      // The message is the text from the element that failed on.
      return { header: h, msgStart: r.end, readable: true };
    }
    h.structuredData = sd;
  }
  // else: no SD at all (a non-conforming sender): the message starts here.
  if (s.charCodeAt(p) === SP) p++;
  if (s.charCodeAt(p) === BOM) p++;
  return { header: h, msgStart: p, readable: true };
}

interface SdResult {
  ok: boolean;
  /** After the last complete element (on failure: start of the failed element). */
  end: number;
  message: string;
}

/**
 * RFC 5424 section 6.3: one or more `[SD-ID *(SP PARAM-NAME="PARAM-VALUE")]`. In values,
 * `\"`, `\\` and `\]` are escapes; any other backslash is an ordinary character.
 */
function parseStructuredData(s: string, p: number, out: Record<string, Record<string, string>>, d: Diagnostics): SdResult {
  const n = s.length;
  while (p < n && s.charCodeAt(p) === 91) {
    const elementStart = p;
    let i = p + 1;
    const idEnd = sdNameEnd(s, i);
    if (idEnd === i) return { ok: false, end: elementStart, message: 'empty SD-ID' };
    const id = s.slice(i, idEnd);
    const params: Record<string, string> = Object.prototype.hasOwnProperty.call(out, id) ? out[id]! : {};
    i = idEnd;
    for (;;) {
      const c = s.charCodeAt(i);
      if (c === 93 /* ] */) {
        i++;
        break;
      }
      if (c !== SP) return { ok: false, end: elementStart, message: `bad structured data in [${clip(id, 0, 40)}` };
      while (s.charCodeAt(i) === SP) i++;
      if (s.charCodeAt(i) === 93) {
        i++;
        break;
      }
      const nameEnd = sdNameEnd(s, i);
      if (nameEnd === i || s.charCodeAt(nameEnd) !== 61 || s.charCodeAt(nameEnd + 1) !== 34) {
        return { ok: false, end: elementStart, message: `bad parameter in [${clip(id, 0, 40)}` };
      }
      const name = s.slice(i, nameEnd);
      // Value: up to the first `"` not escaped by a backslash.
      const vStart = nameEnd + 2;
      let q = vStart;
      let hasEscape = false;
      for (;;) {
        q = s.indexOf('"', q);
        if (q === -1) return { ok: false, end: elementStart, message: `unterminated value of ${clip(name, 0, 40)} in [${clip(id, 0, 40)}` };
        let bs = 0;
        let k = q - 1;
        while (k >= vStart && s.charCodeAt(k) === 92) {
          bs++;
          k--;
        }
        if (bs > 0) hasEscape = true;
        if ((bs & 1) === 0) break;
        q++;
      }
      let value = s.slice(vStart, q);
      if (hasEscape || value.indexOf('\\') !== -1) value = unescapeSd(value);
      // RFC 5424 section 6.3.3 lets a PARAM-NAME repeat (and an element with the same
      // SD-ID adds to the first): the last value is kept, as for a CEF key sent twice, and
      // the one it replaces is named in the warning, so it is not lost without a word.
      if (Object.prototype.hasOwnProperty.call(params, name)) {
        addWarning(d, {
          code: 'syslog_duplicate_param',
          key: name,
          message: `parameter ${clip(name, 0, 40)} appears twice in [${clip(id, 0, 40)}]: the last value wins, the earlier one was ${JSON.stringify(clip(params[name]!, 0, 200))}`,
        });
      }
      setOwn(params, name, value);
      i = q + 1;
    }
    setOwn(out, id, params);
    p = i;
  }
  return { ok: true, end: p, message: '' };
}

/** SD-NAME: printable US-ASCII except `=`, SP, `]`, `"` (RFC 5424 section 6.3.2); 1-32 chars, read leniently up to 64. */
function sdNameEnd(s: string, i: number): number {
  const start = i;
  while (i < s.length && i - start < 64) {
    const c = s.charCodeAt(i);
    if (c <= 32 || c >= 127 || c === 61 || c === 93 || c === 34) break;
    i++;
  }
  return i;
}

function unescapeSd(v: string): string {
  let out = '';
  let from = 0;
  for (let i = 0; i < v.length - 1; i++) {
    if (v.charCodeAt(i) !== 92) continue;
    const c = v.charCodeAt(i + 1);
    if (c === 34 || c === 92 || c === 93) {
      out += v.slice(from, i);
      from = i + 1;
      i++;
    }
  }
  return out + v.slice(from);
}
