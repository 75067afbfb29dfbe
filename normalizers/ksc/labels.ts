/**
 * KSC CEF custom fields → `{Label: value}`.
 *
 * KSC puts its data in custom pairs (`cs10=Uninstall EDR cs10Label=TaskName`), with slot
 * numbers that differ between KSC versions and installs (`siem_conversion_rules.xml` is
 * editable) and beyond the CEF spec (cs7..cs10): docs/reference/ksc-format.md §0 item 2. So
 * everything is read by label, never by slot. Every custom family counts, any N from 1 to 999 (as in
 * src/codecs/cef/dictionary.ts): csN, cnN, cfpN, c6aN, flexStringN, flexNumberN, flexDateN,
 * deviceCustomDateN. `cef.extensions` is keyed by full names (`deviceCustomString10`).
 *
 * Values: the CEF parser's converted value when there is one (cnN/flexNumberN → number,
 * dates → ISO 8601 UTC, c6aN → validated IPv6 text), else the decoded text.
 *
 * Anomalies, each a warning, nothing lost:
 * - a value without its label (or with an empty one): kept under the slot's full name
 *   (`deviceCustomString5`), `ksc_unpaired_value`;
 * - a label without its value: nothing stored, `ksc_unpaired_label`;
 * - one label on several slots: the lowest slot wins whatever the arrival order (family
 *   order of FAMILIES, then N), the others go under `Label#slot`, `ksc_duplicate_label`;
 * - a cnN/flexNumberN value that is not an integer: kept as text, `ksc_bad_number`.
 */
import type { CefRecord } from '../../src/event.js';
import { lookupKey } from '../../src/codecs/cef/dictionary.js';
import { toInt } from '../../src/codecs/cef/parse.js';
import type { KscWarning } from './types.js';

export type Labels = Record<string, string | number>;

/** Custom families, in duplicate-label precedence order: [full prefix, value kind]. */
export const FAMILIES: ReadonlyArray<readonly [string, 'text' | 'int' | 'typed']> = [
  ['deviceCustomString', 'text'],
  ['deviceCustomNumber', 'int'],
  ['deviceCustomFloatingPoint', 'text'],
  ['deviceCustomIPv6Address', 'typed'],
  ['flexString', 'text'],
  ['flexNumber', 'int'],
  ['flexDate', 'typed'],
  ['deviceCustomDate', 'typed'],
];

/** customSlot results by key name; extension key names repeat, so this stays small. */
const slotCache = new Map<string, number>();
const SLOT_CACHE_MAX = 8192;

/**
 * Reads an extension key's full name: returns `(slot << 1) | isLabel` where
 * slot = family index * 1000 + N, or -1 for a key that is not a custom field.
 */
export function customSlot(k: string): number {
  const hit = slotCache.get(k);
  if (hit !== undefined) return hit;
  const s = parseSlot(k);
  if (slotCache.size < SLOT_CACHE_MAX) slotCache.set(k, s);
  return s;
}

function parseSlot(k: string): number {
  const len = k.length;
  let fam: number;
  let p: number;
  const c0 = k.charCodeAt(0);
  if (c0 === 100 /* d */) {
    if (len < 17 || !k.startsWith('deviceCustom')) return -1;
    const c = k.charCodeAt(12);
    if (c === 83 /* S */ && k.startsWith('String', 12)) (fam = 0), (p = 18);
    else if (c === 78 /* N */ && k.startsWith('Number', 12)) (fam = 1), (p = 18);
    else if (c === 70 /* F */ && k.startsWith('FloatingPoint', 12)) (fam = 2), (p = 25);
    else if (c === 73 /* I */ && k.startsWith('IPv6Address', 12)) (fam = 3), (p = 23);
    else if (c === 68 /* D */ && k.startsWith('Date', 12)) (fam = 7), (p = 16);
    else return -1;
  } else if (c0 === 102 /* f */) {
    if (len < 9 || !k.startsWith('flex')) return -1;
    const c = k.charCodeAt(4);
    if (c === 83 && k.startsWith('String', 4)) (fam = 4), (p = 10);
    else if (c === 78 && k.startsWith('Number', 4)) (fam = 5), (p = 10);
    else if (c === 68 && k.startsWith('Date', 4)) (fam = 6), (p = 8);
    else return -1;
  } else {
    return -1;
  }
  let n = 0;
  let q = p;
  while (q < len) {
    const d = k.charCodeAt(q) - 48;
    if (d < 0 || d > 9) break;
    n = n * 10 + d;
    q++;
  }
  // 1..999 without a leading zero, then nothing or `Label`
  if (q === p || q - p > 3 || k.charCodeAt(p) === 48) return -1;
  let isLabel = 0;
  if (q !== len) {
    if (len - q !== 5 || !k.startsWith('Label', q)) return -1;
    isLabel = 1;
  }
  return ((fam * 1000 + n) << 1) | isLabel;
}

