/**
 * The `cef` encoder: the event written back as one CEF record, for syslog forwarding to
 * another SIEM (docs/encodings.md). Escaping follows the CEF rules (ArcSight's
 * implementation guide; docs/reference/receivers.md §3): in the header `\` and `|`; in
 * extension values `\`, `=`, and line breaks as `\n` / `\r`. Keys are never escaped, so a
 * key outside the key characters (POLICY row 7) cannot be written: it is left out and
 * counted (`encode_key_dropped`). Keys are written short, as senders write them (`src`,
 * `cs3`, `cs3Label`); unknown keys as they came.
 *
 * The record parses back through cefd's decoder to the same header and extensions
 * (test/codecs/encoders.test.ts, a property), plus `rt` and `dvchost` when it had none
 * (withTimeAndSender): the syslog header that dated the event and named its sender is not
 * forwarded, so the record carries them. Limits of that: a header field the record lacked
 * is written empty (it parses back as ""), and a frame without CEF (KSC's "Syslog"
 * format) gets a record built from what the event knows (below).
 */
import type { CefdEvent } from '../../event.js';
import { KEY_TABLE } from '../cef/key-table.js';
import { lookupKey } from '../cef/dictionary.js';
import { allExtensions } from '../cef/view.js';
import { kscView } from '../../../normalizers/ksc/lean.js';
import type { KscObject } from '../../../normalizers/ksc/types.js';
import { epochMs, senderHost, type EncodeProblems } from './encoder.js';
import { kscCefRecord } from './ksc-cef.js';

const SHORT = new Map<string, string>();
for (const [short, full] of KEY_TABLE) if (!SHORT.has(full)) SHORT.set(full, short);

/** Short name of a full name: the dictionary's, a custom field's (`cs10`, `cs10Label`), or the key itself. */
export function shortKey(full: string): string {
  const s = SHORT.get(full);
  if (s !== undefined) return s;
  const info = lookupKey(full);
  if (info?.customShort !== undefined) return info.isLabel ? `${info.customShort}Label` : info.customShort;
  return full;
}

/**
 * Header field: `\` and `|` escaped; CR and LF written as `\r` `\n`. CEF allows line breaks
 * only in extension values, and a record must stay one line (the disk buffer and the file
 * and syslog outputs are line-based), but a header field can hold one (an octet-counted
 * frame, a database row). `\n` is unambiguous (a backslash of the text is `\\`), though
 * header parsers, ours included (docs/reference/cef-policy.md row 3), keep it as written.
 */
export function escapeHeader(v: string): string {
  let out = '';
  let from = 0;
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c === 92 || c === 124) {
      out += v.slice(from, i) + '\\' + v[i];
      from = i + 1;
    } else if (c === 10 || c === 13) {
      out += v.slice(from, i) + (c === 10 ? '\\n' : '\\r');
      from = i + 1;
    }
  }
  return from === 0 ? v : out + v.slice(from);
}

/** Extension value: `\` `=` escaped, CR and LF written as `\r` `\n`. */
export function escapeValue(v: string): string {
  let out = '';
  let from = 0;
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    let rep: string | undefined;
    if (c === 92) rep = '\\\\';
    else if (c === 61) rep = '\\=';
    else if (c === 10) rep = '\\n';
    else if (c === 13) rep = '\\r';
    if (rep !== undefined) {
      out += v.slice(from, i) + rep;
      from = i + 1;
    }
  }
  return from === 0 ? v : out + v.slice(from);
}

/** Length of `v` without its trailing spaces and TABs (a value's last blanks separate it from the next key). */
function blankFreeEnd(v: string): number {
  let end = v.length;
  while (end > 0) {
    const c = v.charCodeAt(end - 1);
    if (c !== 32 && c !== 9) break;
    end--;
  }
  return end;
}

