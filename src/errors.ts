/**
 * Every error and warning code cefd can attach to an event, a dead letter, a log line
 * or a metric label. Codes are stable strings: consumers filter on them, so a code is
 * never renamed or reused for something else. `test/errors.test.ts` keeps this table
 * and the README's table in step.
 *
 * - `level: 'error'`: the frame did not become an event (dead letter), or an event was
 *   kept but part of it could not be read, or the daemon could not do its job.
 * - `level: 'warning'`: the event was kept whole; something about it is worth knowing.
 */
export interface CodeInfo {
  readonly level: 'error' | 'warning';
  /** Where the code comes from. */
  readonly stage: 'framing' | 'decode' | 'syslog' | 'cef' | 'normalizer' | 'ksc' | 'output' | 'daemon';
  readonly description: string;
}

export const CODES = {
  // framing (src/framing)
  frame_truncated: {
    level: 'warning',
    stage: 'framing',
    description:
      'An LF-terminated frame was longer than maxFrameBytes: its first maxFrameBytes bytes became the event (flagged `truncated`), the rest up to the next LF was discarded and counted.',
  },
  frame_incomplete: {
    level: 'warning',
    stage: 'framing',
    description:
      'The stream ended inside an octet-counted frame: the bytes received were emitted as a frame flagged `truncated`.',
  },
  octet_count_too_large: {
    level: 'warning',
    stage: 'framing',
    description:
      'A frame began like an RFC 6587 octet count (`LEN SP`) but LEN was larger than maxFrameBytes, so it was read as an LF-terminated frame instead (the digits are part of the message).',
  },
  // decode (src/decode.ts)
  invalid_utf8: {
    level: 'warning',
    stage: 'decode',
    description:
      'The frame was not valid UTF-8: text was decoded with U+FFFD replacement and the exact bytes are kept in `rawBase64`.',
  },
  unparseable: {
    level: 'error',
    stage: 'decode',
    description:
      'The frame has neither a readable syslog header nor a CEF record: it is not an event and goes to the dead-letter output with its raw bytes.',
  },
  // syslog (src/syslog)
  not_cef: {
    level: 'warning',
    stage: 'syslog',
    description:
      'The frame has a readable syslog header but no CEF record: the event carries `syslog` and the text in `message` (KSC\'s "Syslog" export format is such a frame).',
  },
  syslog_bad_header: {
    level: 'warning',
    stage: 'syslog',
    description:
      'The frame began like a syslog header (`<PRI>` or an RFC 5424 version) that could not be read: the whole frame after what was read is the message.',
  },
  syslog_bad_structured_data: {
    level: 'warning',
    stage: 'syslog',
    description:
      'RFC 5424 structured data could not be read (unterminated element or parameter): header fields are kept, the text from the structured data on is the message.',
  },
  syslog_bad_timestamp: {
    level: 'warning',
    stage: 'syslog',
    description: 'The syslog timestamp could not be converted; `syslog.timestamp` is absent.',
  },
  // CEF (src/cef), POLICY.md rows
  cef_bad_version: {
    level: 'error',
    stage: 'cef',
    description: 'The CEF version after `CEF:` is not digits (POLICY row 2): the event is kept, `cef.version` as written.',
  },
  cef_incomplete_header: {
    level: 'error',
    stage: 'cef',
    description:
      'The CEF header has fewer than 7 fields (POLICY row 5): the event is kept, missing header fields are absent.',
  },
  cef_bad_severity: {
    level: 'warning',
    stage: 'cef',
    description:
      'The CEF severity is neither an integer 0-10 nor Unknown, Low, Medium, High, Very-High (POLICY row 6): kept as written.',
  },
  cef_bad_field: {
    level: 'warning',
    stage: 'cef',
    description:
      'An extension value of a typed key (IP address, integer, long, time stamp) is empty or does not convert (POLICY rows 11, 15): kept in `cef.extensions`, left out of `cef.typed`.',
  },
  cef_duplicate_key: {
    level: 'warning',
    stage: 'cef',
    description: 'An extension key appears twice (compared by full name); the last value wins (POLICY row 12).',
  },
  cef_custom_field_unpaired: {
    level: 'warning',
    stage: 'cef',
    description:
      'A custom field (csN, cnN, cfpN, c6aN, flexStringN, flexNumberN, flexDateN, deviceCustomDateN) has a value without its Label or a Label without its value (POLICY row 16).',
  },
  cef_unparsed_extension: {
    level: 'warning',
    stage: 'cef',
    description: 'Extension text that is not a `key=value` pair (POLICY row 18); the text is in the warning message.',
  },
  // normalizers (src/pipeline/normalize.ts, normalizers/)
  normalizer_failed: {
    level: 'warning',
    stage: 'normalizer',
    description:
      'A normalizer threw: the error was caught and counted and the event passes on un-normalized.',
  },
  ksc_unpaired_value: {
    level: 'warning',
    stage: 'ksc',
    description:
      'A KSC custom-field value (csN, cnN, flexStringN, cfpN, deviceCustomDateN, ...) arrived without its Label, or with an empty one: kept in `ksc.labels` under the slot\'s CEF full name (`deviceCustomString5`).',
  },
  ksc_unpaired_label: {
    level: 'warning',
    stage: 'ksc',
    description:
      'A KSC custom-field Label arrived without its value: nothing goes into `ksc.labels`; the label text is in the warning message.',
  },
  ksc_duplicate_label: {
    level: 'warning',
    stage: 'ksc',
    description:
      'Two KSC custom fields carry the same Label: the lowest slot wins (cs, cn, cfp, c6a, flexString, flexNumber, flexDate, deviceCustomDate, then by number, whatever the arrival order); each other value is kept in `ksc.labels` under `Label#slot` (`TaskName#deviceCustomString10`).',
  },
  ksc_unknown_state: {
    level: 'warning',
    stage: 'ksc',
    description:
      'A task-state code outside KSC\'s 0-7 KLPRCI table (for instance 8, 16, 64 from the host task bitmask): the state is `unknown` and the code is kept. A state that is not an integer is also `unknown`, without a code (the text stays in `ksc.labels`).',
  },
  ksc_bad_number: {
    level: 'warning',
    stage: 'ksc',
    description:
      'A KSC numeric value (a cnN or flexNumberN label value, the CEF severity, an attack port or IPv4 address) is not an integer: kept as text in `ksc.labels` / `ksc.params`, left out of the derived field.',
  },
  ksc_no_structured_data: {
    level: 'warning',
    stage: 'ksc',
    description:
      'A KSC "Syslog" line (APP-NAME `<product>|<version>`) without its `[event@23668 ...]` element, as after a relay with an RFC 3164 template: only product, host, the MSGID if any and the message text are known.',
  },
  // outputs and queues (src/pipeline/output-slot.ts, src/outputs/): reasons of rejected,
  // dropped and dead-lettered events, as in `reason` of dead letters and metric labels
  'http_status_<NNN>': {
    level: 'error',
    stage: 'output',
    description:
      'The http output got a status that is neither success nor retryable (4xx other than 408 and 429, or an unfollowed 3xx): the batch is rejected and its events go to the dead-letter output with this reason (`http_status_400`, ...).',
  },
  stdout_closed: {
    level: 'error',
    stage: 'output',
    description: 'Standard output can no longer be written (EPIPE, closed): the stdout output rejects its batches (dead-lettered).',
  },
  queue_full: {
    level: 'error',
    stage: 'output',
    description: 'An output queue with `when_full: drop_newest` was full: the event was dropped and counted.',
  },
  queue_hard_limit: {
    level: 'error',
    stage: 'output',
    description:
      'A `block` output queue reached twice its capacity with events from a source that cannot be paused (UDP): the event was dropped and counted.',
  },
  shutdown_undelivered: {
    level: 'error',
    stage: 'daemon',
    description: 'At shutdown an output did not drain within `shutdown_timeout`: its queued events were not delivered (counted and logged).',
  },
  reload_undelivered: {
    level: 'error',
    stage: 'daemon',
    description: 'An output removed or changed by a reload did not drain within `shutdown_timeout`.',
  },
  frame_incomplete_at_close: {
    level: 'warning',
    stage: 'framing',
    description:
      'A connection closed without an orderly end in the middle of a frame: the bytes received go to the dead-letter output with this reason.',
  },
} as const satisfies Record<string, CodeInfo>;

export type Code = keyof typeof CODES;

/** A warning or error attached to an event (POLICY row 18): `{code, key?, message?}`. */
export interface Problem {
  code: Code;
  key?: string;
  message?: string;
}

export function isCode(s: string): s is Code {
  return Object.prototype.hasOwnProperty.call(CODES, s);
}
