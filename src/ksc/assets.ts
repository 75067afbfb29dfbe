/**
 * Asset import from KSC (docs/reference/ksc-open-api.md §2.1-2.3, KUMA behaviour §6):
 * `HostGroup.FindHosts` over all hosts, every page read through `ChunkAccessor` and the
 * accessor released, then `HostGroup.GetHostProducts` for each host with a Network Agent;
 * each host is upserted as an asset with a stable cefd id.
 *
 * Life cycle ("hosts not seen for 30 days are archived, then removed"):
 * - a host that KSC returns with `KLHST_WKS_LAST_VISIBLE` within `archiveAfterDays` is active;
 * - a host whose last visible time is older, or that the import no longer returns (deleted
 *   in KSC), is archived (kept, hidden from lists and enrichment, `status: archived`);
 * - an asset archived for more than `removeAfterDays` more days is removed.
 * A failed import archives nothing.
 */
import type { KscClient, KscHostProduct } from './client.js';
import { KscPxgError } from './errors.js';
import { macFromBytes, mergeTarget } from './match.js';
import { decodeIpLong, type Decoded } from './params.js';
import { redact, silentLogger, type KscLogger } from './secrets.js';
import type { AssetHardware, AssetProduct, AssetProtection, Connection, ImportedHost, KscStore, Platform } from './store.js';

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

/**
 * Host attributes of OPEN-API.md §3.1 the hourly import reads besides HOST_FIELDS: MAC
 * addresses, Network Agent connection time, protection status and anti-virus bases, the
 * hardware-related type codes and OS version. A server that refuses one of them in
 * FindHosts (PxgError) gets the import with HOST_FIELDS only (logged).
 */
export const HOST_DETAIL_FIELDS = [
  'KLHST_WKS_MAC_ADDRESSES',
  'KLHST_WKS_LAST_NAGENT_CONNECTED',
  'KLHST_WKS_STATUS_ID',
  'KLHST_WKS_RTP_AV_VERSION',
  'KLHST_WKS_RTP_AV_BASES_TIME',
  'KLHST_WKS_LAST_UPDATE',
  'KLHST_WKS_LAST_FULLSCAN',
  'KLHST_WKS_VIRUS_COUNT',
  'KLHST_WKS_NAG_VERSION',
  'KLHST_WKS_CTYPE',
  'KLHST_WKS_PTYPE',
  'KLHST_WKS_OS_VER_MAJOR',
  'KLHST_WKS_OS_VER_MINOR',
  'KLHST_WKS_OS_BUILD_NUMBER',
  'KLWNF_OS_IS_SERVER',
] as const;

/** KLHST_WKS_STATUS bit 0x10: real-time protection installed (OPEN-API.md §3.1). */
const STATUS_RTP = 0x10;
const STATUS_ID: Record<number, AssetProtection['status']> = { 0: 'ok', 1: 'critical', 2: 'warning' };

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

const n = (v: Decoded | undefined): number | undefined => (typeof v === 'number' ? v : typeof v === 'string' && /^-?\d+$/.test(v) ? Number(v) : undefined);

/** MAC addresses of a KLHST_WKS_MAC_ADDRESSES value: an array of paramBinary(6) (decoded to Buffers). */
export function macsOf(v: Decoded | undefined): string[] {
  if (!Array.isArray(v)) return [];
  const out: string[] = [];
  for (const x of v) {
    const m = Buffer.isBuffer(x) ? macFromBytes(x) : null;
    if (m !== null && !out.includes(m)) out.push(m);
  }
  return out;
}

