/**
 * Small text helpers for the ksc normalizer. No regular expressions and no JSON.parse:
 * these run for every event (the budget: about a microsecond per event, measured by
 * bench/ksc-normalize.mjs).
 */
import { isIPv4Text } from '../../src/codecs/cef/parse.js';

/** True when `s` is exactly `len` hex digits. */
export function isHex(s: string, len: number): boolean {
  if (s.length !== len) return false;
  for (let i = 0; i < len; i++) {
    const c = s.charCodeAt(i) | 0x20; // fold A-F to a-f; digits keep their code
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) return false;
  }
  return true;
}

/** `s` lower-cased when it is a `len`-digit hex string, else undefined. */
export function hexOrUndefined(s: string | undefined, len: number): string | undefined {
  return s !== undefined && isHex(s, len) ? s.toLowerCase() : undefined;
}

/** A decimal integer (optional leading `-`, at most 15 digits), else undefined. */
export function parseInteger(s: string): number | undefined {
  const n = s.length;
  let i = s.charCodeAt(0) === 45 ? 1 : 0;
  if (n === i || n - i > 15) return undefined;
  let v = 0;
  for (; i < n; i++) {
    const c = s.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return undefined;
    v = v * 10 + c;
  }
  return s.charCodeAt(0) === 45 ? -v : v;
}

/**
 * KSC attack events carry IPv4 addresses as an unsigned 32-bit integer in decimal
 * (`168234606` = 10.7.14.110, docs/reference/ksc-format.md §7 item 7). Returns the dotted form, or
 * undefined when `s` is not such a number.
 */
export function ipv4FromDecimal(s: string): string | undefined {
  if (s.length === 0 || s.length > 10) return undefined;
  let v = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return undefined;
    v = v * 10 + c;
  }
  if (v > 0xffffffff) return undefined;
  return `${Math.floor(v / 16777216)}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

/** True when `s` is made of digits and dots only (an IPv4 literal rather than a name). */
function digitsAndDots(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c !== 46 && (c < 48 || c > 57)) return false;
  }
  return true;
}

/** A host name with a dot that is not an IPv4 literal: worth reporting as an FQDN. */
export function looksLikeFqdn(s: string | undefined): s is string {
  return s !== undefined && s.indexOf('.') > 0 && !digitsAndDots(s);
}

/**
 * An IPv4 address as KSC may send it: dotted as is (four octets 0-255, as the CEF parser
 * checks IP keys), or a decimal integer converted. Returns undefined for anything else.
 */
export function ipv4Text(s: string): string | undefined {
  if (s.indexOf('.') !== -1) return isIPv4Text(s) ? s : undefined;
  return ipv4FromDecimal(s);
}

/** A TCP/UDP port: an integer 0-65535 (a number, or decimal text), else undefined. */
export function portNumber(v: string | number): number | undefined {
  const n = typeof v === 'number' ? v : parseInteger(v);
  return n !== undefined && Number.isInteger(n) && n >= 0 && n <= 65535 ? n : undefined;
}

/**
 * The value of a string member `"key"` in a small JSON object text, without parsing it
 * (KSC's p9: `{"engine":1,...,"md5":"44D8..."}`). Only a plain string value without
 * escapes is returned; anything unexpected gives undefined. Never throws.
 */
export function jsonStringMember(json: string, key: string): string | undefined {
  const k = json.indexOf(`"${key}"`);
  if (k === -1) return undefined;
  let i = k + key.length + 2;
  const n = json.length;
  while (i < n && json.charCodeAt(i) === 32) i++;
  if (json.charCodeAt(i) !== 58 /* : */) return undefined;
  i++;
  while (i < n && json.charCodeAt(i) === 32) i++;
  if (json.charCodeAt(i) !== 34 /* " */) return undefined;
  const end = json.indexOf('"', i + 1);
  if (end === -1) return undefined;
  const v = json.slice(i + 1, end);
  return v.indexOf('\\') === -1 ? v : undefined;
}

/**
 * Split on `sep`, dropping trailing empty lines (KSC ends some descriptions with
 * `\r\n\r\n`). Empty lines inside are kept.
 */
export function splitLines(text: string, sep: string): string[] {
  const lines = text.split(sep);
  let n = lines.length;
  while (n > 1 && lines[n - 1] === '') n--;
  if (n !== lines.length) lines.length = n;
  return lines;
}


/**
 * APP-NAME of a KSC syslog line: `<product>|<version>` (`KES|11.0.0.0`, `1093|1.0.0.0`).
 * Product: 1-32 letters, digits, `_` or `-`; version: digits and dots, starting with a
 * digit, with at least one dot. Returns the index of `|`, or -1.
 */
export function kscAppNameBar(app: string | undefined): number {
  if (app === undefined) return -1;
  const bar = app.indexOf('|');
  if (bar < 1 || bar > 32 || bar === app.length - 1) return -1;
  for (let i = 0; i < bar; i++) {
    const c = app.charCodeAt(i);
    const ok = (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 || c === 45;
    if (!ok) return -1;
  }
  let dots = 0;
  const v0 = app.charCodeAt(bar + 1);
  if (v0 < 48 || v0 > 57) return -1;
  for (let i = bar + 1; i < app.length; i++) {
    const c = app.charCodeAt(i);
    if (c === 46) dots++;
    else if (c < 48 || c > 57) return -1;
  }
  return dots > 0 ? bar : -1;
}
