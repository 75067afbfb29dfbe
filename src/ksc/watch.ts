/**
 * What the KSC integration does to each event, where the event is decoded (a decode worker,
 * or the main thread when there are none): enrichment with asset references from a
 * snapshot of the asset index (asset-index.ts), the response rules' filters, and picking
 * out task-state events. No I/O here: what needs the KSC store or a KSC server (task runs,
 * task starts) goes back to the main thread as findings, a few small fields per event, and
 * the extension (extension.ts) acts on them there.
 *
 * The spec (assets, rules, tenant) is plain data, versioned, sent to every worker when it
 * changes (a rule reload, an asset import).
 */
import { compileFilter, compilePath, type Filter } from '../filter/filter.js';
import type { CefdEvent, EventOrigin } from '../event.js';
import { enrichFromSnapshot, type AssetSnapshot } from './asset-index.js';
import { taskStateFromEvent, type TaskStateEvent } from './tasks.js';

export interface KscWatchRule {
  name: string;
  /** Filter text (the language of output routes); empty or undefined: every event. */
  filter?: string | undefined;
  assetField: 'source' | 'destination' | 'device';
}

export interface KscWatchSpec {
  /** Grows with every change; findings carry the version they were made under. */
  version: number;
  tenant: string;
  assets: AssetSnapshot;
  rules: readonly KscWatchRule[];
}

/** What a batch of events gave; plain data (posted from a worker). */
export interface KscFindings {
  version: number;
  /** Events that got at least one asset reference. */
  enriched: number;
  /** Task-state events (only while assets are known: no run can be about an unknown host). */
  taskStates: TaskStateEvent[];
  /** Task-state events without a readable state. */
  taskStatesIgnored: number;
  /** Events that passed a rule's filter and carried its asset reference (`eventId`: the event's id, keys its start). */
  triggers: { rule: string; assetId: string; eventId?: string }[];
  /** rule → events that passed its filter without the asset reference. */
  noAsset: [string, number][];
}

/**
 * Receives findings on the main thread with the origin of the frames they were made in
 * (one source per batch); rule triggers and task states are checked against it there
 * (trust.ts).
 */
export type FindingsHandler = (origin: EventOrigin, findings: KscFindings) => void;

interface CompiledRule {
  name: string;
  filter: Filter | undefined;
  asset: (ev: unknown) => unknown;
  noAsset: number;
}

export class KscWatch {
  private readonly rules: CompiledRule[];
  private f: KscFindings;

  constructor(readonly spec: KscWatchSpec) {
    this.rules = spec.rules.map((r) => {
      const path = compilePath(`assets.${r.assetField}`);
      return { name: r.name, filter: r.filter !== undefined && r.filter.trim() !== '' ? compileFilter(r.filter) : undefined, asset: (ev) => path.get(ev), noAsset: 0 };
    });
    this.f = this.empty();
  }

  private empty(): KscFindings {
    return { version: this.spec.version, enriched: 0, taskStates: [], taskStatesIgnored: 0, triggers: [], noAsset: [] };
  }

  /** Runs on every event after the normalizers and before routing (it may set `assets`). */
  see(ev: CefdEvent): void {
    const assets = this.spec.assets;
    if (assets.count > 0 && enrichFromSnapshot(ev, assets, this.spec.tenant)) this.f.enriched++;
    const ksc = ev.ksc;
    if (ksc !== null && typeof ksc === 'object' && (ksc as { category?: unknown }).category === 'task_state') {
      // Without assets no task run can be about this event's host. The answers to task
      // starts never trigger response rules: no feedback loop.
      if (assets.count === 0) return;
      const ts = taskStateFromEvent(ev);
      if (ts === null) this.f.taskStatesIgnored++;
      else {
        if (ev.id !== undefined) ts.eventId = ev.id;
        this.f.taskStates.push(ts);
      }
      return;
    }
    const rules = this.rules;
    for (let i = 0; i < rules.length; i++) {
      const r = rules[i]!;
      if (r.filter !== undefined && !r.filter.test(ev)) continue;
      const assetId = r.asset(ev);
      if (typeof assetId !== 'string' || assetId === '') r.noAsset++;
      else this.f.triggers.push(ev.id !== undefined ? { rule: r.name, assetId, eventId: ev.id } : { rule: r.name, assetId });
    }
  }

  /** The findings since the last call, or undefined when there are none. */
  take(): KscFindings | undefined {
    for (const r of this.rules) {
      if (r.noAsset > 0) this.f.noAsset.push([r.name, r.noAsset]);
      r.noAsset = 0;
    }
    const f = this.f;
    if (f.enriched === 0 && f.taskStates.length === 0 && f.taskStatesIgnored === 0 && f.triggers.length === 0 && f.noAsset.length === 0) return undefined;
    this.f = this.empty();
    return f;
  }
}
