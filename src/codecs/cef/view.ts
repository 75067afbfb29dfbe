/**
 * Readers of a decoded CEF record in the event's lean form (docs/event-format.md): the
 * custom fields by label, the extensions as the record wrote them (custom pairs under
 * their two full names), and every converted value. Encoders, the KSC task-status code
 * and the schema 1 view (src/codecs/encoders/native.ts) read the record through these.
 */
import { isIP } from 'node:net';
import type { CefRecord } from '../../event.js';
import { lookupKey } from './dictionary.js';
import { toInt } from './parse.js';

/** One custom field of `cef.custom`: slot short name (`cs3`), full names, label and value. */
export interface CustomField {
  /** As the key carries it: `cs3`. */
  short: string;
  /** The value key's full name: `deviceCustomString3`. */
  full: string;
  label: string;
  value: string | number;
}

/** Slot short name → value key's full name (`cs3` → `deviceCustomString3`); a bounded set (the decoder's families x 999). */
const fullOfShort = new Map<string, string | null>();

function customFull(short: string): string | undefined {
  let f = fullOfShort.get(short);
  if (f === undefined) {
    f = lookupKey(short)?.customBase ?? null;
    if (fullOfShort.size < 16384) fullOfShort.set(short, f);
  }
  return f ?? undefined;
}

/** The fields of `cef.custom`, in order; keys the dictionary cannot read (none the decoder makes) are skipped. */
export function customFields(cef: CefRecord): CustomField[] {
  const out: CustomField[] = [];
  const c = cef.custom;
  if (c === undefined) return out;
  for (const key in c) {
    const colon = key.indexOf(':');
    if (colon === -1) continue;
    const short = key.slice(0, colon);
    const full = customFull(short);
    if (full === undefined) continue;
    out.push({ short, full, label: key.slice(colon + 1), value: c[key]! });
  }
  return out;
}

/** `[label, value]` of every custom field that came with its label. */
export function customLabels(cef: CefRecord): [string, string | number][] {
  return customFields(cef).map((f) => [f.label, f.value]);
}

/** The extensions as the record wrote them, keyed by full name: custom pairs as `deviceCustomString3` and `deviceCustomString3Label` (schema 1's `cef.extensions`). */
export function allExtensions(cef: CefRecord): Record<string, string> {
  const fields = customFields(cef);
  if (fields.length === 0) return cef.extensions;
  // Built from entries in one step: adding keys one by one to a copy walks V8 through a
  // new hidden class per key (slow with every custom key name); fromEntries also keeps an
  // unknown key `__proto__` an own key.
  const entries: [string, string][] = Object.entries(cef.extensions);
  for (const f of fields) {
    entries.push([f.full, typeof f.value === 'number' ? String(f.value) : f.value], [`${f.full}Label`, f.label]);
  }
  return Object.fromEntries(entries);
}

/**
 * Every converted value (schema 1's `cef.typed`): IP addresses that are valid, integers,
 * and time stamps, `deviceReceiptTime` being `timestamp` when it converted. `warned` are
 * the keys with a `cef_bad_field` warning (those did not convert).
 */
export function allTyped(cef: CefRecord, timestamp: string, warned: ReadonlySet<string>, ext: Record<string, string> = allExtensions(cef)): Record<string, string | number> {
  const lean = cef.typed ?? {};
  const out: Record<string, string | number> = {};
  for (const k in ext) {
    const info = lookupKey(k);
    if (info === undefined || info.full !== k || info.isLabel) continue;
    const v = ext[k]!;
    if (v === '' || warned.has(k)) continue;
    const t = lean[k];
    if (t !== undefined) {
      out[k] = t;
      continue;
    }
    if (info.type === 'int') {
      const n = toInt(v);
      if (n !== null) out[k] = n;
    } else if (info.type === 'ip') {
      if (isIP(v) !== 0) out[k] = v;
    } else if (info.type === 'time') {
      // Not in the lean `typed`: the converted text is the written one, or it is `timestamp`.
      out[k] = k === 'deviceReceiptTime' ? timestamp : v;
    }
  }
  return out;
}
