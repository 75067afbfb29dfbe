/**
 * The `kuma` encoder: KUMA's normalized event (docs/reference/receivers.md §2; KUMA
 * help, "Data model"). CEF fields under their PascalCase full names (`SourceAddress`,
 * `DeviceEventClassID`), custom fields in KUMA's slots with their labels
 * (`DeviceCustomString1` + `DeviceCustomString1Label`), `Timestamp`, `Raw` when the event
 * has the frame text, and `Extra` (string to string) for what has no slot: custom fields
 * beyond KUMA's slots under their label (KSC's cs7..cs10: `Extra.TaskName`), unknown
 * extension keys as written, the KSC "Syslog" format's parameters, and what the ksc
 * normalizer derives (`KscCategory`, ...). Values longer than KUMA's field limits are cut,
 * and counted (`encode_field_cut`). Time fields are milliseconds since the epoch (UTC).
 * A typed field gets only a value of its type (KUMA refuses the whole event for a string
 * in a Number field); another value goes to `Extra` as written, counted
 * (`encode_value_moved`).
 */
import type { CefdEvent } from '../../event.js';
import { KEY_TABLE, type KeyType } from '../cef/key-table.js';
import { lookupKey } from '../cef/dictionary.js';
import { customFields } from '../cef/view.js';
import { toInt } from '../cef/parse.js';
import { kscView } from '../../../normalizers/ksc/lean.js';
import { epochMs, isIsoTime, type EncodeProblems } from './encoder.js';
import { kscCefRecord } from './ksc-cef.js';

/** KUMA's custom slots: full-name prefix → highest N it has. */
const SLOTS: Record<string, number> = {
  deviceCustomString: 6,
  deviceCustomNumber: 3,
  deviceCustomFloatingPoint: 4,
  deviceCustomIPv6Address: 4,
  deviceCustomDate: 2,
  flexString: 2,
  flexNumber: 2,
  flexDate: 1,
};

/** KUMA's length limits (characters); the Source and Device twins of the documented ones are taken to match. */
export const KUMA_LIMITS: Readonly<Record<string, number>> = {
  ApplicationProtocol: 31,
  DestinationAddress: 45,
  SourceAddress: 45,
  DeviceAddress: 45,
  DestinationHostName: 1023,
  SourceHostName: 1023,
  DeviceHostName: 1023,
};

/** CEF full name → KUMA field: PascalCase, a trailing `Id` as `ID` (`DeviceEventClassID`). */
export function kumaName(full: string): string {
  let n = full.charAt(0).toUpperCase() + full.slice(1);
  if (n.endsWith('Id')) n = n.slice(0, -2) + 'ID';
  return n;
}

/** CEF's Double keys (slat, slong, dlat, dlong; fixtures/cef/keys.json): KUMA's float fields. */
const GEO: ReadonlySet<string> = new Set(['sourceGeoLatitude', 'sourceGeoLongitude', 'destinationGeoLatitude', 'destinationGeoLongitude']);

const TYPE_OF = new Map<string, KeyType>();
for (const [, full, type] of KEY_TABLE) TYPE_OF.set(full, type);

/** A custom value key's slot in KUMA (`deviceCustomString3` → true for N within KUMA's range). */
function hasSlot(full: string): boolean {
  for (const p in SLOTS) {
    if (!full.startsWith(p)) continue;
    const n = Number(full.slice(p.length));
    return Number.isInteger(n) && n >= 1 && n <= SLOTS[p]!;
  }
  return false;
}


