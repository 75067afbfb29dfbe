/**
 * The `native` encoder: cefd's event as JSON (docs/event-format.md), and the schema 1
 * fields an `event` section (src/config/schema.ts) can ask for back.
 *
 * The event carries each value once. Schema 1 repeated values in three places:
 * `cef.typed` had every converted value (IPs as the same text, `rt` as `timestamp`),
 * custom fields were two extensions each (`deviceCustomString3` + `...Label`), and the
 * `ksc` object copied KSC's values (`task.name`, `host`, `labels`, ...). `expandEvent`
 * rebuilds any of them, from the event alone.
 */
import type { CefRecord, CefdEvent } from '../../event.js';
import { allExtensions, allTyped } from '../cef/view.js';
import { kscView } from '../../../normalizers/ksc/lean.js';

/** What the `event` section says (docs/event-format.md "Options"). */
export interface EventOptions {
  /** `changed` (default): `cef.typed` holds only values that differ from the text; `all`: every converted value. */
  typed?: 'changed' | 'all';
  /** `folded` (default): `cef.custom["cs3:TaskName"]`; `pairs`: both keys in `cef.extensions` under full names. */
  custom_fields?: 'folded' | 'pairs';
  /** `lean` (default): the derived KSC fields; `full`: the whole object, with `labels`. */
  ksc?: 'lean' | 'full';
  /** `changed` (default): `syslog.timestamp` only when it differs from `timestamp`; `always`: as schema 1 (absent when the header had none). */
  syslog_timestamp?: 'changed' | 'always';
}

export const EVENT_DEFAULTS: Required<EventOptions> = { typed: 'changed', custom_fields: 'folded', ksc: 'lean', syslog_timestamp: 'changed' };

/** Everything schema 1 carried (what filters fall back to). */
export const EVENT_ALL: Required<EventOptions> = { typed: 'all', custom_fields: 'pairs', ksc: 'full', syslog_timestamp: 'always' };

export function isDefaultEventOptions(o: EventOptions | undefined): boolean {
  return o === undefined || ((o.typed ?? 'changed') === 'changed' && (o.custom_fields ?? 'folded') === 'folded' && (o.ksc ?? 'lean') === 'lean' && (o.syslog_timestamp ?? 'changed') === 'changed');
}

/** Keys with a `cef_bad_field` warning: their value did not convert. */
function badFields(event: CefdEvent): Set<string> {
  const s = new Set<string>();
  for (const w of event.warnings ?? []) if (w.code === 'cef_bad_field' && w.key !== undefined) s.add(w.key);
  return s;
}

/**
 * The event with the fields `opts` asks for added back (a new object; `event` is not
 * changed). With the defaults it is `event` itself.
 */
export function expandEvent(event: CefdEvent, opts: EventOptions): CefdEvent {
  if (isDefaultEventOptions(opts)) return event;
  const out: CefdEvent = { ...event };
  const cef = event.cef;
  if (cef !== undefined && (opts.typed === 'all' || opts.custom_fields === 'pairs')) {
    const c: CefRecord = { ...cef };
    const all = allExtensions(cef);
    if (opts.custom_fields === 'pairs') {
      c.extensions = all;
      c.custom = undefined;
    }
    if (opts.typed === 'all') c.typed = allTyped(cef, event.timestamp, badFields(event), all);
    out.cef = c;
  }
  const sys = event.syslog;
  if (opts.syslog_timestamp === 'always' && sys !== undefined) {
    const ts = sys.timestamp;
    out.syslog = { ...sys, timestamp: ts === undefined ? event.timestamp : ts === null ? undefined : ts };
  }
  if (opts.ksc === 'full' && event.ksc !== undefined) {
    const full = kscView(event);
    if (full !== null) out.ksc = full;
  }
  return out;
}

/** The schema 1 view of an event, one per event object (filters read several paths of it). */
const views = new WeakMap<object, CefdEvent>();

export function schema1View(event: CefdEvent): CefdEvent {
  let v = views.get(event);
  if (v === undefined) {
    v = expandEvent(event, EVENT_ALL);
    views.set(event, v);
  }
  return v;
}

/** What the native encoder writes as JSON for these options: the event itself with the defaults. */
export function nativeValue(opts?: EventOptions): ((event: CefdEvent) => CefdEvent) | undefined {
  if (isDefaultEventOptions(opts)) return undefined;
  const o = opts!;
  return (event) => expandEvent(event, o);
}

/** The native encoder's function for these options. */
export function nativeEncoder(opts?: EventOptions): (event: CefdEvent) => string {
  const value = nativeValue(opts);
  return value === undefined ? (event) => JSON.stringify(event) : (event) => JSON.stringify(value(event));
}
