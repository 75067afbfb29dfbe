/**
 * Time parsing shared by the syslog header (RFC 3339, RFC 3164) and CEF time stamps
 * (epoch milliseconds and the CEF spec's text formats). No regular expressions: these run
 * once or twice per event.
 */

const MONTHS: Record<string, number> = {
  jan: 0, feb: 1, mar: 2, apr: 3, may: 4, jun: 5, jul: 6, aug: 7, sep: 8, oct: 9, nov: 10, dec: 11,
};

const DAY_MS = 86_400_000;

const P2: string[] = [];
for (let i = 0; i < 100; i++) P2.push(i < 10 ? `0${i}` : String(i));
const P3: string[] = [];
for (let i = 0; i < 1000; i++) P3.push(i < 10 ? `00${i}` : i < 100 ? `0${i}` : String(i));

/** `.mmmZ` for each millisecond: the end of an ISO text. */
const MS_Z: string[] = P3.map((m) => `.${m}Z`);

/**
 * Two-slot cache of "YYYY-MM-DDTHH:MM:SS" prefixes, by second (event time and receive
 * time alternate): one concatenation per new ISO text while the second stays the same.
 */
let secA = NaN;
let prefixA = '';
let secB = NaN;
let prefixB = '';
/**
 * The last two results: an event's syslog time stamp and its CEF `rt` are mostly the same
 * instant, with the receive time converted in between; returning the same string object
 * also lets the decoder's "header time is the event time" test compare by reference.
 */
let lastMs = NaN;
let lastIso = '';
let prevMs = NaN;
let prevIso = '';
/** Years 0000-9999 print as YYYY; outside, toISOString's extended form is used. */
const MIN_FAST = -62_167_219_200_000; // 0000-01-01T00:00:00.000Z
const MAX_FAST = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

/**
 * ISO 8601 UTC with milliseconds, as Date#toISOString but without a Date per call (this
 * runs two or three times per event). Never throws: out-of-range values give "Invalid Date".
 */
export function isoFromMs(ms: number): string {
  if (ms === lastMs) return lastIso;
  if (ms === prevMs) return prevIso;
  if (!(ms >= MIN_FAST && ms <= MAX_FAST) || !Number.isInteger(ms)) {
    const d = new Date(ms);
    return Number.isNaN(d.getTime()) ? 'Invalid Date' : d.toISOString();
  }
  const second = Math.floor(ms / 1000);
  let prefix: string;
  if (second === secA) prefix = prefixA;
  else if (second === secB) prefix = prefixB;
  else {
    prefix = secondPrefix(second * 1000);
    secB = secA;
    prefixB = prefixA;
    secA = second;
    prefixA = prefix;
  }
  prevMs = lastMs;
  prevIso = lastIso;
  lastMs = ms;
  lastIso = prefix + MS_Z[ms - second * 1000]!;
  return lastIso;
}

/** The last "YYYY-MM-DDT" made, and its day. */
let lastDay = NaN;
let lastDayPrefix = '';

/** "YYYY-MM-DDTHH:MM:SS" of a whole second in the fast range. */
function secondPrefix(ms: number): string {
  const day = Math.floor(ms / DAY_MS) * DAY_MS;
  if (day !== lastDay) {
    lastDay = day;
    lastDayPrefix = new Date(day).toISOString().slice(0, 11);
  }
  let r = ms - day;
  const h = (r / 3_600_000) | 0;
  r -= h * 3_600_000;
  const mi = (r / 60_000) | 0;
  r -= mi * 60_000;
  const sec = (r / 1000) | 0;
  return lastDayPrefix + P2[h]! + ':' + P2[mi]! + ':' + P2[sec]!;
}

function digit(s: string, i: number): number {
  const c = s.charCodeAt(i) - 48;
  return c >= 0 && c <= 9 ? c : -1;
}

/** The milliseconds of the `n` fraction digits at `start`: the first three (read as digits, not Number() of a text made per event). */
function fractionMs(s: string, start: number, n: number): number {
  return digit(s, start) * 100 + (n > 1 ? digit(s, start + 1) * 10 : 0) + (n > 2 ? digit(s, start + 2) : 0);
}