/** The hardware and protection attributes of a FindHosts row (only what the row has). */
export function detailsFromRow(row: Record<string, Decoded>): { hardware: AssetHardware; protection: AssetProtection } {
  const hardware: AssetHardware = {};
  const ct = n(row['KLHST_WKS_CTYPE']);
  if (ct !== undefined) hardware.computerType = ct;
  const pt = n(row['KLHST_WKS_PTYPE']);
  if (pt !== undefined) hardware.platformType = pt;
  const maj = n(row['KLHST_WKS_OS_VER_MAJOR']);
  const min = n(row['KLHST_WKS_OS_VER_MINOR']);
  if (maj !== undefined) hardware.osVersion = `${maj}.${min ?? 0}`;
  const build = n(row['KLHST_WKS_OS_BUILD_NUMBER']);
  if (build !== undefined) hardware.osBuild = build;
  if (typeof row['KLWNF_OS_IS_SERVER'] === 'boolean') hardware.server = row['KLWNF_OS_IS_SERVER'];
  const protection: AssetProtection = {};
  const sid = n(row['KLHST_WKS_STATUS_ID']);
  if (sid !== undefined && STATUS_ID[sid] !== undefined) protection.status = STATUS_ID[sid];
  const st = n(row['KLHST_WKS_STATUS']);
  if (st !== undefined) protection.rtpInstalled = (st & STATUS_RTP) !== 0;
  const av = s(row['KLHST_WKS_RTP_AV_VERSION']);
  if (av !== null) protection.avVersion = av;
  const bases = s(row['KLHST_WKS_RTP_AV_BASES_TIME']);
  if (bases !== null) protection.avBasesAt = bases;
  const upd = s(row['KLHST_WKS_LAST_UPDATE']);
  if (upd !== null) protection.lastUpdateAt = upd;
  const scan = s(row['KLHST_WKS_LAST_FULLSCAN']);
  if (scan !== null) protection.lastFullScanAt = scan;
  const vc = n(row['KLHST_WKS_VIRUS_COUNT']);
  if (vc !== undefined) protection.virusCount = vc;
  const nag = s(row['KLHST_WKS_NAG_VERSION']);
  if (nag !== null) protection.nagentVersion = nag;
  return { hardware, protection };
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
    ...('KLHST_WKS_MAC_ADDRESSES' in row ? { macs: macsOf(row['KLHST_WKS_MAC_ADDRESSES']) } : {}),
    ...('KLHST_WKS_LAST_NAGENT_CONNECTED' in row ? { nagentConnectedAt: s(row['KLHST_WKS_LAST_NAGENT_CONNECTED']) } : {}),
    ...detailsFromRow(row),
  };
}

/**
 * KUMA imports only devices whose Network Agent has connected ("Connection time" set,
 * OPEN-API.md §6): KLHST_WKS_LAST_NAGENT_CONNECTED non-empty. Without that attribute (a
 * server that refused it), the Network Agent bit of KLHST_WKS_STATUS decides.
 */