/** KUMA's event as an object (its JSON text is the record: registry.ts writes it). */
export function kumaEncoder(problems: EncodeProblems): (event: CefdEvent) => Record<string, unknown> {
  const cut = (out: Record<string, unknown>, field: string, v: string): void => {
    const max = KUMA_LIMITS[field];
    if (max !== undefined && v.length > max) {
      const end = codePointEnd(v, max);
      if (end < v.length) {
        problems.add('encode_field_cut', `${field}: cut to ${max} characters`);
        v = v.slice(0, end);
      }
    }
    out[field] = v;
  };
  /** A value KUMA's typed field cannot take: into `Extra` under `key`, as written, and counted. */
  const move = (extra: Record<string, string>, key: string, field: string, v: string, kind: Kind): void => {
    problems.add('encode_value_moved', `${field}: ${JSON.stringify(v.length > 64 ? v.slice(0, 64) + '...' : v)} is not a ${KIND_OF[kind]}; written as Extra.${JSON.stringify(key)}`);
    extra[key] = v;
  };
  return (event) => {
    const out: Record<string, unknown> = {};
    // No prototype: a sender's key or label `__proto__` is an own key, not a prototype set.
    const extra: Record<string, string> = Object.create(null) as Record<string, string>;
    // KUMA's own ID slot carries cefd's event id (assigned at ingest), so a store such as
    // ClickHouse can drop the duplicates of an at-least-once delivery by it.
    if (event.id !== undefined) out['ID'] = event.id;
    out['Timestamp'] = epochMs(event.timestamp);
    const k = kscView(event);
    // A KSC event without CEF (KSC's "Syslog" format, a row of the `sql` source): the
    // record KSC's CEF export would have sent, so it has the fields of one (ksc-cef.ts).
    const cef = event.cef ?? (k !== null ? kscCefRecord(k, event) : undefined);
    if (cef !== undefined) {
      if (cef.deviceVendor !== undefined) out['DeviceVendor'] = cef.deviceVendor;
      if (cef.deviceProduct !== undefined) out['DeviceProduct'] = cef.deviceProduct;
      if (cef.deviceVersion !== undefined) out['DeviceVersion'] = cef.deviceVersion;
      if (cef.deviceEventClassId !== undefined) out['DeviceEventClassID'] = cef.deviceEventClassId;
      if (cef.name !== undefined) out['Name'] = cef.name;
      if (cef.severity !== undefined) out['Severity'] = cef.severity;
      const typed = cef.typed ?? {};
      for (const full in cef.extensions) {
        const v = cef.extensions[full]!;
        const info = lookupKey(full);
        // CEF's `type` (0 base, 1 aggregated, 2 correlation, 3 action) is not KUMA's own
        // `Type` (1 base, 2 aggregated, 3 correlation, ...), which KUMA sets itself.
        if (info === undefined || info.full !== full || full === 'type') {
          extra[full] = v;
          continue;
        }
        const field = kumaName(full);
        if (info.customBase !== undefined) {
          // A custom key without its other half (or with an empty label): its slot, or Extra.
          if (!hasSlot(info.customBase)) extra[full] = v;
          else if (info.isLabel) out[field] = v;
          else {
            const sv = slotValue(full, info.type, v, typed[full]);
            if (sv !== undefined) out[field] = sv;
            else move(extra, full, field, v, slotKind(full, info.type));
          }
          continue;
        }
        const type = TYPE_OF.get(full);
        if (type === 'int') {
          const n = typed[full] ?? toInt(v);
          if (typeof n === 'number') out[field] = n;
          else move(extra, full, field, v, 'int');
        } else if (type === 'time') {
          // `rt` converted is the event's timestamp; one that did not convert has a warning.
          const t = full === 'deviceReceiptTime'
            ? (event.warnings?.some((w) => w.code === 'cef_bad_field' && w.key === full) ? undefined : epochMs(event.timestamp))
            : timeMs(typed[full] ?? v);
          if (t !== undefined) out[field] = t;
          else move(extra, full, field, v, 'time');
        } else if (GEO.has(full)) {
          const f = floatOf(v);
          if (f !== undefined) out[field] = f;
          else move(extra, full, field, v, 'float');
        } else {
          cut(out, field, v);
        }
      }
      for (const f of customFields(cef)) {
        const field = kumaName(f.full);
        if (hasSlot(f.full)) {
          const sv = typeof f.value === 'number' ? f.value : slotValue(f.full, lookupKey(f.full)!.type, f.value, typed[f.full]);
          if (sv !== undefined) {
            out[field] = sv;
            out[field + 'Label'] = f.label;
          } else {
            move(extra, f.label, field, String(f.value), slotKind(f.full, lookupKey(f.full)!.type));
          }
        } else {
          extra[f.label] = String(f.value);
        }
      }
    } else if (event.message !== undefined) {
      // Plain syslog.
      out['Message'] = event.message;
    }
    const kscNoCef = event.cef === undefined && k !== null;
    // KSC's "Syslog" format: its parameters as sent.
    if (kscNoCef) for (const p in k.params ?? {}) extra[p] = k.params![p]!;
    // The sender. The syslog HOSTNAME is the Administration Server for KSC's CEF export, but
    // the managed device for its Syslog format (its name is DestinationHostName, its FQDN
    // KscHostFqdn below); the server is there `kscfqdn`. A database row has neither.
    const sender = kscNoCef ? k.server?.name : event.syslog?.hostname;
    if (sender !== undefined && out['DeviceHostName'] === undefined) cut(out, 'DeviceHostName', sender);
    if (kscNoCef && k.host.fqdn !== undefined) extra['KscHostFqdn'] = k.host.fqdn;
    if (k !== null) {
      extra['KscCategory'] = k.category;
      extra['KscSeverity'] = k.severity;
      if (k.task?.oldState !== undefined) extra['KscTaskOldState'] = k.task.oldState;
      if (k.task?.newState !== undefined) extra['KscTaskNewState'] = k.task.newState;
      if (k.threat?.action !== undefined) extra['KscThreatAction'] = k.threat.action;
    }
    if (event.raw !== undefined) out['Raw'] = event.raw;
    for (const _ in extra) {
      out['Extra'] = extra;
      break;
    }
    return out;
  };
}

