/**
 * The `kuma` encoder: KUMA's normalized event (docs/reference/receivers.md §2; KUMA
 * help, "Data model"). CEF fields under their PascalCase full names (`SourceAddress`,
 * `DeviceEventClassID`), custom fields in KUMA's slots with their labels
 * (`DeviceCustomString1` + `DeviceCustomString1Label`), KSC's `TaskName` in `FlexString1`
 * as KUMA's own KSC integration has it, `Timestamp`, `Raw` when the event has the frame
 * text, and `Extra` (string to string) for what has no slot: custom fields beyond KUMA's
 * slots under their label (KSC's cs9: `Extra.GroupName`), unknown extension keys as
 * written, the KSC "Syslog" format's parameters, a plain syslog message's structured data
 * (`<SD-ID>.<PARAM>`), and what the ksc normalizer derives (`KscCategory`, ...). Each
 * `Extra` key is written once (putExtra): a label on several custom fields follows the ksc
 * normalizer (the lowest slot keeps the label, the others are `<label>#<fullName>`), and a
 * key already taken gets `#<where from>`, counted (`encode_key_renamed`). Values longer
 * than KUMA's field limits are cut, and counted (`encode_field_cut`). Time fields are
 * milliseconds since the epoch (UTC). A typed field gets only a value of its type (KUMA
 * refuses the whole event for a string in a Number field); another value goes to `Extra`
 * as written, counted (`encode_value_moved`).
 */
import type { CefdEvent } from '../../event.js';
import { KEY_TABLE, type KeyType } from '../cef/key-table.js';
import { lookupKey } from '../cef/dictionary.js';
import { customFields, type CustomField } from '../cef/view.js';
import { toInt } from '../cef/parse.js';
import { FACILITIES } from '../syslog/names.js';
import { kscView } from '../../../normalizers/ksc/lean.js';
import { customSlot } from '../../../normalizers/ksc/labels.js';
import { epochMs, isIsoTime, senderHost, type EncodeProblems } from './encoder.js';
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


/**
 * The `Extra` keys cefd derives for a KSC event (written last): reserved on every KSC
 * event, so that a sender's label or key of that name never takes one (it is renamed).
 */
const KSC_KEYS: ReadonlySet<string> = new Set(['KscCategory', 'KscSeverity', 'KscTaskOldState', 'KscTaskNewState', 'KscThreatAction', 'KscHostFqdn']);

/** KSC's task name label; KUMA's KSC integration shows it as `FlexString1Label=TaskName`. */
const TASK_NAME = 'TaskName';

/**
 * Each custom field's `Extra` key as the ksc normalizer names it in `ksc.labels`
 * (normalizers/ksc/labels.ts): its label for the lowest slot carrying that label (family
 * order cs, cn, cfp, c6a, flexString, flexNumber, flexDate, deviceCustomDate, then N),
 * `<label>#<fullName>` for the others.
 */
