/**
 * Event enrichment with asset references (`event.assets = { source?, destination?, device? }`,
 * each a cefd asset id) against the imported, active assets. The matching itself is pure
 * and lives in asset-index.ts (the decode workers run it on a snapshot); this file keeps the
 * index in step with the KSC store on the main thread.
 *
 * The index is rebuilt when the store changed (checked at most every `checkEveryMs`, through
 * `PRAGMA data_version`, so a CLI sync in another process is seen too).
 */
import type { CefdEvent } from '../event.js';
import type { KscStore } from './store.js';
import { buildSnapshot, EMPTY_SNAPSHOT, isKscEvent, lookupAsset, refsOf, type AssetRefs, type AssetSnapshot } from './asset-index.js';

export { isKscEvent, type AssetRefs };

export class AssetIndex {
  private snap: AssetSnapshot = EMPTY_SNAPSHOT;
  private stamp: string | undefined;
  private lastCheck = 0;
  /** Number of rebuilds (for tests and metrics). */
  rebuilds = 0;

  constructor(private readonly store: KscStore, private readonly o: { checkEveryMs?: number } = {}) {}

  /** Rebuilds the index if the store changed (or always with `force`); true when it was rebuilt. */
  refresh(force = false): boolean {
    const now = Date.now();
    if (!force && now - this.lastCheck < (this.o.checkEveryMs ?? 1000) && this.stamp !== undefined) return false;
    this.lastCheck = now;
    const stamp = this.store.changeStamp();
    if (!force && stamp === this.stamp) return false;
    this.stamp = stamp;
    this.snap = buildSnapshot(this.store.listAssets(), this.snap.version + 1);
    this.rebuilds++;
    return true;
  }

  /** The current snapshot (refreshes first): what the decode workers match against. */
  snapshot(): AssetSnapshot {
    this.refresh();
    return this.snap;
  }

  /** Whether any active asset is known (refreshes first): lets a hot path skip enrichment cheaply. */
  hasAssets(): boolean {
    this.refresh();
    return this.snap.count > 0;
  }

  /**
   * The asset id for a host name, MAC and/or IP in `tenant` (all tenants when undefined). A
   * name match wins; among several, the one with the MAC, else the one with the IP; without
   * a name match, the MAC decides, then the IP (a MAC names one adapter, an IP is reused).
   */
  lookup(q: { host?: string | undefined; ip?: string | undefined; mac?: string | undefined }, tenant?: string): string | undefined {
    this.refresh();
    return lookupAsset(this.snap, q, tenant);
  }
}

/** Computes the asset references of an event (does not change it). */
export function assetRefsOf(ev: CefdEvent, index: AssetIndex, tenant?: string): AssetRefs {
  return refsOf(ev, (q) => index.lookup(q, tenant));
}

/** Sets `event.assets` when any reference was found; returns the references. */
export function enrichEvent(ev: CefdEvent, index: AssetIndex, tenant?: string): AssetRefs {
  const refs = assetRefsOf(ev, index, tenant);
  if (refs.source !== undefined || refs.destination !== undefined || refs.device !== undefined) ev['assets'] = refs;
  return refs;
}
