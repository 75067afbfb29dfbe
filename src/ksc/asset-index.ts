/**
 * The asset index that enrichment matches events against, as plain data: built on the main
 * thread from the KSC store (enrich.ts), sent to the decode workers as a versioned snapshot
 * (watch.ts), and matched there. No I/O and no SQLite here, so a worker can load it.
 *
 * Matching: by host name (full, or the short name before the first dot), then by MAC
 * address, then by IP address; among several assets with the name, the one with the MAC,
 * else the one with the IP; ambiguous names and addresses resolve to the most recently seen
 * host. A new way to match is a new map in `TenantSnapshot` filled in `buildSnapshot` and
 * read in `lookupAsset`.
 */
import type { CefdEvent } from '../event.js';
import { normalizeMac } from './match.js';

/** What the index needs of an asset (a subset of store.ts's Asset). */
export interface IndexedAsset {
  id: string;
  tenant: string;
  displayName: string | null;
  fqdn: string | null;
  ips: readonly string[];
  /** `aa:bb:cc:dd:ee:ff` (match.ts normalizeMac). */
  macs: readonly string[];
  lastVisible: string | null;
}

/** One tenant's maps (structured-clone friendly: Maps and arrays of strings). */
export interface TenantSnapshot {
  byName: Map<string, string[]>;
  byIp: Map<string, string[]>;
  byMac: Map<string, string[]>;
  /** Asset id → its addresses (to choose among assets with the same name). */
  ipsOf: Map<string, string[]>;
  macsOf: Map<string, string[]>;
}

export interface AssetSnapshot {
  /** Grows with every rebuild: a worker keeps the highest it has seen. */
  version: number;
  /** Active assets in the snapshot (all tenants). */
  count: number;
  /** Per tenant, and under ALL_TENANTS every tenant together. */
  tenants: Map<string, TenantSnapshot>;
}

export interface AssetRefs {
  source?: string;
  destination?: string;
  device?: string;
}

export const ALL_TENANTS = '\0all';

export const EMPTY_SNAPSHOT: AssetSnapshot = { version: 0, count: 0, tenants: new Map() };

function normName(s: string): string {
  return s.trim().toLowerCase().replace(/\.$/, '');
}

function nameKeys(a: IndexedAsset): string[] {
  const keys = new Set<string>();
  const add = (s: string | null): void => {
    if (s === null || s === '') return;
    const l = normName(s);
    if (l === '') return;
    keys.add(l);
    const short = l.split('.')[0]!;
    if (short !== '' && !/^\d+$/.test(short)) keys.add(short);
  };
  add(a.displayName);
  add(a.fqdn);
  return [...keys];
}

function push(m: Map<string, string[]>, k: string, v: string): void {
  const a = m.get(k);
  if (a === undefined) m.set(k, [v]);
  else if (!a.includes(v)) a.push(v);
}

/** Builds the snapshot of the active assets `assets`. */
export function buildSnapshot(assets: readonly IndexedAsset[], version: number): AssetSnapshot {
  const tenants = new Map<string, TenantSnapshot>();
  const get = (t: string): TenantSnapshot => {
    let x = tenants.get(t);
    if (x === undefined) {
      x = { byName: new Map(), byIp: new Map(), byMac: new Map(), ipsOf: new Map(), macsOf: new Map() };
      tenants.set(t, x);
    }
    return x;
  };
  // Newest visible first: ambiguous names/IPs resolve to the most recently seen host.
  const sorted = [...assets].sort((a, b) => (b.lastVisible ?? '').localeCompare(a.lastVisible ?? ''));
  for (const a of sorted) {
    for (const idx of [get(a.tenant), get(ALL_TENANTS)]) {
      for (const k of nameKeys(a)) push(idx.byName, k, a.id);
      for (const ip of a.ips) push(idx.byIp, ip, a.id);
      for (const mac of a.macs) push(idx.byMac, mac, a.id);
      idx.ipsOf.set(a.id, [...a.ips]);
      if (a.macs.length > 0) idx.macsOf.set(a.id, [...a.macs]);
    }
  }
  return { version, count: sorted.length, tenants };
}

/**
 * The asset id for a host name, MAC and/or IP in `tenant` (all tenants when undefined). A
 * name match wins; among several, the one with the MAC, else the one with the IP; without
 * a name match, the MAC decides, then the IP (a MAC names one adapter, an IP is reused).
 */
