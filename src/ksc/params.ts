/**
 * KSC Open API typed values ("params" containers), docs/reference/ksc-open-api.md §0.1.
 *
 * Inside a container or an array, non-JSON types travel as wrappers:
 * `{"type":"long","value":1}`, `{"type":"datetime","value":"2024-05-01T10:00:00Z"}`,
 * `{"type":"params","value":{...}}`, `{"type":"binary","value":"<base64>"}`, `date`,
 * `float`, `double`. A params-typed *method argument, return value or out parameter* is a
 * bare JSON object (§0.1 "Top-level vs nested"). Method-level `long` arguments are plain
 * numbers.
 *
 * Decoding turns wire JSON into plain JS: long → number (or a decimal string beyond 2^53),
 * datetime → ISO string or null for `""`, binary → Buffer, params → plain object. Encoding
 * goes the other way, with explicit wrappers for the ambiguous cases (`long()`).
 */

/** A value as it travels inside a params container. */
export type WireValue =
  | string
  | number
  | boolean
  | null
  | WireValue[]
  | { type: string; value: unknown }
  | { [k: string]: WireValue };

/** Marker for a value that must be sent as paramLong inside a container. */
export class KscLong {
  constructor(readonly value: number | bigint) {}
}
/** Marker for a paramDate (`YYYY-MM-DD`). */
export class KscDate {
  constructor(readonly value: string) {}
}
/** Marker for paramDouble. */
export class KscDouble {
  constructor(readonly value: number) {}
}

export const long = (v: number | bigint): KscLong => new KscLong(v);
export const date = (v: string): KscDate => new KscDate(v);
export const double = (v: number): KscDouble => new KscDouble(v);

/** A JS value the encoder understands. Plain objects become nested params. */
export type JsValue =
  | string
  | number
  | boolean
  | null
  | undefined
  | Date
  | Buffer
  | KscLong
  | KscDate
  | KscDouble
  | JsValue[]
  | { [k: string]: JsValue };

