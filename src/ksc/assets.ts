/**
 * Asset import from KSC (../shared/ksc/OPEN-API.md §2.1-2.3, KUMA behaviour §6):
 * `HostGroup.FindHosts` over all hosts, paged through `ChunkAccessor`, then
 * `HostGroup.GetHostProducts` for each host with a Network Agent; each host is upserted as
 * an asset with a stable cefd id.
 *
 * Life cycle ("hosts not seen for 30 days are archived, then removed"):
 * - a host that KSC returns with `KLHST_WKS_LAST_VISIBLE` within `archiveAfterDays` is active;
 * - a host whose last visible time is older, or that the import no longer returns (deleted
 *   in KSC), is archived (kept, hidden from lists and enrichment, `status: archived`);
 * - an asset archived for more than `removeAfterDays` more days is removed.
 * A failed import archives nothing.
 */
import type { KscClient, KscHostProduct } from './client.js';
import { decodeIpLong, type Decoded } from './params.js';
import { redact, silentLogger, type KscLogger } from './secrets.js';
import type { AssetProduct, Connection, ImportedHost, KscStore, Platform } from './store.js';

export const HOST_FIELDS = [
  'KLHST_WKS_HOSTNAME',
  'KLHST_WKS_DN',
  'KLHST_WKS_FQDN',
  'KLHST_WKS_WINDOMAIN',
  'KLHST_WKS_IP_LONG',
  'KLHST_WKS_CONNECT_IP_LONG',
  'KLHST_WKS_OS_NAME',
  'KLHST_WKS_GROUPID',
  'KLHST_WKS_LAST_VISIBLE',
  'KLHST_WKS_STATUS',
  'name',
] as const;

/** KLHST_WKS_STATUS bit 0x4: Network Agent installed (OPEN-API.md §3.1). */
const STATUS_NAGENT = 0x4;
const DAY = 86_400_000;

/** Platform from the OS name, falling back to the installed products. */
export function platformOf(os: string | null, products: readonly { product: string }[] = []): Platform {
  if (os !== null && os !== '') {
    if (/windows/i.test(os)) return 'windows';
    if (/mac\s?os|os x|darwin/i.test(os)) return 'macos';
    if (/linux|ubuntu|debian|cent\s?os|red hat|rhel|suse|astra|alt |rosa|red ?os|fedora|alma|rocky|oracle/i.test(os)) return 'linux';
  }
  for (const p of products) {
    const t = productPlatform(p.product);
    if (t !== null) return t;
  }
  return 'other';
}

/**
 * The platform a Kaspersky product key runs on (null: any or unknown). Windows and Linux
 * tasks differ (KUMA docs): a task of product KES does not apply to a Linux host.
 */
export function productPlatform(product: string | null | undefined): Platform | null {
  if (product === null || product === undefined) return null;
  const p = product.toUpperCase();
  if (p === 'KESL' || p.startsWith('KESL') || p === 'KSVLA' || p === 'KLFSS') return 'linux';
  if (p === 'KESMAC' || p === 'KESM') return 'macos';
  if (p === 'KES' || p === 'WKS' || p === 'KAVFS' || p === 'KSWS' || p === 'WSEE' || p === 'FSEE') return 'windows';
  return null;
}

function s(v: Decoded | undefined): string | null {
  return typeof v === 'string' && v !== '' ? v : null;
}

/** Maps one FindHosts row to what the store keeps (products not included). */
export function hostFromRow(row: Record<string, Decoded>): Omit<ImportedHost, 'products' | 'platform'> | undefined {
  const id = s(row['KLHST_WKS_HOSTNAME']);
  if (id === null) return undefined;
  const ips: string[] = [];
  for (const k of ['KLHST_WKS_IP_LONG', 'KLHST_WKS_CONNECT_IP_LONG']) {
    const ip = decodeIpLong(row[k]);
    if (ip !== null && !ips.includes(ip)) ips.push(ip);
  }
  const status = row['KLHST_WKS_STATUS'];
  const gid = row['KLHST_WKS_GROUPID'];
  return {
    kscHostId: id,
    displayName: s(row['KLHST_WKS_DN']),
    fqdn: s(row['KLHST_WKS_FQDN'])?.toLowerCase() ?? null,
    domain: s(row['KLHST_WKS_WINDOMAIN']),
    ips,
    os: s(row['KLHST_WKS_OS_NAME']),
    groupId: typeof gid === 'number' ? gid : null,
    groupName: s(row['name']),
    nagent: typeof status === 'number' && (status & STATUS_NAGENT) !== 0,
    lastVisible: s(row['KLHST_WKS_LAST_VISIBLE']),
  };
}

