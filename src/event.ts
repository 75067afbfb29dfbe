/**
 * The event cefd emits: one JSON object per frame that could be read. docs/event-format.md
 * documents every field; keep the two in step. Each value is carried once (the format's
 * `schema` 2); `expandEvent` (src/codecs/encoders/native.ts) gives the fields schema 1
 * repeated, for the options that ask for them and for filters written against them.
 */
import type { Problem } from './errors.js';

export interface SyslogHeader {
  /** Which header form was read. */
  format: 'rfc5424' | 'rfc3164';
  /** From `<PRI>`: PRI >> 3. Absent when the frame had no PRI. */
  facility?: number;
  /** From `<PRI>`: PRI & 7. */
  severity?: number;
  /**
   * ISO 8601 UTC; RFC 3164 timestamps get an inferred year and the configured zone. Absent
   * when it is the event's `timestamp` (carried once); null when the header had none (or
   * one that did not convert, warning `syslog_bad_timestamp`).
   */
  timestamp?: string | null;
  hostname?: string;
  appName?: string;
  procId?: string;
  msgId?: string;
  /** RFC 5424 structured data: `{ "event@23668": { "et": "...", ... } }`, values unescaped. */
  structuredData?: Record<string, Record<string, string>>;
}

export interface CefRecord {
  /** As written after `CEF:` (digits unless the event carries `cef_bad_version`). */
  version: string;
  deviceVendor?: string;
  deviceProduct?: string;
  deviceVersion?: string;
  deviceEventClassId?: string;
  name?: string;
  /** As written: 0-10 or Unknown/Low/Medium/High/Very-High; anything else carries `cef_bad_severity`. */
  severity?: string;
  /**
   * Decoded string values keyed by CEF full name (`sourceAddress`); unknown keys as
   * written. Custom fields that came with their Label are in `custom` instead; a custom
   * value or Label without its other half stays here under its full name.
   */
  extensions: Record<string, string>;
  /**
   * Custom fields that came as a value and its Label (`cs3=Full scan cs3Label=TaskName`),
   * one entry each: key `<short slot>:<label>` (`cs3:TaskName`), value the text, or the
   * number for cnN/flexNumberN written as that number. Absent when there are none.
   */
  custom?: Record<string, string | number>;
  /**
   * Converted values that differ from the written text: integers and longs (numbers),
   * time stamps whose ISO 8601 UTC text differs from the written one. IP addresses are not
   * repeated (the validated text is the written text), `deviceReceiptTime` not when it is
   * the event's `timestamp`. Absent when empty.
   */
  typed?: Record<string, string | number>;
}

/** Version of the event format (docs/event-format.md); 1 was the format before it carried each value once. */
export const EVENT_SCHEMA = 2;

export interface CefdEvent {
  /** Version of the event format (EVENT_SCHEMA). */
  schema?: number;
  /** Deterministic event id, assigned at ingest by the daemon. */
  id?: string;
  /** ISO 8601 UTC: CEF `rt`, else the syslog timestamp, else `received`. */
  timestamp: string;
  /** ISO 8601 UTC: when cefd read the frame. */
  received: string;
  /** Name of the listener that read the frame (daemon only). */
  listener?: string;
  /** Address and port of the sender (daemon only). */
  peer?: string;
  syslog?: SyslogHeader;
  /** Text before `CEF:` that is neither a syslog header nor an RFC 3164 tag. */
  prefix?: string;
  cef?: CefRecord;
  /** The syslog message text, for a frame without CEF. */
  message?: string;
  /** Set when the frame was cut at maxFrameBytes (or by the end of the stream). */
  truncated?: true | undefined;
  errors?: Problem[];
  warnings?: Problem[];
  /** The frame's exact bytes, when they are not valid UTF-8. */
  rawBase64?: string;
  /** The frame's text, when asked for (`--raw`, `include_raw`). */
  raw?: string;
  /** Set by the `ksc` normalizer (normalizers/ksc). */
  ksc?: unknown;
  /** Set by other normalizers: each writes its object under its own name. */
  [normalized: string]: unknown;
}

/** A frame that did not become an event. */
export interface FrameFailure {
  code: 'unparseable';
  message: string;
}

/**
 * Where an event came from, beside the event (not in its JSON): the listener, the sender,
 * and the TLS client certificate it presented. Event taps get it (src/ksc/trust.ts decides
 * from it whether an event may act on KSC).
 */
export interface EventOrigin {
  readonly listener: string;
  /** `address:port` (IPv6: `[address]:port`), as in the event's `peer`. */
  readonly peer: string;
  /** SHA-256 fingerprint of the TLS client certificate (hex, upper case, no colons), when there is one. */
  readonly tlsFingerprint?: string | undefined;
}
