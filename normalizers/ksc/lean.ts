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
import { normalizeKsc } from './read.js';
import type { KscObject } from './types.js';

/** The lean `ksc` object: the derived fields of `full`. */
export interface KscLean {
  category: KscObject['category'];
  severity: KscObject['severity'];
  task: { oldState?: string; newState?: string } | undefined;
  threat: { action?: string } | undefined;
  attack: KscObject['attack'];
  messageLines: string[] | undefined;
}

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