export interface SyncOptions {
  /** Days without being visible before an asset is archived (default 30). */
  archiveAfterDays?: number;
  /** Days archived before an asset is removed (default 30). */
  removeAfterDays?: number;
  /** Read each host's Kaspersky products (GetHostProducts; default true). */
  products?: boolean;
  /** FindHosts page size (default 100). */
  chunkSize?: number;
  /** FindHosts filter (default "": every host). */
  filter?: string;
  logger?: KscLogger;
}

export interface SyncResult {
  connectionId: string;
  connection: string;
  tenant: string;
  ok: boolean;
  /** Hosts KSC returned. */
  hosts: number;
  created: number;
  updated: number;
  /** Assets newly archived by this sync. */
  archived: number;
  removed: number;
  /** Hosts whose products could not be read (their stored products were kept). */
  productErrors: number;
  durationMs: number;
  error?: string;
}

function productsOf(list: KscHostProduct[]): AssetProduct[] {
  return list.map((p) => ({
    product: p.product,
    version: p.version,
    ...(p.displayName !== undefined ? { displayName: p.displayName } : {}),
    ...(p.build !== undefined ? { build: p.build } : {}),
  }));
}

/** Imports the hosts of one connection. Never throws: a failure is `ok: false` with `error`. */
export async function syncConnectionAssets(store: KscStore, client: KscClient, conn: Connection, o: SyncOptions = {}): Promise<SyncResult> {
  const log = o.logger ?? silentLogger;
  const t0 = Date.now();
  const now = store.currentTime();
  const startedAt = now.toISOString();
  const archiveCutoff = now.getTime() - (o.archiveAfterDays ?? 30) * DAY;
  const res: SyncResult = { connectionId: conn.id, connection: conn.name, tenant: conn.tenant, ok: false, hosts: 0, created: 0, updated: 0, archived: 0, removed: 0, productErrors: 0, durationMs: 0 };
  try {
    for await (const page of client.findHostsPaged(o.filter ?? '', [...HOST_FIELDS], { chunkSize: o.chunkSize ?? 100 })) {
      const hosts: ImportedHost[] = [];
      for (const row of page) {
        const h = hostFromRow(row);
        if (h === undefined) continue;
        let products: AssetProduct[] | undefined = [];
        if (o.products !== false && h.nagent) {
          try {
            products = productsOf(await client.getHostProducts(h.kscHostId));
          } catch (e) {
            products = undefined;
            res.productErrors++;
            log.warn({ connection: conn.name, tenant: conn.tenant, host: h.displayName, err: (e as Error).message }, 'cannot read the products of a KSC host; keeping the stored ones');
          }
        }
        hosts.push({ ...h, products, platform: platformOf(h.os, products ?? []) });
      }
      store.db.transaction(() => {
        for (const h of hosts) {
          const archived = h.lastVisible !== null && Date.parse(h.lastVisible) < archiveCutoff;
          const r = store.upsertAsset(conn, h, archived);
          if (r.created) res.created++;
          else res.updated++;
          if (archived && !r.wasArchived) res.archived++;
        }
      })();
      res.hosts += hosts.length;
    }
    res.archived += store.archiveMissing(conn.id, startedAt);
    res.removed = store.removeArchivedBefore(conn.id, new Date(now.getTime() - (o.removeAfterDays ?? 30) * DAY).toISOString());
    res.ok = true;
    store.recordSync(conn.id, { ok: true, hosts: res.hosts });
    log.info({ connection: conn.name, tenant: conn.tenant, hosts: res.hosts, created: res.created, archived: res.archived, removed: res.removed }, 'KSC assets imported');
  } catch (e) {
    res.error = redact((e as Error).message);
    store.recordSync(conn.id, { ok: false, error: res.error });
    log.warn({ connection: conn.name, tenant: conn.tenant, code: (e as { code?: string }).code ?? 'error', err: res.error }, 'KSC asset import failed; the assets imported before stay');
  }
  res.durationMs = Date.now() - t0;
  return res;
}
