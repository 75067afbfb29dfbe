/**
 * The trust check as the KSC extension applies it (the rules themselves are in trust.ts):
 * connection names resolved to ids (the store's connections of the tenant, refreshed with
 * the extension's asset timer), and what was refused counted (`cefd_ksc_untrusted_events_total`)
 * and logged once per kind and listener.
 */
import type { EventOrigin } from '../event.js';
import { TrustPolicy, type TrustedSource } from './trust.js';

export type UntrustedKind = 'rule_trigger' | 'task_state';

interface Log {
  warn(obj: Record<string, unknown>, msg: string): void;
}

export class TrustGate {
  private policy: TrustPolicy;
  private idsByName = new Map<string, string>();
  /** Refusals by kind (read by the metric). */
  readonly untrusted = new Map<UntrustedKind, number>([
    ['rule_trigger', 0],
    ['task_state', 0],
  ]);
  private readonly logged = new Set<string>();
  /** The origin being evaluated and the connection ids that trust it (see `allowAsset`). */
  private current: { origin: EventOrigin; ids: ReadonlySet<string> } | undefined;

  private loadedAt = 0;

  constructor(
    sources: readonly TrustedSource[],
    private readonly log: Log,
    private readonly connectionOfAsset: (assetId: string) => string | undefined,
    /** The tenant's connections from the store (read again when a trusted name is not known yet). */
    private readonly loadConnections: () => readonly { id: string; name: string }[],
  ) {
    this.policy = new TrustPolicy(sources);
  }

  get empty(): boolean {
    return this.policy.empty;
  }

  setSources(sources: readonly TrustedSource[]): void {
    this.policy = new TrustPolicy(sources);
  }

  /** The tenant's connections, `name → id` (called when the store may have changed). */
  setConnections(conns: readonly { id: string; name: string }[]): void {
    this.idsByName = new Map(conns.map((c) => [c.name, c.id]));
    this.loadedAt = Date.now();
  }

  /** Ids of the connections that trust `origin` (empty: none). */
  connectionIds(origin: EventOrigin): ReadonlySet<string> {
    const names = this.policy.connectionsFor(origin);
    if (names.size === 0) return names;
    const ids = new Set<string>();
    for (const n of names) {
      let id = this.idsByName.get(n);
      // A connection added a moment ago (CLI, admin API): read the store again, at most
      // every 100 ms (a trusted_sources entry that names no connection would otherwise
      // read it for every event from its origin).
      if (id === undefined && Date.now() - this.loadedAt >= 100) {
        try {
          this.setConnections(this.loadConnections());
        } catch {
          this.loadedAt = Date.now();
        }
        id = this.idsByName.get(n);
      }
      if (id !== undefined) ids.add(id);
    }
    return ids;
  }

  /** Sets the origin the next `allowAsset` calls are about (synchronous use in the tap). */
  begin(origin: EventOrigin): void {
    this.current = { origin, ids: this.connectionIds(origin) };
  }

  /**
   * Response rules ask: may this event act on this asset? The asset's connection must
   * trust the origin (an unknown asset passes when some connection trusts it).
   */
  readonly allowAsset = (assetId: string): boolean => {
    const c = this.current;
    if (c === undefined) return false;
    if (c.ids.size > 0) {
      const conn = this.connectionOfAsset(assetId);
      // An asset the store does not know starts nothing (the start fails as not found, and
      // is counted as such); one of another connection must be trusted by that connection.
      if (conn === undefined || c.ids.has(conn)) return true;
    }
    this.refused('rule_trigger', c.origin);
    return false;
  };

  /** `n` events of one origin (a batch from a decode worker) refused. */
  refused(kind: UntrustedKind, origin: EventOrigin, n = 1): void {
    this.untrusted.set(kind, (this.untrusted.get(kind) ?? 0) + n);
    const key = `${kind}\0${origin.listener}`;
    if (this.logged.has(key)) return;
    this.logged.add(key);
    const what = kind === 'rule_trigger' ? 'would have triggered a response rule' : 'would have updated KSC task runs';
    this.log.warn(
      { code: 'ksc_untrusted_origin', kind, listener: origin.listener, peer: origin.peer, ...(origin.tlsFingerprint !== undefined ? { fingerprint: origin.tlsFingerprint } : {}) },
      `an event on listener ${origin.listener} from ${origin.peer} ${what}, but no KSC connection trusts that origin (ksc.trusted_sources): collected, not acted on; further ones from this listener are only counted (cefd_ksc_untrusted_events_total)`,
    );
  }
}
