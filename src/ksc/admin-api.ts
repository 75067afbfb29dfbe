/**
 * The admin API's endpoints (version 1): KSC tenants, connections, assets, tasks, task runs
 * and response rules, as JSON. docs/ksc-integration.md ("HTTP admin API") documents every
 * endpoint; keep the two in step (test/ksc/admin-api.test.ts calls each one).
 *
 * Conventions: collections answer `{"<things>": [...]}`, single objects `{"<thing>": {...}}`;
 * create answers 201, delete 204; errors `{"error": {"code", "message"}}` with 400 (bad
 * input), 401, 404, 405, 409 (conflict or refused), 413, 415, 502 (KSC failed), 504 (KSC
 * timed out). A connection in a path is its id, or its name with `?tenant=` (default tenant).
 * No answer ever holds a secret: connections show `secret: {set, source}` only.
 */
import type { KscIntegration } from './index.js';
import { KscInputError } from './errors.js';
import type { KscCredentials } from './secrets.js';
import type { ConnectionTls } from './store.js';
import type { SyncResult } from './assets.js';
import type { AttributeSyncResult } from './attributes.js';
import type { StartRequest, StartResult } from './tasks.js';
import { ApiError, type Reply, type RequestContext, type Route } from '../admin/http.js';

/** A response rule as the API shows it. */
export interface RuleView {
  name: string;
  type: 'ksctasks';
  tasks: string[];
  assetField: 'source' | 'destination' | 'device';
  filter: string | null;
  workers: number;
  cooldownSeconds: number;
  queueMax: number;
  queued: number;
  inFlight: number;
  counters: {
    triggered: number;
    noAsset: number;
    started: number;
    failed: number;
    skippedRunning: number;
    skippedCooldown: number;
    skippedQueued: number;
    /** Processors sharing KSC work found this rule's start for the event made already (docs/cluster.md). */
    skippedDuplicate: number;
    dropped: number;
  };
  /** The rule's last outcomes, oldest first (at most 10). */
  lastTriggers: { at: string; assetId: string; result: string; task: string | null; code: string | null }[];
}

/** What the API needs from the daemon. */
export interface AdminBackend {
  readonly ksc: KscIntegration;
  /** The configuration's `ksc.tenant`: it cannot be deleted while the daemon uses it. */
  readonly tenant?: string;
  rules(): RuleView[];
  /** Imports assets (all enabled connections, or of a tenant, or one connection). */
  sync(o: { tenant?: string; connection?: string }): Promise<SyncResult[]>;
  /** Imports the attributes (software, patches, vulnerabilities, owners) of the imported devices. */
  syncAttributes(o: { tenant?: string; connection?: string }): Promise<AttributeSyncResult[]>;
  /** A manual task start (counted in the metrics). */
  startTask(req: StartRequest): Promise<StartResult>;
}

// -- input checking ----------------------------------------------------------------------

type Obj = Record<string, unknown>;

function object(body: unknown, allowed: readonly string[], what = 'the request body'): Obj {
  if (body === undefined) return {};
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new KscInputError('body', `${what} must be a JSON object`);
  const o = body as Obj;
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) throw new KscInputError(k, `unknown field "${k}" in ${what} (allowed: ${allowed.join(', ')})`);
  }
  return o;
}

function optString(o: Obj, k: string): string | undefined {
  const v = o[k];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new KscInputError(k, `"${k}" must be a string`);
  return v;
}

function reqString(o: Obj, k: string): string {
  const v = optString(o, k);
  if (v === undefined || v.trim() === '') throw new KscInputError(k, `"${k}" is required`);
  return v;
}

function optBool(o: Obj, k: string): boolean | undefined {
  const v = o[k];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw new KscInputError(k, `"${k}" must be true or false`);
  return v;
}

function tlsOf(v: unknown): ConnectionTls | undefined {
  if (v === undefined || v === null) return undefined;
  const o = object(v, ['pinSha256', 'caFile', 'insecure'], '"tls"');
  const out: ConnectionTls = {};
  const pin = optString(o, 'pinSha256');
  const ca = optString(o, 'caFile');
  const insecure = optBool(o, 'insecure');
  if (pin !== undefined && pin !== '') out.pinSha256 = pin;
  if (ca !== undefined && ca !== '') out.caFile = ca;
  if (insecure === true) out.insecure = true;
  return out;
}

function secretOf(v: unknown): KscCredentials | undefined {
  if (v === undefined || v === null) return undefined;
  const o = object(v, ['user', 'password', 'domain', 'internal'], '"secret"');
  const user = optString(o, 'user');
  const password = optString(o, 'password');
  const domain = optString(o, 'domain');
  const internal = optBool(o, 'internal');
  if (user === undefined || password === undefined) throw new KscInputError('secret', '"secret" needs "user" and "password"');
  return { user, password, ...(domain !== undefined ? { domain } : {}), ...(internal !== undefined ? { internal } : {}) };
}

