/**
 * What the bulk outputs need to know of each record besides its bytes: the event id (the
 * idempotency key a receiver deduplicates on), the event time (a date-patterned index
 * name, HEC's `time`) and, for HEC, a host. Records are the encoder's JSON text; the id
 * and time sit in a different place per encoding (src/codecs/encoders): `native` has
 * `id` and `timestamp`, `ecs` has `event.id` and `@timestamp`, `kuma` has `Timestamp`.
 * A record that is not a JSON object (the `cef` encoding) has none of them.
 */

export interface RecordMeta {
  /** The JSON object, or undefined when the record is not one. */
  readonly doc: Record<string, unknown> | undefined;
  /** The event id, when the record carries one. */
  readonly id: string | undefined;
  /** The event time in ms since the epoch, when the record carries a readable one. */
  readonly timeMs: number | undefined;
}

function get(o: unknown, path: readonly string[]): unknown {
  for (const k of path) {
    if (o === null || typeof o !== 'object' || Array.isArray(o)) return undefined;
    o = (o as Record<string, unknown>)[k];
  }
  return o;
}

/** The value at a dotted path of a parsed record (a key with dots is tried whole first: ECS writes both shapes). */
export function fieldOf(doc: Record<string, unknown> | undefined, path: string): unknown {
  if (doc === undefined) return undefined;
  if (Object.hasOwn(doc, path)) return doc[path];
  return get(doc, path.split('.'));
}

const ID_PATHS = [['id'], ['event', 'id'], ['ID']];
const TIME_PATHS = [['@timestamp'], ['timestamp'], ['Timestamp']];

function timeOf(v: unknown): number | undefined {
  if (typeof v === 'number' && Number.isFinite(v)) return v; // KUMA writes epoch milliseconds
  if (typeof v !== 'string' || v === '') return undefined;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : t;
}

/** Reads a record's id and time. Never throws. */
export function recordMeta(record: string): RecordMeta {
  if (record.charCodeAt(0) !== 0x7b /* { */) return { doc: undefined, id: undefined, timeMs: undefined };
  let doc: Record<string, unknown>;
  try {
    const v: unknown = JSON.parse(record);
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return { doc: undefined, id: undefined, timeMs: undefined };
    doc = v as Record<string, unknown>;
  } catch {
    return { doc: undefined, id: undefined, timeMs: undefined };
  }
  let id: string | undefined;
  for (const p of ID_PATHS) {
    const v = get(doc, p);
    if (typeof v === 'string' && v !== '') {
      id = v;
      break;
    }
  }
  let timeMs: number | undefined;
  for (const p of TIME_PATHS) {
    timeMs = timeOf(get(doc, p));
    if (timeMs !== undefined) break;
  }
  return { doc, id, timeMs };
}
