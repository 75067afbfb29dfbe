/**
 * The attribute import (KUMA's "attribute information every 12 hours, for existing
 * assets", OPEN-API.md §6): per active asset of a connection,
 *
 * - installed programs: `InventoryApi.GetHostInvProducts` (§2.8), Windows devices only;
 * - patches: `InventoryApi.GetHostInvPatches`, Windows only; a server without it keeps none;
 * - vulnerabilities: the vulnerability view `v_vapm_vulnerability` through `SrvView`, paged,
 *   filtered on the device (the host-id attribute name is a GUESS: §2.8 does not give it);
 * - owners: `HostGroup.GetHostInfo` with `KLHST_WKS_OWNER_NAME` / `KLHST_WKS_OWNER_ID`
 *   (GUESS: these names are not in OPEN-API.md; an empty answer means no owner).
 *
 * Bounded: the devices are read as a list of ids (not their data) and handed to at most
 * `concurrency` workers, each with its own KSC client (one call at a time per connection,
 * §0, so parallelism needs separate sessions); a run stops taking devices when its time
 * budget is spent. A device whose calls fail keeps the data it had (and is retried first
 * by the next run, together with the devices a stopped run did not reach: the queue is
 * ordered by the last attempt). A connection-level failure (login, TLS, network) ends the
 * run. Each device's data is written in one short transaction, so neither the hourly
 * import nor the event path waits on it.
 */
import type { KscClient } from './client.js';
import { KscAuthError, KscSessionError, KscTlsError, KscTransportError, KscHttpError, KscProtocolError, KscPxgError } from './errors.js';
import type { Decoded } from './params.js';
import { redact, silentLogger, type KscLogger } from './secrets.js';
import type { AssetOwner, Connection, KscStore, SoftwareEntry, VulnerabilityEntry } from './store.js';

/** The vulnerability view (OPEN-API.md §2.8, KSCAPI-VAPM-15). */
export const VULN_VIEW = 'v_vapm_vulnerability';
/** The view's host-id attribute: a GUESS (§2.8 "I did not verify it"). */
export const VULN_HOST_ATTR = 'KLHST_WKS_HOSTNAME';
/** Attributes read from the view; `ProductName` is a GUESS (the doc lists ProductVersion "…"). */
export const VULN_FIELDS = ['VulnerabilityId', 'strVulnUid', 'SeverityRating', 'ProductName', 'ProductVersion', 'DescriptionURL', 'DetectionTime', 'bIgnore'];
/** Owner attributes asked from GetHostInfo (GUESS, see the file comment). */
export const OWNER_FIELDS = ['KLHST_WKS_OWNER_NAME', 'KLHST_WKS_OWNER_ID'];

export interface AttributeSyncOptions {
  /** Workers (KSC sessions) per connection (default 2). */
  concurrency?: number;
  /** Stop taking new devices after this long (ms, default 2 h). */
  budgetMs?: number;
  /** Only devices whose last attempt is older than this (ms; 0 = every device, the default). */
  olderThanMs?: number;
  /** SrvView page size (default 100). */
  pageSize?: number;
  logger?: KscLogger;
  /** Stops the run (daemon shutdown): no new device is started. */
  signal?: AbortSignal;
}

export interface AttributeSyncResult {
  connectionId: string;
  connection: string;
  tenant: string;
  ok: boolean;
  /** Devices due in this run. */
  due: number;
  /** Devices whose attributes were replaced. */
  imported: number;
  /** Devices whose calls failed (their data kept). */
  failed: number;
  /** Devices not reached (time budget, stop, or a connection failure); the next run starts with them. */
  remaining: number;
  budgetExhausted: boolean;
  durationMs: number;
  error?: string;
}

/** Errors that say the connection, not one device, is the problem: the run stops. */
function connectionLevel(e: unknown): boolean {
  return e instanceof KscAuthError || e instanceof KscSessionError || e instanceof KscTlsError || e instanceof KscTransportError || e instanceof KscHttpError || e instanceof KscProtocolError;
}

const text = (v: Decoded | undefined): string | null => (typeof v === 'string' && v.trim() !== '' ? v.trim() : typeof v === 'number' ? String(v) : null);

/** One row of the vulnerability view as cefd keeps it. */
export function vulnerabilityFromRow(r: Record<string, Decoded>): VulnerabilityEntry | undefined {
  const id = text(r['VulnerabilityId']) ?? text(r['strVulnUid']);
  if (id === null) return undefined;
  const sev = r['SeverityRating'];
  const product = [text(r['ProductName']), text(r['ProductVersion'])].filter((x) => x !== null).join(' ');
  const detected = r['DetectionTime'];
  return {
    id,
    severity: typeof sev === 'number' ? sev : null,
    product: product === '' ? null : product,
    url: text(r['DescriptionURL']),
    detectedAt: typeof detected === 'string' && detected !== '' ? detected : null,
    ignored: r['bIgnore'] === true,
  };
}