function labelKeys(fields: readonly CustomField[]): string[] {
  const n = fields.length;
  const keys = fields.map((f) => f.label);
  if (n < 2) return keys;
  const lower = (a: number, b: number) => customSlot(fields[a]!.full) < customSlot(fields[b]!.full);
  if (n <= 16) {
    // A KSC record's few fields: compared pairwise, without a map per event.
    let loser: boolean[] | undefined;
    for (let i = 0; i < n; i++) {
      for (let j = i + 1; j < n; j++) {
        if (keys[i] !== keys[j]) continue;
        (loser ??= [])[lower(i, j) ? j : i] = true;
      }
    }
    if (loser !== undefined) for (let i = 0; i < n; i++) if (loser[i] === true) keys[i] = `${keys[i]!}#${fields[i]!.full}`;
    return keys;
  }
  const winner = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const w = winner.get(keys[i]!);
    if (w === undefined || lower(i, w)) winner.set(keys[i]!, i);
  }
  for (let i = 0; i < n; i++) if (winner.get(keys[i]!) !== i) keys[i] = `${keys[i]!}#${fields[i]!.full}`;
  return keys;
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
  /**
   * Writes `v` to `Extra` under `key`, or, when that key is taken (by a value written
   * before, or reserved: KSC_KEYS on a KSC event), under `<key>#<from>`, `from` naming
   * where it came from (then `#2`, `#3`, ...), counted: `Extra` never loses a value to
   * another.
   */
  const putExtra = (extra: Record<string, string>, reserved: ReadonlySet<string> | undefined, key: string, from: string, v: string): void => {
    if (!(key in extra) && reserved?.has(key) !== true) {
      extra[key] = v;
      return;
    }
    let alt = `${key}#${from}`;
    for (let n = 2; alt in extra || reserved?.has(alt) === true; n++) alt = `${key}#${from}#${n}`;
    extra[alt] = v;
    problems.add('encode_key_renamed', `Extra.${JSON.stringify(key.length > 64 ? key.slice(0, 64) + '...' : key)} is taken; written as Extra.${JSON.stringify(alt.length > 64 ? alt.slice(0, 64) + '...' : alt)}`);
  };
  /** A value KUMA's typed field cannot take: for `Extra` under `key`, as written, and counted. */
  const moved = (key: string, field: string, v: string, kind: Kind): [string, string] => {
    problems.add('encode_value_moved', `${field}: ${JSON.stringify(v.length > 64 ? v.slice(0, 64) + '...' : v)} is not a ${KIND_OF[kind]}; written as Extra.${JSON.stringify(key)}`);
    return [key, v];
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
    const reserved = k !== null ? KSC_KEYS : undefined;
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
      // Extension values for Extra wait until the custom fields have their labels there:
      // a label is the ksc normalizer's name of a value, an unknown key only a key.
      let later: [string, string][] | undefined;
      for (const full in cef.extensions) {
        const v = cef.extensions[full]!;
        const info = lookupKey(full);
        // CEF's `type` (0 base, 1 aggregated, 2 correlation, 3 action) is not KUMA's own
        // `Type` (1 base, 2 aggregated, 3 correlation, ...), which KUMA sets itself.
        if (info === undefined || info.full !== full || full === 'type') {
          (later ??= []).push([full, v]);
          continue;
        }
        const field = kumaName(full);
        if (info.customBase !== undefined) {
          // A custom key without its other half (or with an empty label): its slot, or Extra.
          if (!hasSlot(info.customBase)) (later ??= []).push([full, v]);
          else if (info.isLabel) out[field] = v;
          else {
            const sv = slotValue(full, info.type, v, typed[full]);
            if (sv !== undefined) out[field] = sv;
            else (later ??= []).push(moved(full, field, v, slotKind(full, info.type)));
          }
          continue;
        }
        const type = TYPE_OF.get(full);
        if (type === 'int') {
          const n = typed[full] ?? toInt(v);
          if (typeof n === 'number') out[field] = n;
          else (later ??= []).push(moved(full, field, v, 'int'));
        } else if (type === 'time') {
          // `rt` converted is the event's timestamp; one that did not convert has a warning.
          const t = full === 'deviceReceiptTime'
            ? (event.warnings?.some((w) => w.code === 'cef_bad_field' && w.key === full) ? undefined : epochMs(event.timestamp))
            : timeMs(typed[full] ?? v);
          if (t !== undefined) out[field] = t;
          else (later ??= []).push(moved(full, field, v, 'time'));
        } else if (GEO.has(full)) {
          const f = floatOf(v);
          if (f !== undefined) out[field] = f;
          else (later ??= []).push(moved(full, field, v, 'float'));
        } else {
          cut(out, field, v);
        }
      }
      const fields = customFields(cef);
      if (fields.length > 0) {
        const keys = labelKeys(fields);
        // KSC's TaskName (the field that wins the label) in FlexString1, unless the record
        // has a FlexString1 of its own.
        let task = k !== null ? keys.indexOf(TASK_NAME) : -1;
        if (task !== -1 && (cef.extensions['flexString1'] !== undefined || cef.extensions['flexString1Label'] !== undefined || fields.some((f) => f.full === 'flexString1'))) task = -1;
        for (let i = 0; i < fields.length; i++) {
          const f = fields[i]!;
          if (i === task) {
            out['FlexString1'] = String(f.value);
            out['FlexString1Label'] = TASK_NAME;
            continue;
          }
          const field = kumaName(f.full);
          let v: string;
          if (hasSlot(f.full)) {
            const sv = typeof f.value === 'number' ? f.value : slotValue(f.full, lookupKey(f.full)!.type, f.value, typed[f.full]);
            if (sv !== undefined) {
              out[field] = sv;
              out[field + 'Label'] = f.label;
              continue;
            }
            v = moved(keys[i]!, field, String(f.value), slotKind(f.full, lookupKey(f.full)!.type))[1];
          } else {
            v = String(f.value);
          }
          if (keys[i] !== f.label) problems.add('encode_key_renamed', `label ${JSON.stringify(f.label.length > 64 ? f.label.slice(0, 64) + '...' : f.label)} is on a lower slot too; ${f.full} written as Extra.${JSON.stringify(keys[i]!.length > 96 ? keys[i]!.slice(0, 96) + '...' : keys[i])}, as the ksc normalizer names it`);
          putExtra(extra, reserved, keys[i]!, f.full, v);
        }
      }
      if (later !== undefined) for (const [key, v] of later) putExtra(extra, reserved, key, 'extension', v);
    } else {
      // Plain syslog: the message and the header's fields.
      if (event.message !== undefined) out['Message'] = event.message;
      const s = event.syslog;
      if (s !== undefined) {
        if (s.msgId !== undefined) out['DeviceEventClassID'] = s.msgId;
        if (s.appName !== undefined) out['DeviceProcessName'] = s.appName;
        if (s.procId !== undefined) {
          const n = toInt(s.procId);
          if (typeof n === 'number') out['DeviceProcessID'] = n;
          else {
            const [key, v] = moved('deviceProcessId', 'DeviceProcessID', s.procId, 'int');
            putExtra(extra, reserved, key, 'syslog', v);
          }
        }
        if (s.facility !== undefined) out['DeviceFacility'] = FACILITIES[s.facility] ?? String(s.facility);
        const sd = s.structuredData;
        if (sd !== undefined) {
          for (const id in sd) {
            const params = sd[id]!;
            for (const p in params) putExtra(extra, reserved, `${id}.${p}`, 'structuredData', params[p]!);
          }
        }
      }
    }
    const kscNoCef = event.cef === undefined && k !== null;
    // KSC's "Syslog" format: its parameters as sent.
    if (kscNoCef) for (const p in k.params ?? {}) putExtra(extra, reserved, p, 'syslog', k.params![p]!);
    // The sender (senderHost): the Administration Server for KSC's CEF export and, as
    // `kscfqdn`, for its Syslog format, whose HOSTNAME is the managed device (its name is
    // DestinationHostName, its FQDN KscHostFqdn below). A database row has neither.
    const sender = senderHost(event, k);
    if (sender !== undefined && out['DeviceHostName'] === undefined) cut(out, 'DeviceHostName', sender);
    // cefd's own keys (KSC_KEYS, never taken by another value).
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
