/**
 * Extension key lookup: short or full name → full name, type, and custom-field pairing.
 *
 * keys.json lists the spec's custom fields (cs1-6, cn1-3, cfp1-4, c6a1-4, flexString1-2,
 * flexNumber1-2, flexDate1, deviceCustomDate1-2). Real senders go beyond: KSC sends
 * cs7..cs10, logstash's tests use cfp15. POLICY row 16 says "any N, short or full names",
 * so each custom family is also matched by pattern for N = 1..999 and gets the same full
 * name and type as its spec members (`cs10` → `deviceCustomString10`).
 */
import { KEY_TABLE, type KeyType } from './key-table.js';

export interface KeyInfo {
  /** Full name (`sourceAddress`); unknown keys are not in the dictionary. */
  readonly full: string;
  readonly type: KeyType;
  /** For custom fields: the full name of the value key this key pairs with, and which side it is. */
  readonly customBase?: string;
  readonly isLabel?: boolean;
}

interface Family {
  short: string;
  full: string;
  type: KeyType;
}

/** Custom field families: short prefix, full prefix, value type. */
const FAMILIES: readonly Family[] = [
  { short: 'cs', full: 'deviceCustomString', type: 'string' },
  { short: 'cn', full: 'deviceCustomNumber', type: 'int' },
  { short: 'cfp', full: 'deviceCustomFloatingPoint', type: 'text' },
  { short: 'c6a', full: 'deviceCustomIPv6Address', type: 'ip' },
  { short: 'flexString', full: 'flexString', type: 'string' },
  { short: 'flexNumber', full: 'flexNumber', type: 'int' },
  { short: 'flexDate', full: 'flexDate', type: 'time' },
  { short: 'deviceCustomDate', full: 'deviceCustomDate', type: 'time' },
];

const table = new Map<string, KeyInfo>();

function customInfo(key: string): KeyInfo | undefined {
  let body = key;
  let isLabel = false;
  if (body.endsWith('Label')) {
    body = body.slice(0, -5);
    isLabel = true;
  }
  for (const f of FAMILIES) {
    const prefix = body.startsWith(f.full) ? f.full : body.startsWith(f.short) ? f.short : null;
    if (prefix === null) continue;
    const n = body.slice(prefix.length);
    // 1..999, no leading zero
    if (n.length === 0 || n.length > 3 || n.charCodeAt(0) === 48) continue;
    let ok = true;
    for (let i = 0; i < n.length; i++) {
      const c = n.charCodeAt(i);
      if (c < 48 || c > 57) ok = false;
    }
    if (!ok) continue;
    const base = f.full + n;
    return isLabel
      ? { full: base + 'Label', type: 'string', customBase: base, isLabel: true }
      : { full: base, type: f.type, customBase: base, isLabel: false };
  }
  return undefined;
}

for (const [short, full, type] of KEY_TABLE) {
  const custom = customInfo(short) ?? customInfo(full);
  const info: KeyInfo = custom ? { ...custom, type: custom.isLabel ? 'string' : type } : { full, type };
  table.set(short, info);
  if (!table.has(full)) table.set(full, info);
}

/**
 * The dictionary entry for `key` (short or full name), or undefined for a key the
 * dictionary does not know (kept as written, as a string).
 */
export function lookupKey(key: string): KeyInfo | undefined {
  const hit = table.get(key);
  if (hit !== undefined) return hit;
  const custom = customInfo(key);
  // Pattern hits are a bounded set (8 families x 999 x label/value x short/full): cache them.
  if (custom !== undefined) table.set(key, custom);
  return custom;
}

/** Full name for `key`: the dictionary's, or the key as written. */
export function fullName(key: string): string {
  return lookupKey(key)?.full ?? key;
}