/**
 * A slot's value: an int64 for cnN/flexNumberN (cefd's integers that a JSON number holds
 * exactly), a float for cfpN, milliseconds for dates, else the text. Undefined when the
 * text is not of the slot's type: KUMA would refuse the whole event for a string in a
 * Number field.
 */
function slotValue(full: string, type: KeyType, text: string, converted: string | number | undefined): string | number | undefined {
  if (type === 'int') {
    const n = converted ?? toInt(text);
    return typeof n === 'number' ? n : undefined;
  }
  if (type === 'time') return timeMs(converted ?? text);
  if (full.startsWith('deviceCustomFloatingPoint')) return floatOf(text);
  return text;
}

/** Decimal text (`1.5`, `-2`, `3e-4`) as a finite number. */
const DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
function floatOf(text: string): number | undefined {
  if (!DECIMAL.test(text)) return undefined;
  const n = Number(text);
  return Number.isFinite(n) ? n : undefined;
}

/** Milliseconds of a converted time stamp (ISO, from the CEF decoder); undefined for text it refused. */
function timeMs(v: string | number): number | undefined {
  return isIsoTime(v) ? Date.parse(v) : undefined;
}

/**
 * Where the first `max` characters (code points) of `v` end, in UTF-16 units: a cut never
 * splits a surrogate pair (a lone half is not a character; it would reach KUMA as U+FFFD),
 * and a text of `max` characters outside the BMP is not cut at all.
 */
function codePointEnd(v: string, max: number): number {
  let i = 0;
  for (let n = 0; n < max && i < v.length; n++) {
    const c = v.charCodeAt(i);
    i += c >= 0xd800 && c <= 0xdbff && i + 1 < v.length && (v.charCodeAt(i + 1) & 0xfc00) === 0xdc00 ? 2 : 1;
  }
  return i;
}

type Kind = 'int' | 'float' | 'time';
function slotKind(full: string, type: KeyType): Kind {
  return type === 'time' ? 'time' : full.startsWith('deviceCustomFloatingPoint') ? 'float' : 'int';
}
const KIND_OF: Record<Kind, string> = { int: 'whole number that fits KUMA\'s int64 (and a JSON number)', float: 'decimal number', time: 'time stamp cefd converted' };
