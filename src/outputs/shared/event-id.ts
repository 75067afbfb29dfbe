/**
 * The event id of an encoded record, for receivers that deduplicate by a key (a NATS
 * `Nats-Msg-Id`, a bulk API's `_id`). The daemon gives every event an id at ingest
 * (src/pipeline/pipeline.ts); the encoders write it at `id` (native) or `event.id` (ecs).
 * The kuma and cef encodings carry no id, and a record may come from elsewhere: then the key
 * is `sha256:` and the SHA-256 of the record's bytes, which is the same for the same
 * record sent again (a batch resent from the buffer) but also the same for two events whose
 * encoded records are identical (documented in docs/outputs-nats.md).
 */
import { createHash } from 'node:crypto';

/** Where the id sits in records of each encoding (a dotted path); absent: the record has none. */
const ID_PATH: Record<string, readonly string[]> = {
  native: ['id'],
  ecs: ['event', 'id'],
};

/** A function giving the dedup key of a record of encoding `codec`. */
export function recordKeyFor(codec: string): (record: string) => string {
  const path = ID_PATH[codec];
  if (path === undefined) return hashKey;
  return (record) => {
    let v: unknown;
    try {
      v = JSON.parse(record);
    } catch {
      return hashKey(record);
    }
    for (const k of path) {
      if (v === null || typeof v !== 'object') return hashKey(record);
      v = (v as Record<string, unknown>)[k];
    }
    return typeof v === 'string' && v.length > 0 ? v : hashKey(record);
  };
}

function hashKey(record: string): string {
  return `sha256:${createHash('sha256').update(record).digest('hex')}`;
}
