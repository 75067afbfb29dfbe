/**
 * Frame → event: the deserializer behind every source and `cefd parse`. Decodes the
 * frame's bytes as UTF-8, reads the syslog header, finds and parses the CEF record
 * (docs/reference/cef-policy.md), and builds the event. Never throws: a frame that is not an
 * event comes back as a failure with a reason code, for the dead-letter output.
 */
import { isUtf8 } from 'node:buffer';
import type { Problem } from '../errors.js';
import { EVENT_SCHEMA, type CefdEvent, type FrameFailure } from '../event.js';
import { parseCef, addWarning, type CefOptions, type CefOut, type Diagnostics } from './cef/parse.js';
import { parseSyslog } from './syslog/parse.js';
import { isoFromMs } from '../time.js';
import { finishWarnings } from './warning-cap.js';

export interface DecodeOptions {
  /** Zone for times that carry none (RFC 3164 timestamps, CEF text time stamps). Default UTC. */
  defaultZone?: string;
  /** Put the frame text in `raw`. */
  keepRaw?: boolean;
}

export type DecodeResult =
  | { ok: true; event: CefdEvent }
  | { ok: false; failure: FrameFailure; warnings: Problem[] | undefined };

const BOM = 0xfeff;

/**
 * KSC offers LEEF ("QRadar (LEEF format)") beside CEF and Syslog (docs/reference/ksc-format.md
 * §1); cefd does not read it, and an operator who picked it should learn why every frame
 * is dead-lettered, and what to choose instead.
 */
const LEEF_MESSAGE = 'a LEEF record, which cefd does not read: set KSC\'s SIEM export to "ArcSight (CEF format)" or "Syslog"';

/** Reused per frame (decodeFrame is synchronous and not re-entered): fewer objects per event. */
const timeOpts: CefOptions = { defaultZone: 'UTC', nowMs: 0 };
const cefOut: CefOut = { receiptTime: undefined };

function isBlank(c: number): boolean {
  return c === 32 || c === 9;
}

/**
 * POLICY row 1: `CEF:` counts at the start of the message, or after a blank or `:`
 * (optionally with a BOM right before it). Returns its index or -1.
 */
export function findCef(s: string, from: number): number {
  let i = s.indexOf('CEF:', from);
  while (i !== -1) {
    let b = i - 1;
    if (b >= from && s.charCodeAt(b) === BOM) b--;
    if (b < from) return i;
    const c = s.charCodeAt(b);
    if (isBlank(c) || c === 58 /* : */) return i;
    i = s.indexOf('CEF:', i + 4);
  }
  return -1;
}

function trimEnd(s: string, from: number): number {
  let e = s.length;
  while (e > from) {
    const c = s.charCodeAt(e - 1);
    if (c !== 10 && c !== 13) break;
    e--;
  }
  return e;
}

/**
 * Decodes one frame. `receivedMs` is when it was read; `truncated` marks a frame the
 * framer cut.
 */
export function decodeFrame(frame: Buffer, truncated: boolean, receivedMs: number, opts: DecodeOptions = {}): DecodeResult {
  const defaultZone = opts.defaultZone ?? 'UTC';
  const d: Diagnostics = { errors: undefined, warnings: undefined };
  const s = frame.toString('utf8');
  let invalidUtf8 = false;
  // U+FFFD in the text means either a replaced invalid sequence or a real U+FFFD; isUtf8 tells.
  if (s.indexOf('\ufffd') !== -1 && !isUtf8(frame)) {
    invalidUtf8 = true;
    addWarning(d, { code: 'invalid_utf8', message: 'frame is not valid UTF-8; text decoded with U+FFFD replacement' });
  }
  if (truncated) addWarning(d, { code: 'frame_truncated', message: `frame cut at ${frame.length} bytes` });
  const start = s.charCodeAt(0) === BOM ? 1 : 0;
  timeOpts.defaultZone = defaultZone;
  timeOpts.nowMs = receivedMs;
  const sys = parseSyslog(s, start, d, timeOpts);
  const cefAt = findCef(s, sys.msgStart);
  const received = isoFromMs(receivedMs);
  if (cefAt === -1 && !sys.readable) {
    if (d.warnings !== undefined) finishWarnings(d.warnings);
    return {
      ok: false,
      failure: {
        code: 'unparseable',
        message: s.length === 0 ? 'empty frame' : s.startsWith('LEEF:', start) ? LEEF_MESSAGE : 'no readable syslog header and no CEF record',
      },
      warnings: d.warnings,
    };
  }
  // Every field in its documented order, so every event has the same shape (and hidden
  // class); JSON.stringify leaves the undefined ones out.
  const event: CefdEvent = {
    schema: EVENT_SCHEMA,
    id: undefined,
    timestamp: received,
    received,
    listener: undefined,
    peer: undefined,
    syslog: sys.header,
    prefix: undefined,
    cef: undefined,
    message: undefined,
    ksc: undefined,
    truncated: undefined,
    errors: undefined,
    warnings: undefined,
    rawBase64: undefined,
    raw: undefined,
  };
  if (cefAt !== -1) {
    let pe = cefAt;
    while (pe > sys.msgStart && (isBlank(s.charCodeAt(pe - 1)) || s.charCodeAt(pe - 1) === BOM)) pe--;
    if (pe > sys.msgStart) event.prefix = s.slice(sys.msgStart, pe);
    // The converted `rt` is the event's time stamp: carried once, as `timestamp` (parseCef
    // leaves it out of `typed` when given `cefOut`).
    event.cef = parseCef(s, cefAt, d, timeOpts, cefOut);
    const rt = cefOut.receiptTime;
    cefOut.receiptTime = undefined;
    if (rt !== undefined) event.timestamp = rt;
    else if (typeof sys.header?.timestamp === 'string') event.timestamp = sys.header.timestamp;
  } else {
    event.message = s.slice(sys.msgStart, trimEnd(s, sys.msgStart));
    addWarning(d, { code: 'not_cef', message: 'syslog message without a CEF record' });
    if (typeof sys.header?.timestamp === 'string') event.timestamp = sys.header.timestamp;
  }
  const h = sys.header;
  if (h !== undefined) {
    // Carried once: the header's time stamp is left out when it is the event's `timestamp`;
    // null says the header had none, so absent and "none" stay apart.
    if (h.timestamp === undefined) h.timestamp = null;
    else if (h.timestamp === event.timestamp) h.timestamp = undefined;
  }
  if (truncated) event.truncated = true;
  event.errors = d.errors;
  if (d.warnings !== undefined) finishWarnings(d.warnings);
  event.warnings = d.warnings;
  if (invalidUtf8) event.rawBase64 = frame.toString('base64');
  if (opts.keepRaw) event.raw = s;
  return { ok: true, event };
}