/** Reads exactly `n` digits at `i`, or -1. */
function digits(s: string, i: number, n: number): number {
  let v = 0;
  for (let k = 0; k < n; k++) {
    const d = digit(s, i + k);
    if (d < 0) return -1;
    v = v * 10 + d;
  }
  return v;
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function validDate(y: number, mo: number, d: number, h: number, mi: number, sec: number): boolean {
  if (mo < 0 || mo > 11 || d < 1 || h > 23 || mi > 59 || sec > 60) return false;
  const leap = (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
  return d <= (mo === 1 && leap ? 29 : DAYS_IN_MONTH[mo]!);
}

/**
 * `Date.UTC(y, mo, d, h, mi, sec, ms)` for the fields the parsers accept (validDate, years
 * 0-9999, milliseconds 0-999), by arithmetic: Date.UTC is a call into the runtime, several
 * times slower, and this runs for every event. Days from the civil date as in Howard
 * Hinnant's `days_from_civil`. Unlike Date.UTC, years 0-99 are those years (a time stamp
 * `0050-01-01T00:00:00Z` is in year 50, not 1950). test/time.test.ts compares the two
 * over every day of years 0-9999 (through setUTCFullYear, which takes years as they are).
 */
export function utcMs(y: number, mo: number, d: number, h: number, mi: number, sec: number, ms: number): number {
  const m = mo + 1;
  const yy = m <= 2 ? y - 1 : y;
  const era = Math.floor(yy / 400);
  const yoe = yy - era * 400;
  const doy = Math.floor((153 * (m > 2 ? m - 3 : m + 9) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  const days = era * 146097 + doe - 719468;
  return ((days * 24 + h) * 60 + mi) * 60_000 + sec * 1000 + ms;
}

export interface ParsedTime {
  /** Milliseconds since the epoch, UTC. */
  ms: number;
  /** Fraction digits beyond milliseconds (`"003"` for `.000003`), kept for the ISO text. */
  subMs: string;
  /** Index just after the time in the input. */
  end: number;
}

/** ISO text of a parsed time, keeping sub-millisecond digits. */
export function isoFromParsed(t: ParsedTime): string {
  const iso = isoFromMs(t.ms);
  return t.subMs === '' ? iso : iso.slice(0, -1) + t.subMs + 'Z';
}

/**
 * RFC 3339 / RFC 5424 TIMESTAMP at `i`: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`. A lower-case
 * `t`/`z` and a missing offset (read in `defaultZone`) are accepted, as relays produce them.
 */
export function parseRfc3339(s: string, i: number, defaultZone = 'UTC'): ParsedTime | null {
  const y = digits(s, i, 4);
  if (y < 0 || s.charCodeAt(i + 4) !== 45 /* - */) return null;
  const mo = digits(s, i + 5, 2);
  if (mo < 0 || s.charCodeAt(i + 7) !== 45) return null;
  const d = digits(s, i + 8, 2);
  const t = s.charCodeAt(i + 10);
  if (d < 0 || (t !== 84 /* T */ && t !== 116 /* t */ && t !== 32)) return null;
  const h = digits(s, i + 11, 2);
  if (h < 0 || s.charCodeAt(i + 13) !== 58 /* : */) return null;
  const mi = digits(s, i + 14, 2);
  if (mi < 0 || s.charCodeAt(i + 16) !== 58) return null;
  const sec = digits(s, i + 17, 2);
  if (sec < 0) return null;
  if (!validDate(y, mo - 1, d, h, mi, sec)) return null;
  let p = i + 19;
  let ms = 0;
  let subMs = '';
  if (s.charCodeAt(p) === 46 /* . */) {
    p++;
    const start = p;
    while (digit(s, p) >= 0) p++;
    const n = p - start;
    if (n === 0 || n > 9) return null;
    ms = fractionMs(s, start, n);
    subMs = n > 3 ? s.slice(start + 3, p) : '';
  }
  const local = utcMs(y, mo - 1, d, h, mi, sec === 60 ? 59 : sec, ms);
  const z = s.charCodeAt(p);
  if (z === 90 /* Z */ || z === 122 /* z */) {
    return { ms: local, subMs, end: p + 1 };
  }
  if (z === 43 /* + */ || z === 45 /* - */) {
    const oh = digits(s, p + 1, 2);
    let om = 0;
    let end = p + 3;
    if (oh < 0 || oh > 23) return null;
    if (s.charCodeAt(p + 3) === 58) {
      om = digits(s, p + 4, 2);
      end = p + 6;
    } else if (digit(s, p + 3) >= 0) {
      om = digits(s, p + 3, 2);
      end = p + 5;
    }
    if (om < 0 || om > 59) return null;
    const off = (oh * 60 + om) * 60_000 * (z === 43 ? 1 : -1);
    return { ms: local - off, subMs, end };
  }
  // No offset: local time in the default zone.
  const ms2 = zonedToUtc(local, defaultZone);
  return ms2 === null ? null : { ms: ms2, subMs, end: p };
}

/**
 * Formatters of the zones Intl knows, by lower-cased name (zone names are
 * case-insensitive, so this holds at most the IANA set), and the names it refused (from
 * input: bounded, emptied when full).
 */
const zoneFormatters = new Map<string, Intl.DateTimeFormat>();
const notZones = new Set<string>();

function zoneFormatter(zone: string): Intl.DateTimeFormat | null {
  const key = zone.toLowerCase();
  const f = zoneFormatters.get(key);
  if (f !== undefined) return f;
  if (notZones.has(key)) return null;
  try {
    const made = new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      hourCycle: 'h23',
      // With the era, year 0 (1 BC) is told apart from year 1: zoneOffset reads it.
      era: 'short',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    zoneFormatters.set(key, made);
    return made;
  } catch {
    if (notZones.size >= 1024) notZones.clear();
    notZones.add(key);
    return null;
  }
}

/** True for a zone name Intl knows (IANA names such as `Europe/Moscow`, and `UTC`). */
export function isKnownZone(zone: string): boolean {
  return zoneFormatter(zone) !== null;
}

/**
 * Offsets worked out per zone and 15-minute stretch of UTC time (a few hundred per zone at
 * most, emptied when full): offsets change only at transitions, and those fall on quarter
 * hours of UTC (every zone's offset is a whole number of quarter hours), so one
 * `formatToParts` serves every event of the stretch.
 */
const QUARTER_HOUR_MS = 900_000;
const offsetsByZone = new Map<string, Map<number, number>>();

/** Offset of `zone` from UTC at instant `utcMs`, in ms, or null for an unknown zone. */
function zoneOffset(utcMs: number, zone: string): number | null {
  if (zone === 'UTC' || zone === 'Etc/UTC' || zone === 'GMT') return 0;
  const quarter = Math.floor(utcMs / QUARTER_HOUR_MS);
  const known = offsetsByZone.get(zone);
  const cached = known?.get(quarter);
  if (cached !== undefined) return cached;
  const f = zoneFormatter(zone);
  if (f === null) return null;
  const parts = f.formatToParts(new Date(utcMs));
  let y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0;
  let bc = false;
  for (const p of parts) {
    switch (p.type) {
      case 'era': bc = p.value === 'BC'; break;
      case 'year': y = Number(p.value); break;
      case 'month': mo = Number(p.value); break;
      case 'day': d = Number(p.value); break;
      case 'hour': h = Number(p.value); break;
      case 'minute': mi = Number(p.value); break;
      case 'second': sec = Number(p.value); break;
      default: break;
    }
  }
  // Years before 1 come as `1 BC` (year 0), `2 BC` (year -1), ...
  if (bc) y = 1 - y;
  // Date.UTC reads years 0-99 as 1900-1999: setUTCFullYear takes them as they are.
  const wall = y >= 100 ? Date.UTC(y, mo - 1, d, h, mi, sec) : new Date(0).setUTCFullYear(y, mo - 1, d) + ((h * 60 + mi) * 60 + sec) * 1000;
  const offsetMs = wall - Math.floor(utcMs / 1000) * 1000;
  if (known !== undefined) {
    if (known.size >= 512) known.clear();
    known.set(quarter, offsetMs);
  } else if (zoneFormatters.has(zone.toLowerCase())) {
    // Only zones that resolve get an entry (bounded: names may differ in case only).
    if (offsetsByZone.size >= 1024) offsetsByZone.clear();
    offsetsByZone.set(zone, new Map([[quarter, offsetMs]]));
  }
  return offsetMs;
}

/**
 * Wall-clock time `localMs` (fields read as if UTC) in `zone` → UTC ms. A time repeated
 * when the clocks go back is read with one of its two offsets; a time skipped when they go
 * forward (02:30 on a spring-forward night in New York) is moved forward by the gap, as if
 * read with the offset before it (03:30 EDT): the usual rule (java.time, Temporal's
 * "compatible").
 */
export function zonedToUtc(localMs: number, zone: string): number | null {
  const off1 = zoneOffset(localMs, zone);
  if (off1 === null) return null;
  if (off1 === 0 && (zone === 'UTC' || zone === 'GMT' || zone === 'Etc/UTC')) return localMs;
  const guess = localMs - off1;
  const off2 = zoneOffset(guess, zone);
  if (off2 === null) return null;
  const utc = localMs - off2;
  if (off2 === off1) return utc;
  // The offset changes near this time: `utc` is right when its own offset is off2; else
  // the local time is in a gap, between the smaller offset (before it) and the larger.
  const off3 = zoneOffset(utc, zone);
  return off3 === null || off3 === off2 ? utc : localMs - Math.min(off2, off3);
}

function isBlank(c: number): boolean {
  return c === 32 || c === 9;
}

/** Zone names without a slash that a time stamp may carry (IANA's old names). */
const ZONE_WORDS = new Set(['EST', 'MST', 'HST', 'EST5EDT', 'CST6CDT', 'MST7MDT', 'PST8PDT', 'CET', 'EET', 'MET', 'WET', 'UCT', 'Zulu', 'Universal', 'Greenwich']);

/**
 * True when `tok` starts with the upper-case ASCII word `upper`, in any letter case (`utc`,
 * `Utc`) when `anyCase`, without allocating.
 */
function startsWithWord(tok: string, upper: string, anyCase: boolean): boolean {
  if (!anyCase) return tok.startsWith(upper);
  if (tok.length < upper.length) return false;
  for (let k = 0; k < upper.length; k++) {
    const c = tok.charCodeAt(k);
    if ((c >= 97 && c <= 122 ? c - 32 : c) !== upper.charCodeAt(k)) return false;
  }
  return true;
}

/**
 * A zone token at `i` (the CEF spec's `zzz`): `Z`, `UTC`, `GMT`, `UT`, `GMT±hh[:mm]`,
 * `±hh[:mm]`, `±hhmm`, or an IANA name. With `anyCase` (a CEF time value, which must end
 * with it) the words in any letter case, as the month is; in an RFC 3164 header the word
 * after the time may be a host name (`z`, `utc-05`), so only as written. Returns the offset
 * resolver and the end index, or null.
 */
function readZone(s: string, i: number, anyCase: boolean): { zone: string | null; offsetMs: number; end: number } | null {
  let e = i;
  while (e < s.length && !isBlank(s.charCodeAt(e))) e++;
  if (e === i) return null;
  let tok = s.slice(i, e);
  const n = tok.length;
  if (n <= 3 && (n === 1 ? startsWithWord(tok, 'Z', anyCase) : n === 2 ? startsWithWord(tok, 'UT', anyCase) : startsWithWord(tok, 'UTC', anyCase) || startsWithWord(tok, 'GMT', anyCase))) {
    return { zone: null, offsetMs: 0, end: e };
  }
  if ((tok[3] === '+' || tok[3] === '-') && (startsWithWord(tok, 'GMT', anyCase) || startsWithWord(tok, 'UTC', anyCase))) tok = tok.slice(3);
  const c = tok.charCodeAt(0);
  if (c === 43 || c === 45) {
    const oh = digits(tok, 1, 2);
    let om = 0;
    if (oh < 0 || oh > 23) return null;
    if (tok.length === 6 && tok[3] === ':') om = digits(tok, 4, 2);
    else if (tok.length === 5) om = digits(tok, 3, 2);
    else if (tok.length !== 3) return null;
    if (om < 0 || om > 59) return null;
    return { zone: null, offsetMs: (oh * 60 + om) * 60_000 * (c === 43 ? 1 : -1), end: e };
  }
  // IANA names have a slash (Europe/Moscow), or are one of a handful of old names; any
  // other word after a time stamp (a syslog host name such as `Japan`) is not a zone.
  if ((tok.includes('/') || ZONE_WORDS.has(tok)) && isKnownZone(tok)) return { zone: tok, offsetMs: 0, end: e };
  return null;
}

export interface TextTimeOptions {
  /** Zone for times without one (default UTC). */
  defaultZone?: string;
  /** Reference time for year inference (default now). */
  nowMs?: number;
  /** Zone words (`utc`, `Gmt+3`) in any letter case: a CEF time value, not a syslog header (readZone). */
  anyCaseZone?: boolean;
}

/**
 * The CEF spec's text time formats, also the RFC 3164 TIMESTAMP:
 * `MMM dd[ yyyy] HH:mm:ss[.SSS][ zzz]` (English month, any case; the day may be
 * space-padded). Without a year: of the years before, of and after `nowMs`'s (UTC) year,
 * read in the time's zone, the latest that puts the time at most a day ahead of `nowMs`
 * (docs/event-format.md, "Times without a year"). The year after matters at New Year: a
 * `Jan  1 00:00:03` received at 23:59:58 UTC, or written in a zone ahead of UTC.
 */
export function parseTextTime(s: string, i: number, opts: TextTimeOptions = {}): ParsedTime | null {
  if (s.length < i + 15) return null;
  const mo = MONTHS[s.slice(i, i + 3).toLowerCase()];
  if (mo === undefined || s.charCodeAt(i + 3) !== 32) return null;
  let p = i + 4;
  if (s.charCodeAt(p) === 32) p++; // "May  6"
  let d = digit(s, p);
  if (d < 0) return null;
  p++;
  const d2 = digit(s, p);
  if (d2 >= 0) {
    d = d * 10 + d2;
    p++;
  }
  if (s.charCodeAt(p) !== 32) return null;
  p++;
  let year = -1;
  if (digit(s, p) >= 0 && digit(s, p + 3) >= 0 && s.charCodeAt(p + 4) === 32) {
    year = digits(s, p, 4);
    p += 5;
  }
  const h = digits(s, p, 2);
  if (h < 0 || s.charCodeAt(p + 2) !== 58) return null;
  const mi = digits(s, p + 3, 2);
  if (mi < 0 || s.charCodeAt(p + 5) !== 58) return null;
  const sec = digits(s, p + 6, 2);
  if (sec < 0) return null;
  p += 8;
  let ms = 0;
  let subMs = '';
  if (s.charCodeAt(p) === 46) {
    const start = ++p;
    while (digit(s, p) >= 0) p++;
    const n = p - start;
    if (n === 0 || n > 9) return null;
    ms = fractionMs(s, start, n);
    subMs = n > 3 ? s.slice(start + 3, p) : '';
  }
  let zone: string | null = opts.defaultZone ?? 'UTC';
  let offsetMs = 0;
  let end = p;
  // A zone token may follow (CEF time stamps; in syslog, if the next word is a zone).
  if (s.charCodeAt(p) === 32) {
    const z = readZone(s, p + 1, opts.anyCaseZone === true);
    if (z !== null) {
      zone = z.zone;
      offsetMs = z.offsetMs;
      end = z.end;
    }
  }
  const nowMs = opts.nowMs ?? Date.now();
  const toUtc = (y: number): number | null => {
    if (!validDate(y, mo, d, h, mi, sec)) return null;
    const local = utcMs(y, mo, d, h, mi, sec === 60 ? 59 : sec, ms);
    return zone === null ? local - offsetMs : zonedToUtc(local, zone);
  };
  let utc: number | null;
  if (year >= 0) {
    utc = toUtc(year);
  } else {
    const y = new Date(nowMs).getUTCFullYear();
    utc = null;
    // The next year's earliest time (Jan 1 00:00 at UTC+14) is within a day of `nowMs`
    // only from Dec 30 on; before that the year after is not a candidate (no work for it).
    if (nowMs >= utcMs(y, 11, 30, 0, 0, 0, 0)) {
      const next = toUtc(y + 1);
      if (next !== null && next <= nowMs + DAY_MS) utc = next;
    }
    if (utc === null) {
      utc = toUtc(y);
      if (utc === null || utc > nowMs + DAY_MS) utc = toUtc(y - 1);
    }
  }
  if (utc === null) return null;
  return { ms: utc, subMs, end };
}

/**
 * A CEF time stamp value (POLICY row 15): epoch milliseconds (digits, optionally with a
 * fraction) or a spec text format covering the whole value. Returns ISO 8601 UTC or null.
 */
export function cefTimeToIso(v: string, defaultZone: string, nowMs: number): string | null {
  const n = v.length;
  if (n === 0) return null;
  const c = v.charCodeAt(0);
  if (c >= 48 && c <= 57) {
    let i = 0;
    // The integer part as it is read (exact below 2^53; longer ones are refused below).
    let ms = 0;
    for (; i < n; i++) {
      const d = digit(v, i);
      if (d < 0) break;
      ms = ms * 10 + d;
    }
    let frac = '';
    if (i < n && v.charCodeAt(i) === 46) {
      const s = i + 1;
      i = s;
      while (i < n && digit(v, i) >= 0) i++;
      if (i === s) return null;
      frac = v.slice(s, i);
    }
    if (i !== n || i > 16 + (frac ? frac.length + 1 : 0)) return null;
    if (!Number.isSafeInteger(ms) || ms > 8.64e15) return null;
    const iso = isoFromMs(ms);
    return frac === '' ? iso : iso.slice(0, -1) + frac.slice(0, 6) + 'Z';
  }
  const t = parseTextTime(v, 0, { defaultZone, nowMs, anyCaseZone: true });
  if (t === null || t.end !== n) return null;
  return isoFromParsed(t);
}