export function lookupAsset(snap: AssetSnapshot, q: AssetQuery, tenant?: string): string | undefined {
  const idx = snap.tenants.get(tenant ?? ALL_TENANTS);
  if (idx === undefined) return undefined;
  const host = q.host === undefined ? undefined : normName(q.host);
  const ip = q.ip?.trim();
  const mac = normalizeMac(q.mac) ?? undefined;
  if (host !== undefined && host !== '') {
    const ids = idx.byName.get(host) ?? (host.includes('.') && !/^[\d.]+$/.test(host) ? idx.byName.get(host.split('.')[0]!) : undefined);
    if (ids !== undefined && ids.length > 0) {
      if (ids.length > 1 && mac !== undefined) {
        const withMac = ids.find((id) => idx.macsOf.get(id)?.includes(mac));
        if (withMac !== undefined) return withMac;
      }
      if (ids.length > 1 && ip !== undefined) {
        const withIp = ids.find((id) => idx.ipsOf.get(id)?.includes(ip));
        if (withIp !== undefined) return withIp;
      }
      return ids[0];
    }
  }
  if (mac !== undefined) {
    const byMac = idx.byMac.get(mac);
    if (byMac !== undefined && byMac.length > 0) return byMac[0];
  }
  if (ip !== undefined && ip !== '') return idx.byIp.get(ip)?.[0];
  return undefined;
}

/** True for events exported by KSC (CEF SecurityCenter, or RFC 5424 with `event@23668`). */
export function isKscEvent(ev: CefdEvent): boolean {
  if (ev.cef !== undefined) return ev.cef.deviceVendor === 'KasperskyLab' && ev.cef.deviceProduct === 'SecurityCenter';
  return ev.syslog?.structuredData?.['event@23668'] !== undefined;
}

/** What an event says of one host. */
export interface AssetQuery {
  host?: string | undefined;
  ip?: string | undefined;
  mac?: string | undefined;
}

type Lookup = (q: AssetQuery) => string | undefined;

/**
 * The asset references of an event (does not change it), as KUMA's SourceAssetID /
 * DestinationAssetID / DeviceAssetID:
 * - source: CEF `shost` / `smac` / `src`; destination: `dhost` / `dmac` / `dst`; device:
 *   `dvchost` / `dvcmac` / `dvc` (MACs in any usual notation: match.ts normalizeMac);
 * - for KSC events the managed device is the device asset: `dhost`/`dst`, or `hdn`/`hip`
 *   (docs/reference/ksc-format.md §0.7: the peer is the KSC server, not the device).
 */
export function refsOf(ev: CefdEvent, lookup: Lookup): AssetRefs {
  const x = ev.cef?.extensions ?? {};
  const ty = ev.cef?.typed ?? {};
  const ipOf = (k: string): string | undefined => (typeof ty[k] === 'string' ? (ty[k] as string) : x[k]);
  const refs: AssetRefs = {};
  const src = lookup({ host: x['sourceHostName'], ip: ipOf('sourceAddress'), mac: x['sourceMacAddress'] });
  if (src !== undefined) refs.source = src;
  const dst = lookup({ host: x['destinationHostName'], ip: ipOf('destinationAddress'), mac: x['destinationMacAddress'] });
  if (dst !== undefined) refs.destination = dst;
  let dev: string | undefined;
  if (isKscEvent(ev)) {
    const sd = ev.syslog?.structuredData?.['event@23668'];
    dev = ev.cef !== undefined ? dst : lookup({ host: sd?.['hdn'] ?? ev.syslog?.hostname, ip: sd?.['hip'] });
  } else {
    dev = lookup({ host: x['deviceHostName'], ip: ipOf('deviceAddress'), mac: x['deviceMacAddress'] });
  }
  if (dev !== undefined) refs.device = dev;
  return refs;
}

/** Sets `event.assets` from the snapshot when any reference was found; true when it did. */
export function enrichFromSnapshot(ev: CefdEvent, snap: AssetSnapshot, tenant?: string): boolean {
  if (snap.count === 0) return false;
  const refs = refsOf(ev, (q) => lookupAsset(snap, q, tenant));
  if (refs.source === undefined && refs.destination === undefined && refs.device === undefined) return false;
  ev['assets'] = refs;
  return true;
}