export function agentConnected(h: Pick<ImportedHost, 'nagent' | 'nagentConnectedAt'>): boolean {
  if (h.nagentConnectedAt !== undefined) return h.nagentConnectedAt !== null;
  return h.nagent;
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
  /** Hosts KSC returned whose Network Agent never connected: not imported. */
  skippedNoAgent: number;
  /** New KSC host ids merged into an existing asset (KUMA's two-of-IP/MAC/FQDN rule). */
  merged: number;
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

/**
 * Lifetime asked for the import's FindHosts result set (s): the most KSC allows (§2.1: "the
 * set is also destroyed when lMaxLifeTime expires"). The import reads every chunk before
 * its first GetHostProducts call (syncConnectionAssets), so the accessor only has to
 * outlive the paging itself, which no per-host latency stretches; the longest lifetime is
 * a margin for a slow KSC paging a large fleet.
 */
const IMPORT_ACCESSOR_LIFETIME_S = 7200;

/** FindHosts pages with the detail fields; with HOST_FIELDS only when the server refuses them. */
async function* hostPages(client: KscClient, conn: Connection, o: SyncOptions, log: KscLogger): AsyncGenerator<Record<string, Decoded>[]> {
  const paging = { chunkSize: o.chunkSize ?? 100, lifetimeSec: IMPORT_ACCESSOR_LIFETIME_S };
  let yielded = false;
  try {
    for await (const page of client.findHostsPaged(o.filter ?? '', [...HOST_FIELDS, ...HOST_DETAIL_FIELDS], paging)) {
      yielded = true;
      yield page;
    }
    return;
  } catch (e) {
    if (yielded || !(e instanceof KscPxgError)) throw e;
    log.warn({ connection: conn.name, tenant: conn.tenant, err: e.message }, 'KSC refused the detail host attributes (MAC, protection, hardware); importing the basic ones');
  }
  yield* client.findHostsPaged(o.filter ?? '', [...HOST_FIELDS], paging);
}

/** Imports the hosts of one connection. Never throws: a failure is `ok: false` with `error`. */
export async function syncConnectionAssets(store: KscStore, client: KscClient, conn: Connection, o: SyncOptions = {}): Promise<SyncResult> {
  const log = o.logger ?? silentLogger;
  const t0 = Date.now();
  const now = store.currentTime();
  const startedAt = now.toISOString();
  const archiveCutoff = now.getTime() - (o.archiveAfterDays ?? 30) * DAY;
  const res: SyncResult = {
    connectionId: conn.id, connection: conn.name, tenant: conn.tenant, ok: false, hosts: 0, created: 0, updated: 0, archived: 0, removed: 0, productErrors: 0,
    skippedNoAgent: 0, merged: 0, durationMs: 0,
  };
  // The merge rule only matters when the connection had assets before (not on a first import).
  const hadAssets = store.db.prepare('SELECT 1 FROM assets WHERE connection_id = ? LIMIT 1').get(conn.id) !== undefined;
  const createdIds: string[] = [];
  try {
    // Every page first, then the products: the accessor is released before the first
    // GetHostProducts. Read between chunks, one call per host, they would keep the result
    // set open for the whole import, and a fleet whose import outlasts lMaxLifeTime (capped
    // at 7200 s, OPEN-API.md §2.1: 50,000 hosts at 150 ms a call take 7500 s) would lose it
    // mid-way, every hour, and never archive anything. The list held meanwhile is one
    // mapped host per device as JSON text, not KSC's raw answers nor objects (an object
    // tree per host took about 2 KB of heap, a flat string a quarter of that; docs/ksc-assets.md,
    // fleet figures).
    const found: string[] = [];
    for await (const page of hostPages(client, conn, o, log)) {
      for (const row of page) {
        const h = hostFromRow(row);
        if (h === undefined) continue;
        if (!agentConnected(h)) {
          res.skippedNoAgent++;
          continue;
        }
        found.push(JSON.stringify(h));
      }
    }
    // A page's worth of hosts per transaction (docs/ksc-assets.md).
    const batch = Math.max(1, o.chunkSize ?? 100);
    for (let i = 0; i < found.length; i += batch) {
      const hosts: ImportedHost[] = [];
      for (let j = i; j < Math.min(found.length, i + batch); j++) {
        const h = JSON.parse(found[j]!) as Omit<ImportedHost, 'products' | 'platform'>;
        // Let the text go as soon as it is read back.
        found[j] = '';
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
          if (r.created) {
            res.created++;
            if (hadAssets) createdIds.push(r.asset.id);
          } else res.updated++;
          if (archived && !r.wasArchived) res.archived++;
        }
      })();
      res.hosts += hosts.length;
    }
    // KSC re-created a device under a new id: merge the new record into the asset that the
    // import no longer returned, when two of IP/MAC/FQDN match (KUMA's rule).
    for (const id of createdIds) {
      const a = store.getAsset(id);
      if (a === undefined) continue;
      const gone = store.findIdentityCandidates(conn.id, a, a.kscHostId).filter((c) => c.lastImportedAt < startedAt);
      const target = mergeTarget(a, gone);
      if (target === undefined) continue;
      store.mergeAsset(target.id, a.id);
      res.merged++;
      res.created--;
      res.updated++;
      log.info({ connection: conn.name, tenant: conn.tenant, asset: target.id, from: target.kscHostId, to: a.kscHostId }, 'KSC re-created a device under a new id; merged into its asset');
    }
    res.archived += store.archiveMissing(conn.id, startedAt);
    res.removed = store.removeArchivedBefore(conn.id, new Date(now.getTime() - (o.removeAfterDays ?? 30) * DAY).toISOString());
    res.ok = true;
    store.recordSync(conn.id, { ok: true, hosts: res.hosts });
    log.info(
      { connection: conn.name, tenant: conn.tenant, hosts: res.hosts, created: res.created, archived: res.archived, removed: res.removed, merged: res.merged, skippedNoAgent: res.skippedNoAgent },
      'KSC assets imported',
    );
  } catch (e) {
    res.error = redact((e as Error).message);
    store.recordSync(conn.id, { ok: false, error: res.error });
    log.warn({ connection: conn.name, tenant: conn.tenant, code: (e as { code?: string }).code ?? 'error', err: res.error }, 'KSC asset import failed; the assets imported before stay');
  }
  res.durationMs = Date.now() - t0;
  return res;
}