/** POLICY row 7: `[A-Za-z0-9_][A-Za-z0-9_.,[\]-]*`. */
export function isWritableKey(k: string): boolean {
  if (k.length === 0) return false;
  for (let i = 0; i < k.length; i++) {
    const c = k.charCodeAt(i);
    const word = (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95;
    if (word) continue;
    if (i === 0) return false;
    if (c !== 46 && c !== 44 && c !== 91 && c !== 93 && c !== 45) return false;
  }
  return true;
}

/** Extensions for a plain syslog message (not KSC's): when it happened, the sender, the text. */
function syslogExtensions(event: CefdEvent): Record<string, string> {
  const x: Record<string, string> = {};
  if (typeof event.timestamp === 'string') x['deviceReceiptTime'] = String(epochMs(event.timestamp) ?? event.timestamp);
  if (event.syslog?.hostname !== undefined) x['deviceHostName'] = event.syslog.hostname;
  if (event.message !== undefined) x['message'] = event.message;
  return x;
}

/**
 * The record's extensions, plus the event's time as `rt` (milliseconds since the epoch,
 * CEF's precision) and its sender as `dvchost` (senderHost) when the record has none or
 * has them empty. The syslog header that carried them is not forwarded: the syslog output
 * writes its own, with the forwarding time and its own host name (src/outputs/syslog/format.ts),
 * so without them a receiver would date the event at forwarding and take cefd for its source.
 * An `rt` that did not convert is written as it came (the event's time then was the
 * header's, which does not reach the receiver).
 */
function withTimeAndSender(ext: Record<string, string>, own: Record<string, string>, event: CefdEvent, k: KscObject | null): Record<string, string> {
  const rt = ext['deviceReceiptTime'] === undefined || ext['deviceReceiptTime'] === '' ? epochMs(event.timestamp) : undefined;
  const host = ext['deviceHostName'] === undefined || ext['deviceHostName'] === '' ? senderHost(event, k) : undefined;
  const hasHost = host !== undefined && host !== '';
  if (rt === undefined && !hasHost) return ext;
  // allExtensions returns the record's own object when it has no custom fields: copied
  // then (spreading keeps a key `__proto__` an own key); else its object is new, and this
  // encoder's alone (KSC's records, which have custom fields: no second copy per event).
  const out = ext === own ? { ...ext } : ext;
  if (rt !== undefined) out['deviceReceiptTime'] = String(rt);
  if (hasHost) out['deviceHostName'] = host;
  return out;
}

export function cefEncoder(problems: EncodeProblems): (event: CefdEvent) => string {
  return (event) => {
    const cef = event.cef;
    let head: (string | undefined)[];
    let ext: Record<string, string>;
    if (cef !== undefined) {
      head = [cef.version, cef.deviceVendor, cef.deviceProduct, cef.deviceVersion, cef.deviceEventClassId, cef.name, cef.severity];
      ext = withTimeAndSender(allExtensions(cef), cef.extensions, event, null);
    } else {
      // No CEF record: a KSC event that came another way (KSC's "Syslog" format, a row of
      // its database) as KSC's CEF export writes it (ksc-cef.ts), or plain syslog.
      const k = kscView(event);
      if (k !== null) {
        const r = kscCefRecord(k, event);
        head = [r.version, r.deviceVendor, r.deviceProduct, r.deviceVersion, r.deviceEventClassId, r.name, r.severity];
        ext = withTimeAndSender(allExtensions(r), r.extensions, event, k);
      } else {
        head = ['0', 'cefd', 'syslog', '', event.syslog?.msgId ?? 'syslog', event.syslog?.appName ?? 'syslog', 'Unknown'];
        ext = syslogExtensions(event);
      }
    }
    let out = 'CEF:' + escapeHeader(head[0] ?? '0');
    for (let i = 1; i < 7; i++) out += '|' + escapeHeader(head[i] ?? '');
    out += '|';
    let first = true;
    for (const full in ext) {
      const key = shortKey(full);
      if (!isWritableKey(key)) {
        problems.add('encode_key_dropped', `key ${JSON.stringify(full.slice(0, 64))} cannot be written in CEF`);
        continue;
      }
      let v = ext[full]!;
      const end = blankFreeEnd(v);
      if (end < v.length) {
        // CEF has no escape for them: every receiver (and cefd, POLICY row 10) trims them.
        problems.add('encode_field_cut', `${key}: ${v.length - end} trailing blank(s) left out (CEF receivers trim them)`);
        v = v.slice(0, end);
      }
      if (!first) out += ' ';
      out += key + '=' + escapeValue(v);
      first = false;
    }
    return out;
  };
}