/** `YYYY-MM-DDTHH:MM:SSZ`, the KSC datetime format (no fractional seconds). */
export function formatDateTime(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object') return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

/** Encodes a value that sits inside a container or an array (wrapped form). */
export function encodeValue(v: JsValue): WireValue {
  if (v === undefined || v === null) return null;
  if (typeof v === 'string' || typeof v === 'boolean') return v;
  if (typeof v === 'number') {
    // paramInt is 32-bit: a bigger integer can only be a paramLong.
    if (Number.isInteger(v) && (v > 2147483647 || v < -2147483648)) return { type: 'long', value: v };
    if (!Number.isInteger(v)) return { type: 'double', value: v };
    return v;
  }
  if (v instanceof KscLong) return { type: 'long', value: typeof v.value === 'bigint' ? Number(v.value) : v.value };
  if (v instanceof KscDate) return { type: 'date', value: v.value };
  if (v instanceof KscDouble) return { type: 'double', value: v.value };
  if (v instanceof Date) return { type: 'datetime', value: formatDateTime(v) };
  if (Buffer.isBuffer(v)) return { type: 'binary', value: v.toString('base64') };
  if (Array.isArray(v)) return v.map(encodeValue);
  if (isPlainObject(v)) return { type: 'params', value: encodeParams(v as Record<string, JsValue>) };
  throw new TypeError(`cannot encode a ${typeof v} as a KSC value`);
}

/** Encodes a bare params container (a method argument or return value): its members are wrapped. */
export function encodeParams(obj: Record<string, JsValue>): { [k: string]: WireValue } {
  const out: { [k: string]: WireValue } = {};
  for (const [k, v] of Object.entries(obj)) {
    if (v === undefined) continue;
    setKey(out, k, encodeValue(v));
  }
  return out;
}

/**
 * Encodes method arguments: each argument is encoded like a container member, except that a
 * plain-object argument is a bare params object (§0.1), not wrapped.
 */
export function encodeArgs(args: Record<string, JsValue>): Record<string, WireValue> {
  const out: Record<string, WireValue> = {};
  for (const [k, v] of Object.entries(args)) {
    if (v === undefined) continue;
    setKey(out, k, isPlainObject(v) ? encodeParams(v as Record<string, JsValue>) : encodeValue(v));
  }
  return out;
}

/** A decoded value: JSON types, Buffer, and plain objects. Datetimes are ISO strings. */
export type Decoded = string | number | boolean | null | Buffer | Decoded[] | { [k: string]: Decoded };

const WRAPPER_TYPES = new Set(['long', 'datetime', 'date', 'binary', 'float', 'double', 'params']);

function isWrapper(v: Record<string, unknown>): boolean {
  const keys = Object.keys(v);
  return keys.length === 2 && typeof v['type'] === 'string' && 'value' in v && WRAPPER_TYPES.has(v['type'] as string);
}

/** Decodes a wire value (wrapped or not) into plain JS. Unknown shapes pass as plain objects. */
export function decodeValue(v: unknown): Decoded {
  if (v === null || v === undefined) return null;
  if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return v;
  if (Array.isArray(v)) return v.map(decodeValue);
  if (typeof v === 'object') {
    const o = v as Record<string, unknown>;
    if (isWrapper(o)) {
      const val = o['value'];
      switch (o['type']) {
        case 'long': {
          if (typeof val === 'number') return val;
          if (typeof val === 'string' && /^-?\d+$/.test(val)) {
            const n = Number(val);
            return Number.isSafeInteger(n) ? n : val;
          }
          return null;
        }
        case 'datetime': {
          // KlAkOAPI treats "" as "no value" (§0.1).
          if (typeof val !== 'string' || val === '') return null;
          const ms = Date.parse(val);
          return Number.isNaN(ms) ? val : new Date(ms).toISOString();
        }
        case 'date':
          return typeof val === 'string' ? val : null;
        case 'binary':
          return typeof val === 'string' ? Buffer.from(val, 'base64') : null;
        case 'float':
        case 'double':
          return typeof val === 'number' ? val : null;
        case 'params':
          return decodeParams(val);
      }
    }
    return decodeParams(o);
  }
  return null;
}

/** Decodes a bare params container (its members may be wrapped). */
export function decodeParams(v: unknown): { [k: string]: Decoded } {
  const out: { [k: string]: Decoded } = {};
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return out;
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) setKey(out, k, decodeValue(x));
  return out;
}

/** Sets an own property, also for the key `__proto__` (server data must not touch prototypes). */
function setKey<T>(o: Record<string, T>, k: string, v: T): void {
  if (k === '__proto__') Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  else o[k] = v;
}

/**
 * `KLHST_WKS_IP_LONG` → dotted IPv4. The value is the address as an unsigned number in host
 * byte order, a·2^24 + b·2^16 + c·2^8 + d (OPEN-API.md §3.1: 10.99.101.200 → 174286280).
 * Negative values (a signed 32-bit view of the same bits) are accepted. Returns null for
 * anything that is not a 32-bit address, and for 0 (no address).
 */
export function decodeIpLong(v: unknown): string | null {
  let n: number;
  if (typeof v === 'number') n = v;
  else if (typeof v === 'string' && /^-?\d+$/.test(v)) n = Number(v);
  else return null;
  if (!Number.isInteger(n) || n < -2147483648 || n > 4294967295) return null;
  if (n < 0) n += 4294967296;
  if (n === 0) return null;
  return `${Math.floor(n / 16777216) & 255}.${Math.floor(n / 65536) & 255}.${Math.floor(n / 256) & 255}.${n & 255}`;
}

/** Dotted IPv4 → the KLHST_WKS_IP_LONG number (for the emulator and tests). */
export function encodeIpLong(ip: string): number {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip);
  if (m === null) throw new RangeError(`not an IPv4 address: ${ip}`);
  const p = m.slice(1).map(Number);
  if (p.some((x) => x > 255)) throw new RangeError(`not an IPv4 address: ${ip}`);
  return p[0]! * 16777216 + p[1]! * 65536 + p[2]! * 256 + p[3]!;
}