function queryBool(q: URLSearchParams, k: string): boolean | undefined {
  const v = q.get(k);
  if (v === null) return undefined;
  if (v === 'true' || v === '1' || v === '') return true;
  if (v === 'false' || v === '0') return false;
  throw new KscInputError(k, `query parameter "${k}" must be true or false`);
}

function queryInt(q: URLSearchParams, k: string, min: number, max: number): number | undefined {
  const v = q.get(k);
  if (v === null) return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new KscInputError(k, `query parameter "${k}" must be an integer ${min}-${max}`);
  return n;
}

const queryStr = (q: URLSearchParams, k: string): string | undefined => {
  const v = q.get(k);
  return v === null || v === '' ? undefined : v;
};

const ok = (body: unknown, status = 200): Reply => ({ status, body });

// -- routes ------------------------------------------------------------------------------

export function adminRoutes(b: AdminBackend): Route[] {
  const k = b.ksc;
  const tenantQ = (c: RequestContext): string | undefined => queryStr(c.query, 'tenant');
  return [
    // tenants
    { method: 'GET', path: '/api/v1/tenants', handler: () => ok({ tenants: k.listTenants() }) },
    {
      method: 'POST',
      path: '/api/v1/tenants',
      handler: (c) => {
        if (c.body === undefined) throw new KscInputError('body', 'send the tenant as a JSON object: {"name": "..."}');
        const o = object(c.body, ['name', 'integrationEnabled']);
        const on = optBool(o, 'integrationEnabled');
        return ok({ tenant: k.createTenant(reqString(o, 'name'), on !== undefined ? { integrationEnabled: on } : {}) }, 201);
      },
    },
    {
      method: 'DELETE',
      path: '/api/v1/tenants/:name',
      handler: (c) => {
        const name = c.params['name']!;
        // The tenant whose assets this daemon enriches with and response rules act on.
        if (b.tenant !== undefined && name === b.tenant) throw new ApiError(409, 'ksc_conflict', `tenant "${name}" is this daemon's ksc.tenant (enrichment and response rules use it): change the configuration first`);
        k.deleteTenant(name, { force: queryBool(c.query, 'force') === true });
        return { status: 204 };
      },
    },
    {
      method: 'PATCH',
      path: '/api/v1/tenants/:name',
      handler: (c) => {
        const o = object(c.body, ['integrationEnabled']);
        const on = optBool(o, 'integrationEnabled');
        if (on === undefined) throw new KscInputError('integrationEnabled', '"integrationEnabled" (true or false) is required');
        return ok({ tenant: k.setIntegrationEnabled(c.params['name']!, on) });
      },
    },

    // connections
    { method: 'GET', path: '/api/v1/connections', handler: (c) => ok({ connections: k.listConnections(tenantQ(c) !== undefined ? { tenant: tenantQ(c)! } : {}) }) },
    {
      method: 'POST',
      path: '/api/v1/connections',
      handler: (c) => {
        if (c.body === undefined) throw new KscInputError('body', 'send the connection as a JSON object');
        const o = object(c.body, ['tenant', 'name', 'url', 'disabled', 'tls', 'secret']);
        const tenant = optString(o, 'tenant');
        const tls = tlsOf(o['tls']);
        const secret = secretOf(o['secret']);
        const disabled = optBool(o, 'disabled');
        const conn = k.addConnection(
          {
          ...(tenant !== undefined ? { tenant } : {}),
          name: reqString(o, 'name'),
          url: reqString(o, 'url'),
          ...(disabled !== undefined ? { disabled } : {}),
          ...(tls !== undefined ? { tls } : {}),
          ...(secret !== undefined ? { secret } : {}),
          },
          // Callers of the API may not read the secrets: src/ksc/index.ts addConnection.
          { remote: true },
        );
        return ok({ connection: conn }, 201);
      },
    },
    { method: 'GET', path: '/api/v1/connections/:id', handler: (c) => ok({ connection: k.getConnection(c.params['id']!, tenantQ(c)) }) },
    {
      method: 'PATCH',
      path: '/api/v1/connections/:id',
      handler: (c) => {
        const o = object(c.body, ['name', 'url', 'disabled', 'tls', 'secret']);
        const name = optString(o, 'name');
        const url = optString(o, 'url');
        const disabled = optBool(o, 'disabled');
        const tls = tlsOf(o['tls']);
        const secret = secretOf(o['secret']);
        const conn = k.editConnection(
          c.params['id']!,
          {
            ...(name !== undefined ? { name } : {}),
            ...(url !== undefined ? { url } : {}),
            ...(disabled !== undefined ? { disabled } : {}),
            ...(tls !== undefined ? { tls } : {}),
            ...(secret !== undefined ? { secret } : {}),
          },
          tenantQ(c),
          { remote: true },
        );
        return ok({ connection: conn });
      },
    },
    {
      method: 'DELETE',
      path: '/api/v1/connections/:id',
      handler: (c) => {
        k.deleteConnection(c.params['id']!, tenantQ(c));
        return { status: 204 };
      },
    },
    { method: 'POST', path: '/api/v1/connections/:id/enable', handler: (c) => ok({ connection: k.setConnectionDisabled(c.params['id']!, false, tenantQ(c)) }) },
    { method: 'POST', path: '/api/v1/connections/:id/disable', handler: (c) => ok({ connection: k.setConnectionDisabled(c.params['id']!, true, tenantQ(c)) }) },
    { method: 'POST', path: '/api/v1/connections/:id/test', handler: async (c) => ok({ result: await k.testConnection(c.params['id']!, tenantQ(c)) }) },
    {
      method: 'GET',
      path: '/api/v1/connections/:id/tasks',
      handler: async (c) => {
        const refresh = queryBool(c.query, 'refresh');
        const t = tenantQ(c);
        return ok({ tasks: await k.listTasks(c.params['id']!, { ...(t !== undefined ? { tenant: t } : {}), ...(refresh !== undefined ? { refresh } : {}) }) });
      },
    },

    // assets
    {
      method: 'GET',
      path: '/api/v1/assets',
      handler: (c) => {
        const t = tenantQ(c);
        const conn = queryStr(c.query, 'connection');
        const archived = queryBool(c.query, 'archived');
        const connectionId = conn !== undefined ? k.getConnection(conn, t).id : undefined;
        return ok({ assets: k.listAssets({ ...(t !== undefined ? { tenant: t } : {}), ...(connectionId !== undefined ? { connectionId } : {}), ...(archived === true ? { includeArchived: true } : {}) }) });
      },
    },
    {
      method: 'GET',
      path: '/api/v1/assets/:id',
      handler: (c) => {
        const d = k.getAssetDetail(c.params['id']!);
        if (d === undefined) throw new ApiError(404, 'ksc_not_found', `no asset ${c.params['id']}`);
        return ok(d);
      },
    },
    {
      method: 'POST',
      path: '/api/v1/assets/sync',
      handler: async (c) => {
        const o = object(c.body, ['tenant', 'connection', 'attributes']);
        const tenant = optString(o, 'tenant');
        const connection = optString(o, 'connection');
        const sel = { ...(tenant !== undefined ? { tenant } : {}), ...(connection !== undefined ? { connection } : {}) };
        // `attributes: true`: the attribute import (software, vulnerabilities, owners) instead of the basic one.
        if (optBool(o, 'attributes') === true) return ok({ results: await b.syncAttributes(sel) });
        const results = await b.sync(sel);
        return ok({ results });
      },
    },

    // tasks
    {
      method: 'POST',
      path: '/api/v1/tasks/start',
      handler: async (c) => {
        if (c.body === undefined) throw new KscInputError('body', 'send {"asset": "<asset id>", "tasks": ["<task name>", ...]}');
        const o = object(c.body, ['asset', 'tasks', 'force']);
        const tasks = o['tasks'];
        if (!Array.isArray(tasks) || tasks.length === 0 || tasks.some((t) => typeof t !== 'string' || t.trim() === '')) {
          throw new KscInputError('tasks', '"tasks" must be a non-empty list of task names');
        }
        const force = optBool(o, 'force');
        const r = await b.startTask({ assetId: reqString(o, 'asset'), tasks: tasks as string[], origin: 'manual', skipIfRunning: force !== true });
        return ok({ run: r.run, task: r.task, candidates: r.candidates, wholeScope: r.wholeScope }, 201);
      },
    },
    {
      method: 'GET',
      path: '/api/v1/tasks/runs',
      handler: (c) => {
        const q = c.query;
        const t = tenantQ(c);
        const asset = queryStr(q, 'asset');
        const conn = queryStr(q, 'connection');
        const task = queryStr(q, 'task');
        const active = queryBool(q, 'active');
        const limit = queryInt(q, 'limit', 1, 10_000);
        const connectionId = conn !== undefined ? k.getConnection(conn, t).id : undefined;
        return ok({
          runs: k.taskStatus({
            ...(t !== undefined ? { tenant: t } : {}),
            ...(asset !== undefined ? { assetId: asset } : {}),
            ...(connectionId !== undefined ? { connectionId } : {}),
            ...(task !== undefined ? { taskId: task } : {}),
            ...(active === true ? { activeOnly: true } : {}),
            ...(limit !== undefined ? { limit } : {}),
          }),
        });
      },
    },
    {
      method: 'GET',
      path: '/api/v1/tasks/runs/:id',
      handler: (c) => {
        const id = Number(c.params['id']);
        const run = Number.isSafeInteger(id) && id > 0 ? k.getTaskRun(id) : undefined;
        if (run === undefined) throw new ApiError(404, 'ksc_not_found', `no task run ${c.params['id']}`);
        return ok({ run });
      },
    },

    // response rules
    { method: 'GET', path: '/api/v1/rules', handler: () => ok({ rules: b.rules() }) },
    {
      method: 'GET',
      path: '/api/v1/rules/:name',
      handler: (c) => {
        const r = b.rules().find((x) => x.name === c.params['name']);
        if (r === undefined) throw new ApiError(404, 'ksc_not_found', `no response rule "${c.params['name']}"`);
        return ok({ rule: r });
      },
    },
  ];
}
