/**
 * Event enrichment with asset references, as KUMA's SourceAssetID / DestinationAssetID /
 * DeviceAssetID: `event.assets = { source?, destination?, device? }`, each a cefd asset id,
 * matched by host name, then IP address, against the imported (active) assets.
 *
 * - source: CEF `shost` / `src`; destination: `dhost` / `dst`; device: `dvchost` / `dvc`.
 * - For KSC events (CEF vendor KasperskyLab + product SecurityCenter, or an RFC 5424
 *   `event@23668` element) the managed device is the device asset: `dhost`/`dst`, or
 *   `hdn`/`hip` (../shared/ksc/FORMAT.md §0.7: the peer is the KSC server, not the device).
 *
 * Lookups hit an in-memory index; it is rebuilt when the store changed (checked at most
 * every `checkEveryMs`, through `PRAGMA data_version`, so a CLI sync in another process is
 * seen too).
 */
import type { CefdEvent } from '../event.js';
import type { Asset, KscStore } from './store.js';

export interface AssetRefs {
  source?: string;
  destination?: string;
  device?: string;
}

interface TenantIndex {
  byName: Map<string, string[]>;
  byIp: Map<string, string[]>;
  ipsOf: Map<string, Set<string>>;
}

const ALL = '\0all';

function nameKeys(a: Asset): string[] {
  const keys = new Set<string>();
  const add = (s: string | null): void => {
    if (s === null || s === '') return;
    const l = s.trim().toLowerCase().replace(/\.$/, '');
    if (l === '') return;
    keys.add(l);
    const short = l.split('.')[0]!;
    if (short !== '' && !/^\d+$/.test(short)) keys.add(short);
  };
  add(a.displayName);
  add(a.fqdn);
  return [...keys];
}

export class AssetIndex {
  private tenants = new Map<string, TenantIndex>();
  private stamp: string | undefined;
  private lastCheck = 0;
  /** Number of rebuilds (for tests and metrics). */
  rebuilds = 0;
  /** Active assets in the index (all tenants). */
  private count = 0;

  constructor(private readonly store: KscStore, private readonly o: { checkEveryMs?: number } = {}) {}

  /** Rebuilds the index if the store changed (or always with `force`). */
  refresh(force = false): void {
    const now = Date.now();
    if (!force && now - this.lastCheck < (this.o.checkEveryMs ?? 1000) && this.stamp !== undefined) return;
    this.lastCheck = now;
    const stamp = this.store.changeStamp();
    if (!force && stamp === this.stamp) return;
    this.stamp = stamp;
    const next = new Map<string, TenantIndex>();
    const get = (t: string): TenantIndex => {
      let x = next.get(t);
      if (x === undefined) {
        x = { byName: new Map(), byIp: new Map(), ipsOf: new Map() };
        next.set(t, x);
      }
      return x;
    };
    // Newest visible first: ambiguous names/IPs resolve to the most recently seen host.
    const assets = this.store.listAssets().sort((a, b) => (b.lastVisible ?? '').localeCompare(a.lastVisible ?? ''));
    for (const a of assets) {
      for (const idx of [get(a.tenant), get(ALL)]) {
        for (const k of nameKeys(a)) push(idx.byName, k, a.id);
        for (const ip of a.ips) push(idx.byIp, ip, a.id);
        idx.ipsOf.set(a.id, new Set(a.ips));
      }
    }
    this.tenants = next;
    this.count = assets.length;
    this.rebuilds++;
  }

  /** Whether any active asset is known (refreshes first): lets a hot path skip enrichment cheaply. */
  hasAssets(): boolean {
    this.refresh();
    return this.count > 0;
  }

  /**
   * The asset id for a host name and/or IP in `tenant` (all tenants when undefined). A name
   * match wins; among several, the one with the IP; without a name match, the IP decides.
   */
  lookup(q: { host?: string | undefined; ip?: string | undefined }, tenant?: string): string | undefined {
    this.refresh();
    const idx = this.tenants.get(tenant ?? ALL);
    if (idx === undefined) return undefined;
    const host = q.host?.trim().toLowerCase().replace(/\.$/, '');
    const ip = q.ip?.trim();
    if (host !== undefined && host !== '') {
      const ids = idx.byName.get(host) ?? (host.includes('.') && !/^[\d.]+$/.test(host) ? idx.byName.get(host.split('.')[0]!) : undefined);
      if (ids !== undefined && ids.length > 0) {
        if (ids.length > 1 && ip !== undefined) {
          const withIp = ids.find((id) => idx.ipsOf.get(id)?.has(ip));
          if (withIp !== undefined) return withIp;
        }
        return ids[0];
      }
    }
    if (ip !== undefined && ip !== '') return idx.byIp.get(ip)?.[0];
    return undefined;
  }
}

function push(m: Map<string, string[]>, k: string, v: string): void {
  const a = m.get(k);
  if (a === undefined) m.set(k, [v]);
  else if (!a.includes(v)) a.push(v);
}

/** True for events exported by KSC (CEF SecurityCenter, or RFC 5424 with `event@23668`). */
export function isKscEvent(ev: CefdEvent): boolean {
  if (ev.cef !== undefined) return ev.cef.deviceVendor === 'KasperskyLab' && ev.cef.deviceProduct === 'SecurityCenter';
  return ev.syslog?.structuredData?.['event@23668'] !== undefined;
}

/** Computes the asset references of an event (does not change it). */
export function assetRefsOf(ev: CefdEvent, index: AssetIndex, tenant?: string): AssetRefs {
  const x = ev.cef?.extensions ?? {};
  const ty = ev.cef?.typed ?? {};
  const ipOf = (k: string): string | undefined => (typeof ty[k] === 'string' ? (ty[k] as string) : x[k]);
  const refs: AssetRefs = {};
  const src = index.lookup({ host: x['sourceHostName'], ip: ipOf('sourceAddress') }, tenant);
  if (src !== undefined) refs.source = src;
  const dst = index.lookup({ host: x['destinationHostName'], ip: ipOf('destinationAddress') }, tenant);
  if (dst !== undefined) refs.destination = dst;
  let dev: string | undefined;
  if (isKscEvent(ev)) {
    const sd = ev.syslog?.structuredData?.['event@23668'];
    dev = ev.cef !== undefined ? dst : index.lookup({ host: sd?.['hdn'] ?? ev.syslog?.hostname, ip: sd?.['hip'] }, tenant);
  } else {
    dev = index.lookup({ host: x['deviceHostName'], ip: ipOf('deviceAddress') }, tenant);
  }
  if (dev !== undefined) refs.device = dev;
  return refs;
}

/** Sets `event.assets` when any reference was found; returns the references. */
export function enrichEvent(ev: CefdEvent, index: AssetIndex, tenant?: string): AssetRefs {
  const refs = assetRefsOf(ev, index, tenant);
  if (refs.source !== undefined || refs.destination !== undefined || refs.device !== undefined) ev['assets'] = refs;
  return refs;
}
