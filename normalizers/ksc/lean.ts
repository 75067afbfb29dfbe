/**
 * The `ksc` object an event carries by default, and the whole object on demand.
 *
 * The whole object (types.ts `KscObject`) names KSC's values (`task.name`, `host.ip`,
 * `threat.objectPath`, `labels`), but each of those is already in the event, in `cef` or
 * `syslog`. The event carries each value once (docs/event-format.md), so by default the
 * `ksc` object holds only what the normalizer derives: the category, the severity name,
 * the task states, the threat action, a network attack (its addresses converted from
 * KSC's decimal form) and, for the syslog format, the description split into lines.
 * The export format is not repeated either: it is the event's shape (`cef` present: `cef`;
 * a KSC `event@<n>` element in `syslog.structuredData`: `syslog`; else `syslog_nosd`).
 * `kscView` rebuilds the whole object from the event, for filters, the task-status code,
 * the encoders and the `event.ksc: full` option.
 */
import type { CefdEvent } from '../../src/event.js';
import { normalizeCefLean } from './cef-format.js';
import { isKscCef, normalizeKsc } from './read.js';
import type { KscLean, KscObject, KscWarning } from './types.js';

export type { KscLean };

export function leanKsc(full: KscObject): KscLean {
  const t = full.task;
  const action = full.threat?.action;
  return {
    category: full.category,
    severity: full.severity,
    task: t !== undefined && (t.oldState !== undefined || t.newState !== undefined) ? { oldState: t.oldState, newState: t.newState } : undefined,
    threat: action !== undefined ? { action } : undefined,
    attack: full.attack,
    messageLines: full.messageLines,
  };
}

/** The whole object is rebuilt once per event object (filters may ask for several paths). */
const views = new WeakMap<object, KscObject | null>();

/**
 * The whole `ksc` object of an event the ksc normalizer normalized (it carries `ksc`),
 * rebuilt from the event's `cef`/`syslog`; `event.ksc` itself when it is already whole
 * (`event.ksc: full`); null for an event without `ksc`.
 */
export function kscView(event: CefdEvent): KscObject | null {
  const k = event.ksc;
  if (k === null || typeof k !== 'object') return null;
  if ('labels' in (k as object)) return k as KscObject;
  let v = views.get(event);
  if (v === undefined) {
    v = normalizeKsc(event)?.ksc ?? null;
    views.set(event, v);
  }
  return v;
}

/**
 * `normalizeKsc` with the lean object in place of the whole one: what the normalizer
 * writes on the event. For CEF it is read directly (normalizeCefLean in cef-format.ts),
 * which spares the objects the lean form leaves out.
 */
export function normalizeKscLean(event: CefdEvent): { ksc: KscLean; warnings: KscWarning[] } | null {
  const cef = event.cef;
  if (cef !== undefined) {
    if (!isKscCef(cef)) return null;
    const warnings: KscWarning[] = [];
    return { ksc: normalizeCefLean(cef, warnings), warnings };
  }
  const r = normalizeKsc(event);
  return r === null ? null : { ksc: leanKsc(r.ksc), warnings: r.warnings };
}