/** Reads one device's attributes (throws on a failure that must keep the stored data). */
async function readDevice(client: KscClient, hostId: string, windows: boolean, pageSize: number): Promise<{ software: SoftwareEntry[]; patches?: SoftwareEntry[]; vulnerabilities: VulnerabilityEntry[]; owners?: AssetOwner[] }> {
  let owners: AssetOwner[] | undefined;
  try {
    const info = await client.getHostInfo(hostId, OWNER_FIELDS);
    const name = text(info['KLHST_WKS_OWNER_NAME']);
    const id = text(info['KLHST_WKS_OWNER_ID']);
    owners = name === null ? [] : [{ name, ...(id !== null ? { id } : {}) }];
  } catch (e) {
    if (!(e instanceof KscPxgError)) throw e;
    owners = undefined;
  }
  if (!windows) return { software: [], patches: [], vulnerabilities: [], ...(owners !== undefined ? { owners } : {}) };
  const software = await client.getHostInventory(hostId, 'products');
  let patches: SoftwareEntry[] | undefined;
  try {
    patches = await client.getHostInventory(hostId, 'patches');
  } catch (e) {
    // A server without GetHostInvPatches (or refusing it): the stored patches stay.
    if (!(e instanceof KscPxgError)) throw e;
  }
  const vulnerabilities: VulnerabilityEntry[] = [];
  if (!hostId.includes('"')) {
    for await (const page of client.srvViewPaged(VULN_VIEW, `(${VULN_HOST_ATTR} = "${hostId}")`, VULN_FIELDS, { pageSize })) {
      for (const row of page) {
        const v = vulnerabilityFromRow(row);
        if (v !== undefined) vulnerabilities.push(v);
      }
    }
  }
  return { software, ...(patches !== undefined ? { patches } : {}), vulnerabilities, ...(owners !== undefined ? { owners } : {}) };
}

/**
 * Imports the attributes of the connection's active assets. `clients` makes one client per
 * worker (the caller closes them). Never throws: a failure is `ok: false` with `error`.
 */
export async function syncConnectionAttributes(store: KscStore, clients: () => KscClient[], conn: Connection, o: AttributeSyncOptions = {}): Promise<AttributeSyncResult> {
  const log = o.logger ?? silentLogger;
  const t0 = Date.now();
  const budget = o.budgetMs ?? 2 * 3_600_000;
  const runStart = store.currentTime();
  // Every device not yet tried in this run, or (scheduled runs) not tried for `olderThanMs`.
  const older = o.olderThanMs ?? 0;
  const triedBefore = new Date(older > 0 ? runStart.getTime() - older : runStart.getTime() + 1).toISOString();
  const res: AttributeSyncResult = { connectionId: conn.id, connection: conn.name, tenant: conn.tenant, ok: false, due: 0, imported: 0, failed: 0, remaining: 0, budgetExhausted: false, durationMs: 0 };
  const queue = store.attributeQueue(conn.id, { triedBefore });
  res.due = queue.length;
  let next = 0;
  let fatal: unknown;
  const workers = clients();
  const worker = async (client: KscClient): Promise<void> => {
    // Each worker does at least one device, so a run always makes progress.
    for (let first = true; ; first = false) {
      if (fatal !== undefined || o.signal?.aborted === true) return;
      if (!first && Date.now() - t0 >= budget) {
        res.budgetExhausted = true;
        return;
      }
      const d = queue[next++];
      if (d === undefined) return;
      try {
        const a = await readDevice(client, d.kscHostId, d.platform === 'windows', o.pageSize ?? 100);
        store.replaceAttributes(d.id, a);
        res.imported++;
      } catch (e) {
        if (connectionLevel(e)) {
          fatal ??= e;
          next--;
          return;
        }
        res.failed++;
        const msg = redact((e as Error).message);
        store.recordAttributeFailure(d.id, msg);
        log.warn({ connection: conn.name, tenant: conn.tenant, asset: d.id, host: d.kscHostId, code: (e as { code?: string }).code ?? 'error', err: msg }, 'cannot read the attributes of a KSC device; keeping the ones stored');
      }
    }
  };
  await Promise.all(workers.map(worker));
  res.remaining = Math.max(0, queue.length - next);
  if (fatal !== undefined) {
    res.error = redact((fatal as Error).message);
    log.warn({ connection: conn.name, tenant: conn.tenant, code: (fatal as { code?: string }).code ?? 'error', err: res.error, remaining: res.remaining }, 'KSC attribute import stopped; the next run resumes with the devices not reached');
  } else {
    res.ok = true;
    if (res.budgetExhausted) log.warn({ connection: conn.name, tenant: conn.tenant, remaining: res.remaining }, 'KSC attribute import stopped at its time budget; the next run resumes with the devices not reached');
    log.info({ connection: conn.name, tenant: conn.tenant, imported: res.imported, failed: res.failed, remaining: res.remaining }, 'KSC asset attributes imported');
  }
  res.durationMs = Date.now() - t0;
  return res;
}