/** Slot numbers are below this (family index * 1000 + N, N <= 999). */
export const SLOTS = FAMILIES.length * 1000;

/** Full name of a slot's value key (`deviceCustomString10`): for warnings and `Label#slot`. */
export function slotName(slot: number): string {
  return FAMILIES[Math.floor(slot / 1000)]![0] + String(slot % 1000);
}

/** The custom slot of a short slot name as `cef.custom` keys carry it (`cs10`), like customSlot; -1 if none. */
export function customSlotOfShort(short: string): number {
  const full = lookupKey(short)?.customBase;
  return full === undefined ? -1 : customSlot(full);
}

/**
 * The value stored for the value key `key` of `slot`: the converted value for numbers,
 * dates and IPv6 addresses, else the text. A number that did not convert stays text,
 * with `ksc_bad_number`; an integer beyond 2^53 stays its decimal text, without a warning
 * (POLICY row 15, as the CEF parser keeps it). `raw` is what the event carries: the text, or the number
 * `cef.custom` holds for a cnN written as that number.
 */
export function slotValue(cef: CefRecord, key: string, raw: string | number, slot: number, warnings: KscWarning[]): string | number {
  if (typeof raw === 'number') return raw;
  const kind = FAMILIES[Math.floor(slot / 1000)]![1];
  if (kind === 'text') return raw;
  const typed = cef.typed?.[key];
  if (typed !== undefined) return typed;
  if (kind === 'int') {
    const n = toInt(raw);
    if (n !== null) return n;
    warnings.push({ code: 'ksc_bad_number', key, message: `${key} is not an integer; kept as text` });
    return raw;
  }
  // An IPv6 value or a date whose converted value is its text.
  return raw;
}

/**
 * Labels on several slots (rare): `groups` maps each such label to its values. For each,
 * keeps the lowest slot under the label and the others under `Label#slot`, and warns for
 * each of those. Returns the winning value of each label. The slots' value warnings
 * (ksc_bad_number) are given again, in slot order: they are taken out in one pass over
 * `warnings` for all the labels (a pass per label was quadratic in hostile input; a slot
 * has one label, so the labels' slots do not overlap).
 */
export function resolveDuplicates(
  cef: CefRecord,
  labels: Labels,
  groups: Map<string, { slot: number; raw: string | number }[]>,
  warnings: KscWarning[],
): Map<string, string | number> {
  const names = new Set<string>();
  for (const found of groups.values()) for (const f of found) names.add(slotName(f.slot));
  let kept = 0;
  for (let i = 0; i < warnings.length; i++) {
    const w = warnings[i]!;
    if (w.code === 'ksc_bad_number' && w.key !== undefined && names.has(w.key)) continue;
    warnings[kept++] = w;
  }
  warnings.length = kept;
  const out = new Map<string, string | number>();
  for (const [label, found] of groups) {
    found.sort((a, b) => a.slot - b.slot);
    const winner = slotName(found[0]!.slot);
    const value = slotValue(cef, winner, found[0]!.raw, found[0]!.slot, warnings);
    labels[label] = value;
    for (let i = 1; i < found.length; i++) {
      const name = slotName(found[i]!.slot);
      const key = `${label}#${name}`;
      labels[key] = slotValue(cef, name, found[i]!.raw, found[i]!.slot, warnings);
      warnings.push({
        code: 'ksc_duplicate_label',
        key: name,
        message: `label ${JSON.stringify(label)} is on ${winner} and ${name}: ${winner} wins, ${name} is kept under ${JSON.stringify(key)}`,
      });
    }
    out.set(label, value);
  }
  return out;
}
