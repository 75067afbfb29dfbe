/**
 * Encoders turn an event into the record an output sends (Vector's split: framers and
 * decoders in src/codecs/framing, syslog, cef; encoders here). An output names its encoder
 * in `outputs[].encoding.codec`; registry.ts lists them. The decode workers encode each
 * event once per distinct encoding in use, and the disk buffer stores the encoded bytes.
 */
import type { CefdEvent } from '../../event.js';
import type { Code } from '../../errors.js';
import type { EventOptions } from './native.js';
import type { KscObject } from '../../../normalizers/ksc/types.js';

/** What an output's `encoding` section says. */
export interface EncodingConfig {
  /** Encoder name from registry.ts (`native` by default). */
  codec: string;
  /**
   * Keep only these fields of the record (dotted paths of the encoding's record: `ksc.task`
   * native, `kaspersky.ksc` ecs, `Extra` kuma; through an array, of each element); the
   * encoder's output is trimmed (registry.ts). Refused for `cef`.
   */
  only_fields?: readonly string[];
  /** Drop these fields of the record (as `only_fields`); applied after `only_fields`. */
  except_fields?: readonly string[];
  /** The native event's options (config `event`, docs/event-format.md); other encoders read the event whole. */
  event?: EventOptions;
}

/**
 * What an encoder could not carry, counted per code (src/errors.ts, stage `encode`): the
 * encoder only counts; the owner reads and resets the counts (metrics, a rate-limited log
 * line), as a normalizer's outcome is counted by the pipeline.
 */
export class EncodeProblems {
  readonly counts = new Map<Code, number>();
  /** The last problem of each code, for a log line: field and what happened. */
  readonly last = new Map<Code, string>();

  add(code: Code, detail: string): void {
    this.counts.set(code, (this.counts.get(code) ?? 0) + 1);
    this.last.set(code, detail);
  }

  /** The counts since the last call, then zero. */
  take(): [Code, number][] {
    const out = [...this.counts];
    this.counts.clear();
    return out;
  }
}

export interface Encoder {
  /** Registry name plus field options: two outputs with equal keys share one encoding. */
  readonly key: string;
  readonly codec: string;
  /** Problems counted while encoding (keys dropped, values cut). */
  readonly problems: EncodeProblems;
  /**
   * One record, without a separator (NDJSON/array/syslog framing is the output's). May
   * throw only for an event a user normalizer made unencodable (a BigInt, a cycle): the
   * caller dead-letters that frame with reason `event_unserializable`.
   */
  encode(event: CefdEvent): string;
  /**
   * For an encoder whose records are JSON texts: the value `encode` writes, so that a
   * caller can write many records with one JSON.stringify (src/workers/json-batch.ts);
   * `JSON.stringify(value(event))` is `encode(event)`. Absent for other encoders (`cef`).
   */
  value?(event: CefdEvent): unknown;
}

/**
 * ISO 8601 with a time and a zone, as cefd writes converted time stamps (Date#toISOString;
 * the syslog header's offset and fraction): the only time text the `ecs` and `kuma`
 * encodings read. `Date.parse` alone would also take what the CEF decoder refused
 * (`Jun 2020`, `2020-06-23 10:00:00`, in the machine's zone), which Elasticsearch's
 * `strict_date_optional_time` rejects with the whole document.
 */
const ISO_TIME = /^(?:\d{4}|[+-]\d{6})-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2})$/;

/** Milliseconds since the epoch of an ISO time text; undefined for anything else. */
export function epochMs(iso: unknown): number | undefined {
  if (typeof iso !== 'string') return undefined;
  const t = Date.parse(iso);
  return Number.isNaN(t) ? undefined : t;
}

export function isIsoTime(v: unknown): v is string {
  return typeof v === 'string' && ISO_TIME.test(v) && !Number.isNaN(Date.parse(v));
}

/**
 * Who sent the event (`k`: the event's kscView): the syslog HOSTNAME, which is the
 * Administration Server for KSC's CEF export; for KSC's "Syslog" format, whose HOSTNAME is
 * the managed device, the server's `kscfqdn`. A database row has neither. The `cef`
 * encoding writes it as `dvchost` when the record has none, `kuma` as `DeviceHostName`,
 * `ecs` as `observer.hostname`.
 */
export function senderHost(event: CefdEvent, k: KscObject | null): string | undefined {
  return event.cef === undefined && k !== null ? k.server?.name : event.syslog?.hostname;
}
