/**
 * Extension key lookup: short or full name → full name, type, and custom-field pairing.
 *
 * keys.json lists the spec's custom fields (cs1-6, cn1-3, cfp1-4, c6a1-4, flexString1-2,
 * flexNumber1-2, flexDate1, deviceCustomDate1-2). Real senders go beyond: KSC sends
 * cs7..cs10, logstash's tests use cfp15. POLICY row 16 says "any N, short or full names",
 * so each custom family is also matched by pattern for N = 1..999 and gets the same full
 * name and type as its spec members (`cs10` → `deviceCustomString10`).
 *
 * Hot path: the parser looks keys up by position in the frame text (`lookupKeyAt`), in an
 * open-addressing table keyed by a hash of the characters, so no substring is made for a
 * known key. There is exactly one KeyInfo object per full name, which lets the parser mark
 * keys it has seen in the current record (duplicates, custom pairs) without hashing.
 */
import { KEY_TABLE, type KeyType } from './key-table.js';

export interface KeyInfo {
  /** Full name (`sourceAddress`). */
  readonly full: string;
  readonly type: KeyType;
  /** For custom fields: the full name of the value key this key pairs with. */
  readonly customBase: string | undefined;
  /** For custom fields: the short name of the value key (`cs10`), which names the slot in `cef.custom`. */
  readonly customShort: string | undefined;
  readonly isLabel: boolean;
  /** The other half of a custom pair (value ↔ Label). */
  pair: KeyInfo | undefined;
  /** Parser scratch: the record number that last saw this key (see parse.ts). */
  mark: number;
  /** Parser scratch: a custom key's value in the current record (valid while `mark` is the record's). */
  value: string;
  /**
   * Parser cache, for a custom value key: the last label it was folded with and the
   * `cef.custom` key made of it (`cs3:TaskName`). Labels repeat from event to event, and
   * the same key string (already internalized by V8) makes adding it to an object cheap.
   */
  lastLabel: string;
  lastCustomKey: string;
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

/** One KeyInfo per full name. */
const byFull = new Map<string, KeyInfo>();

function info(full: string, type: KeyType, customBase: string | undefined, customShort: string | undefined, isLabel: boolean): KeyInfo {
  let i = byFull.get(full);
  if (i === undefined) {
    i = { full, type, customBase, customShort, isLabel, pair: undefined, mark: 0, value: '', lastLabel: '', lastCustomKey: '' };
    byFull.set(full, i);
  }
  return i;
}

/** The custom-field reading of `key`, if it is one (without pairing). */
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
    const short = f.short + n;
    const value = info(base, f.type, base, short, false);
    const label = info(base + 'Label', 'string', base, short, true);
    value.pair = label;
    label.pair = value;
    return isLabel ? label : value;
  }
  return undefined;
}

// ---- the hash table: key text (short or full) → KeyInfo ----
const SLOTS = 8192;
const MASK = SLOTS - 1;
/** Cap on entries, keeping the table at most half full. */
const MAX_ENTRIES = SLOTS / 2;
const slotKeys: (string | undefined)[] = new Array<string | undefined>(SLOTS).fill(undefined);
const slotInfos: (KeyInfo | undefined)[] = new Array<KeyInfo | undefined>(SLOTS).fill(undefined);
let entries = 0;
/**
 * Farthest any entry sits from its hash's slot, so a lookup looks at most maxProbe + 1
 * slots. The dictionary's own keys set it at start; a key learnt from input (a custom
 * field by pattern) is only kept if it lands within it. Without that bound a sender
 * could pick custom keys whose hashes fall in one window, build a run of thousands of
 * slots, and make every later miss walk it, for the life of the process.
 */
let maxProbe = 8;

/**
 * Hash of `s.slice(start, end)`, read from the last character back: the parser walks back
 * over a key from its `=` and hashes as it goes (keyHash), so the key is not read again
 * for the lookup.
 */
function hashRange(s: string, start: number, end: number): number {
  let h = 0;
  for (let i = end - 1; i >= start; i--) h = keyHash(h, s.charCodeAt(i));
  return h;
}

/** One step of the key hash: `h` so far (0 to start), `c` the next character going back. */
export function keyHash(h: number, c: number): number {
  return (Math.imul(h, 31) + c) | 0;
}

/** `learnt`: a key from input, kept only within maxProbe of its slot. */
function insert(key: string, i: KeyInfo, learnt: boolean): void {
  if (entries >= MAX_ENTRIES) return;
  let slot = hashRange(key, 0, key.length) & MASK;
  for (let d = 0; ; d++) {
    const k = slotKeys[slot];
    if (k === undefined) {
      if (d > maxProbe) {
        if (learnt) return;
        maxProbe = d;
      }
      slotKeys[slot] = key;
      slotInfos[slot] = i;
      entries++;
      return;
    }
    if (k === key) return;
    slot = (slot + 1) & MASK;
  }
}

for (const [short, full, type] of KEY_TABLE) {
  const custom = customInfo(short) ?? customInfo(full);
  const i = custom ?? info(full, type, undefined, undefined, false);
  insert(short, i, false);
  insert(full, i, false);
}

/** Slots a lookup of `key` looks at (for tests: bounded by maxProbe + 1). */
export function probesFor(key: string): number {
  let slot = hashRange(key, 0, key.length) & MASK;
  let n = 0;
  for (let d = 0; d <= maxProbe; d++) {
    n++;
    const k = slotKeys[slot];
    if (k === undefined || k === key) break;
    slot = (slot + 1) & MASK;
  }
  return n;
}

/**
 * The dictionary entry for the key `s.slice(start, end)`, or undefined for a key the
 * dictionary does not know (it is then kept as written, as a string).
 */
export function lookupKeyAt(s: string, start: number, end: number): KeyInfo | undefined {
  return lookupKeyHashed(s, start, end, hashRange(s, start, end));
}

/** lookupKeyAt when the caller has the key's hash already (keyHash over the key, back to front). */
export function lookupKeyHashed(s: string, start: number, end: number, hash: number): KeyInfo | undefined {
  const len = end - start;
  let slot = hash & MASK;
  for (let d = maxProbe; d >= 0; d--) {
    const k = slotKeys[slot];
    if (k === undefined) break;
    if (k.length === len && s.startsWith(k, start)) return slotInfos[slot];
    slot = (slot + 1) & MASK;
  }
  // Not in the table: a custom field beyond the spec's numbers, or unknown.
  const key = s.slice(start, end);
  const custom = customInfo(key);
  // Pattern hits are a bounded set (8 families x 999 x label/value x short/full), kept
  // for the next lookup when they fit near their slot.
  if (custom !== undefined) insert(key, custom, true);
  return custom;
}

/** The dictionary entry for `key` (short or full name), or undefined. */
export function lookupKey(key: string): KeyInfo | undefined {
  return lookupKeyAt(key, 0, key.length);
}

/** Clears every KeyInfo.mark (the parser calls this when its record counter wraps). */
export function resetMarks(): void {
  for (const i of byFull.values()) i.mark = 0;
}

/** Full name for `key`: the dictionary's, or the key as written. */
export function fullName(key: string): string {
  return lookupKey(key)?.full ?? key;
}

/** Custom-field families (short prefix → full prefix), for readers of `cef.custom` keys. */
export const CUSTOM_FAMILIES: ReadonlyArray<{ readonly short: string; readonly full: string; readonly type: KeyType }> = FAMILIES;
