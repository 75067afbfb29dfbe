/**
 * KSC tasks: list the KUMA* tasks of a connection, choose the first task of a list that
 * applies to an asset, start it, and follow its runs from KSC's task-state events.
 *
 * Per-host start (../shared/ksc/OPEN-API.md §4): the Open API has no per-host RunTask. We
 * use option 2: a task "applies to" an asset when its id is in `Tasks.GetAllTasksOfHost(domain, host)`
 * (the asset is in the task's scope) and its product fits the asset (the asset has the
 * task's product installed; failing product data, the platforms match: Windows and Linux
 * tasks differ). The chosen task is started with `Tasks.RunTask`, which runs it on its
 * **whole scope**, not only on the asset. The run for the asset is recorded; task-state
 * events for other hosts of the scope are recorded as runs with origin `scope`.
 */
import type { KscClient, KscTask } from './client.js';
import { KscNotFoundError, KscRefusedError, KscInputError } from './errors.js';
import { productPlatform } from './assets.js';
import { silentLogger, redact, type KscLogger } from './secrets.js';
import type { Asset, CachedTask, Connection, KscStore, RunState, TaskRun } from './store.js';
import type { CefdEvent } from '../event.js';
import type { KscObject } from '../../normalizers/ksc/types.js';
import { kscView } from '../../normalizers/ksc/lean.js';
import { customLabels } from '../codecs/cef/view.js';

/** KUMA's rule: a task usable from the SIEM has a display name beginning with "KUMA", any case. */
export function isKumaTask(displayName: string): boolean {
  return /^kuma/i.test(displayName.trimStart());
}

/** Lists the connection's tasks in KSC, keeps the KUMA* ones in the cache, and returns them. */
export async function refreshTasks(store: KscStore, client: KscClient, conn: Connection): Promise<CachedTask[]> {
  const all: KscTask[] = await client.listTasks();
  const kuma = all.filter((t) => isKumaTask(t.displayName));
  return store.replaceTasks(
    conn.id,
    kuma.map((t) => ({
      taskId: t.id,
      displayName: t.displayName,
      taskType: t.taskType ?? null,
      product: t.product ?? null,
      version: t.version ?? null,
      groupId: t.groupId ?? null,
      platform: productPlatform(t.product),
    })),
  );
}

/** Why each named task was or was not taken. */
export interface TaskCandidate {
  /** The name (or `#id`) as asked. */
  requested: string;
  taskId: string | null;
  displayName: string | null;
  applicable: boolean;
  reason: string;
}

export interface TaskChoice {
  task: CachedTask | null;
  candidates: TaskCandidate[];
}

/** Finds a cached task by display name (case-insensitive, trimmed) or by id written `#21`. */
export function findTaskByName(tasks: readonly CachedTask[], ref: string): CachedTask | undefined {
  const r = ref.trim();
  const id = /^#(\S+)$/.exec(r)?.[1];
  if (id !== undefined) return tasks.find((t) => t.taskId === id);
  const lower = r.toLowerCase();
  return tasks.find((t) => t.displayName.trim().toLowerCase() === lower);
}

/**
 * Tasks that work on KSC's vulnerability and software information, which exists for
 * Windows devices only (KUMA: "You can get vulnerability and software information only for
 * assets with Windows operating system"). Recognized by task type or display name; the type
 * names of these KSC tasks are not in OPEN-API.md, so this is a pattern (docs/ksc-assets.md).
 */
export function isWindowsOnlyTask(task: Pick<CachedTask, 'taskType' | 'displayName'>): boolean {
  return /vulnerab|vapm|patch|software|inventory|install[ _-]?(required[ _-]?)?updates/i.test(`${task.taskType ?? ''}\n${task.displayName}`);
}

/** Does the task's product fit the asset (ignoring scope)? Returns a reason when not. */
export function productMismatch(task: CachedTask, asset: Asset): string | null {
  if (isWindowsOnlyTask(task) && asset.platform !== 'windows') {
    return `a vulnerability or software task applies to Windows devices only (the asset is ${asset.platform})`;
  }
  const prodKnown = task.product !== null && task.product !== '1103' && task.product !== '1093';
  if (prodKnown && asset.products.length > 0) {
    if (!asset.products.some((p) => p.product.toUpperCase() === task.product!.toUpperCase())) {
      return `the asset has no ${task.product} installed`;
    }
    return null;
  }
  const tp = task.platform ?? productPlatform(task.product);
  if (tp !== null && asset.platform !== 'other' && tp !== asset.platform) return `a ${tp} task does not apply to a ${asset.platform} asset`;
  return null;
}

/**
 * Chooses, as KUMA does, the first task of `names` that applies to `asset`: known in the
 * connection's KUMA* tasks, the asset in its scope (GetAllTasksOfHost), the product fits.
 */
export async function chooseTask(client: KscClient, tasks: readonly CachedTask[], asset: Asset, names: readonly string[]): Promise<TaskChoice> {
  const candidates: TaskCandidate[] = [];
  let scope: Set<string> | undefined;
  for (const name of names) {
    const t = findTaskByName(tasks, name);
    if (t === undefined) {
      candidates.push({ requested: name, taskId: null, displayName: null, applicable: false, reason: 'no KUMA* task with this name on the connection' });
      continue;
    }
    const mismatch = productMismatch(t, asset);
    if (mismatch !== null) {
      candidates.push({ requested: name, taskId: t.taskId, displayName: t.displayName, applicable: false, reason: mismatch });
      continue;
    }
    scope ??= new Set(await client.getAllTasksOfHost(asset.domain ?? '', asset.kscHostId));
    if (!scope.has(t.taskId)) {
      candidates.push({ requested: name, taskId: t.taskId, displayName: t.displayName, applicable: false, reason: 'the asset is not in the task\'s scope' });
      continue;
    }
    candidates.push({ requested: name, taskId: t.taskId, displayName: t.displayName, applicable: true, reason: 'first applicable task' });
    return { task: t, candidates };
  }
  return { task: null, candidates };
}

export interface StartRequest {
  assetId: string;
  /** Task display names (or `#id`), in order of preference: the first applicable one starts. */
  tasks: readonly string[];
  origin?: 'manual' | 'rule';
  /** Response rule name, for runs started by a rule. */
  rule?: string;
  /** Refuse when a run of the chosen task for this asset is requested or running (default true). */
  skipIfRunning?: boolean;
  /** Refuse when the chosen task started for this asset less than this ago (ms, default 0). */
  cooldownMs?: number;
  /** A run older than this without news no longer counts as running (default 6 h). */
  staleAfterMs?: number;
  /**
   * Asked right before the task is checked and started (after the task was chosen): false
   * refuses the start as `ksc_task_duplicate` (a start was already made for the same rule
   * and event, by this or another processor: ksc/cluster.ts). May throw (not the owner).
   */
  claim?: () => Promise<boolean>;
  /** Called when the start did not reach KSC after a claim (refused here, RunTask failed). */
  release?: () => void;
}

export interface StartResult {
  run: TaskRun;
  task: CachedTask;
  candidates: TaskCandidate[];
  /** Always true with RunTask: the task runs on every device of its scope. */
  wholeScope: true;
}

export interface TaskDeps {
  store: KscStore;
  /** The client of a connection (created with its secret). */
  clientFor(conn: Connection): KscClient;
  logger?: KscLogger;
}

/** Starts the first applicable task of `req.tasks` on the asset and records the run. */
export async function startTask(deps: TaskDeps, req: StartRequest): Promise<StartResult> {
  const { store } = deps;
  const log = deps.logger ?? silentLogger;
  if (!Array.isArray(req.tasks) || req.tasks.length === 0 || req.tasks.some((t) => typeof t !== 'string' || t.trim() === '')) {
    throw new KscInputError('tasks', 'give at least one task name');
  }
  const asset = store.getAsset(req.assetId);
  if (asset === undefined) throw new KscNotFoundError(`no asset ${req.assetId}`);
  if (asset.status === 'archived') throw new KscRefusedError('ksc_task_not_applicable', `asset ${asset.id} (${asset.displayName ?? asset.kscHostId}) is archived`);
  const conn = store.getConnection(asset.connectionId);
  if (conn === undefined) throw new KscNotFoundError(`the connection of asset ${asset.id} no longer exists`);
  const tenant = store.getTenant(conn.tenant);
  if (tenant !== undefined && !tenant.integrationEnabled) throw new KscRefusedError('ksc_disabled', `the KSC integration of tenant "${conn.tenant}" is off`);
  if (conn.disabled) throw new KscRefusedError('ksc_disabled', `KSC connection "${conn.name}" is disabled`);
  const client = deps.clientFor(conn);

  let tasks = store.listTasks(conn.id);
  if (tasks.length === 0 || req.tasks.some((n) => findTaskByName(tasks, n) === undefined)) tasks = await refreshTasks(store, client, conn);
  const choice = await chooseTask(client, tasks, asset, req.tasks);
  if (choice.task === null) {
    throw new KscRefusedError(
      'ksc_task_not_applicable',
      `none of the tasks applies to asset ${asset.displayName ?? asset.kscHostId}: ${choice.candidates.map((c) => `"${c.requested}": ${c.reason}`).join('; ')}`,
    );
  }
  const task = choice.task;
  if (req.claim !== undefined && !(await req.claim())) {
    throw new KscRefusedError('ksc_task_duplicate', `a start of task "${task.displayName}" for this rule and event was already made (the event was delivered again)`);
  }
  // Check and record without an await in between: with several workers in one process,
  // two starts of the same task for the same asset cannot both pass.
  if (req.skipIfRunning !== false && store.isRunning(task.taskId, asset.id, req.staleAfterMs !== undefined ? { staleAfterMs: req.staleAfterMs } : {})) {
    req.release?.();
    throw new KscRefusedError('ksc_task_running', `task "${task.displayName}" is already running for asset ${asset.displayName ?? asset.id}`);
  }
  if (req.cooldownMs !== undefined && store.inCooldown(task.taskId, asset.id, req.cooldownMs)) {
    req.release?.();
    throw new KscRefusedError('ksc_task_cooldown', `task "${task.displayName}" started for asset ${asset.displayName ?? asset.id} less than ${Math.round(req.cooldownMs / 1000)} s ago`);
  }
  let run = store.createTaskRun({
    tenant: conn.tenant,
    connectionId: conn.id,
    assetId: asset.id,
    taskId: task.taskId,
    taskName: task.displayName,
    hostName: asset.displayName,
    origin: req.origin ?? 'manual',
    rule: req.rule ?? null,
  });
  // While RunTask is under way the connection (or its tenant, with force) may be deleted,
  // and its task runs with it (ON DELETE CASCADE): the run row is then gone. That is not
  // the start's outcome, so it is logged (ksc_task_run_deleted) and the outcome reported.
  const runGone = (outcome: string): boolean => {
    if (store.getTaskRun(run.id) !== undefined) return false;
    log.warn(
      { code: 'ksc_task_run_deleted', connection: conn.name, tenant: conn.tenant, task: task.displayName, asset: asset.id, run: run.id, outcome },
      `KSC task start ${outcome}, but its connection was deleted meanwhile: the task run is not recorded`,
    );
    return true;
  };
  try {
    await client.runTask(task.taskId);
  } catch (e) {
    // Whether RunTask reached KSC is unknown after a timeout; given back only when it was refused.
    if ((e as { code?: string }).code !== 'ksc_timeout') req.release?.();
    const error = redact((e as Error).message);
    if (!runGone('failed')) {
      run = store.updateTaskRun(run.id, { state: 'failed', finishedAt: store.currentTime().toISOString(), error });
      // Debug only: the caller reports the failure (the CLI and the API in their answer, a
      // response rule in its own rate-limited warning), once.
      log.debug({ connection: conn.name, tenant: conn.tenant, task: task.displayName, asset: asset.id, run: run.id, code: (e as { code?: string }).code, err: run.error }, 'KSC task start failed; run marked failed');
    }
    throw e;
  }
  runGone('succeeded');
  log.info({ connection: conn.name, tenant: conn.tenant, task: task.displayName, taskId: task.taskId, asset: asset.id, run: run.id, origin: run.origin }, 'KSC task started (on its whole scope)');
  return { run, task, candidates: choice.candidates, wholeScope: true };
}

// ---------------------------------------------------------------------------------------
// Task-state events

/** What a KLPRCI_TaskState event says (from the ksc normalizer or the CEF labels). */
export interface TaskStateEvent {
  taskId?: string;
  taskName?: string;
  /** Managed device: CEF dhost / syslog hdn. */
  hostName?: string;
  /** Managed device address: CEF dst / syslog hip. */
  ip?: string;
  /** KLPRCI state 0-7 (CEF cn2, TaskNewState). */
  newState: number;
  oldState?: number;
  /** Event time (ISO). */
  time?: string;
  /** The event's id (set by the watch): keys the work message between processors (ksc/cluster.ts). */
  eventId?: string;
}

function intOf(v: unknown): number | undefined {
  if (typeof v === 'number' && Number.isInteger(v)) return v;
  if (typeof v === 'string' && /^-?\d+$/.test(v.trim())) return Number(v.trim());
  return undefined;
}

/** The part of the ksc normalizer's `event.ksc` object (normalizers/ksc/types.ts) read here. */
type KscPart = Pick<Partial<KscObject>, 'eventType' | 'category' | 'host' | 'labels'> & { task?: Partial<KscObject['task'] & object> };

/**
 * Reads a task-state event from a cefd event. With the ksc normalizer's object
 * (`event.ksc`, normalizers/ksc/types.ts): `eventType` KLPRCI_TaskState, `task.newStateCode`
 * (`task.oldStateCode`), `task.id`, `task.name`, and the managed device `host.name` /
 * `host.ip`. Without it (an event of a listener without the normalizer): the CEF record, by
 * label (KSC's slot numbers vary, ../shared/ksc/FORMAT.md §0.2: TaskId, TaskName, TaskNewState,
 * TaskOldState), `dhost`/`dst`. Returns null when the event is not a KLPRCI_TaskState event
 * with a numeric new state (KSC's "Syslog" format carries no state).
 */
export function taskStateFromEvent(ev: CefdEvent): TaskStateEvent | null {
  // The event's ksc object holds the derived fields only; the task id, name, codes and host
  // are read from the whole object rebuilt from the event (normalizers/ksc/lean.ts).
  const ksc = ev.ksc !== null && typeof ev.ksc === 'object' ? ((kscView(ev) ?? ev.ksc) as KscPart) : undefined;
  const cef = ev.cef;
  if (ksc !== undefined) {
    if (ksc.eventType !== 'KLPRCI_TaskState') return null;
    const t = ksc.task;
    const newState = intOf(t?.newStateCode) ?? intOf(ksc.labels?.['TaskNewState']);
    if (newState === undefined) return null;
    const out: TaskStateEvent = { newState };
    const oldState = intOf(t?.oldStateCode) ?? intOf(ksc.labels?.['TaskOldState']);
    if (oldState !== undefined) out.oldState = oldState;
    if (typeof t?.id === 'string' && t.id !== '') out.taskId = t.id;
    if (typeof t?.name === 'string' && t.name !== '') out.taskName = t.name;
    if (typeof ksc.host?.name === 'string' && ksc.host.name !== '') out.hostName = ksc.host.name;
    if (typeof ksc.host?.ip === 'string' && ksc.host.ip !== '') out.ip = ksc.host.ip;
    if (typeof ev.timestamp === 'string') out.time = ev.timestamp;
    return out;
  }
  if (cef === undefined || cef.deviceEventClassId !== 'KLPRCI_TaskState') return null;
  const labels = new Map<string, string>();
  for (const [label, val] of customLabels(cef)) labels.set(label.toLowerCase(), String(val));
  const newState = intOf(labels.get('tasknewstate'));
  if (newState === undefined) return null;
  const out: TaskStateEvent = { newState };
  const oldState = intOf(labels.get('taskoldstate'));
  if (oldState !== undefined) out.oldState = oldState;
  const taskId = labels.get('taskid');
  if (taskId !== undefined && taskId !== '') out.taskId = taskId;
  const taskName = labels.get('taskname');
  if (taskName !== undefined && taskName !== '') out.taskName = taskName;
  const host = cef.extensions['destinationHostName'];
  if (host !== undefined && host !== '') out.hostName = host;
  const ip = cef.extensions['destinationAddress'];
  if (ip !== undefined && ip !== '') out.ip = ip;
  if (typeof ev.timestamp === 'string') out.time = ev.timestamp;
  return out;
}

export interface ApplyResult {
  outcome: 'updated' | 'created' | 'ignored';
  runs: TaskRun[];
  reason?: string;
}

/** KLPRCI state → run state (null: unknown state, ignored). */
export function runStateOf(kscState: number): { state: RunState; error?: string } | null {
  switch (kscState) {
    case 0:
      return { state: 'requested' };
    case 1:
    case 2:
    case 6:
      return { state: 'running' };
    case 3:
      return { state: 'failed', error: 'KSC reports the task failed' };
    case 4:
      return { state: 'completed' };
    case 5:
      return { state: 'failed', error: 'KSC reports the task failed by timeout' };
    case 7:
      return { state: 'failed', error: 'KSC reports the task inactive' };
    default:
      return null;
  }
}

/** Assets (active first) whose name or address matches the event's managed device. */
function assetsForHost(store: KscStore, host: string | undefined, ip: string | undefined): Asset[] {
  const h = host?.trim().toLowerCase();
  let byName: Asset[] = [];
  if (h !== undefined && h !== '') {
    byName = store.findAssetsByName(h).filter((a) => {
      const dn = a.displayName?.toLowerCase();
      const fq = a.fqdn?.toLowerCase();
      return dn === h || fq === h || (fq !== undefined && fq.split('.')[0] === h) || (dn !== undefined && dn.split('.')[0] === h.split('.')[0] && h.includes('.'));
    });
  }
  let out = byName;
  if (ip !== undefined && ip !== '') {
    if (byName.length > 1) {
      const narrowed = byName.filter((a) => a.ips.includes(ip));
      if (narrowed.length > 0) out = narrowed;
    } else if (byName.length === 0) out = store.findAssetsByIp(ip);
  }
  return out.sort((a, b) => (a.status === b.status ? 0 : a.status === 'active' ? -1 : 1));
}

/**
 * Updates task runs from a KLPRCI_TaskState event. The run is found by task (id, else name)
 * and managed device (host name, else IP). An event for a host that has no open run of the
 * task, but whose task is a known KUMA* task of the asset's connection, is recorded as a
 * run with origin `scope` (RunTask ran the task on its whole scope).
 */
export function applyTaskStateEvent(store: KscStore, ev: TaskStateEvent, o: { connectionIds?: ReadonlySet<string> } = {}): ApplyResult {
  const mapped = runStateOf(ev.newState);
  if (mapped === null) return { outcome: 'ignored', runs: [], reason: `unknown task state ${ev.newState}` };
  // Only runs of connections that trust the event's origin (src/ksc/trust.ts).
  const ids = o.connectionIds;
  const assets = assetsForHost(store, ev.hostName, ev.ip).filter((a) => ids === undefined || ids.has(a.connectionId));
  if (assets.length === 0) return { outcome: 'ignored', runs: [], reason: 'no asset matches the event\'s host' };
  const at = ev.time !== undefined && !Number.isNaN(Date.parse(ev.time)) ? new Date(Date.parse(ev.time)).toISOString() : store.currentTime().toISOString();
  const final = mapped.state === 'completed' || mapped.state === 'failed';

  const taskIdsFor = (a: Asset): string[] => {
    if (ev.taskId !== undefined) return [ev.taskId];
    if (ev.taskName === undefined) return [];
    const n = ev.taskName.trim().toLowerCase();
    const fromCache = store.listTasks(a.connectionId).filter((t) => t.displayName.trim().toLowerCase() === n).map((t) => t.taskId);
    const fromRuns = store.listTaskRuns({ assetId: a.id, activeOnly: true }).filter((r) => r.taskName.trim().toLowerCase() === n).map((r) => r.taskId);
    return [...new Set([...fromRuns, ...fromCache])];
  };

  const update = (run: TaskRun): TaskRun =>
    store.updateTaskRun(run.id, {
      // Never move a run backwards from running to requested.
      state: mapped.state === 'requested' && run.state === 'running' ? 'running' : mapped.state,
      kscState: ev.newState,
      ...(mapped.state === 'running' && run.startedAt === null ? { startedAt: at } : {}),
      ...(final ? { finishedAt: at } : {}),
      ...(mapped.error !== undefined ? { error: mapped.error } : {}),
    });

  // 1. Open runs of the task on a matching asset.
  const updated: TaskRun[] = [];
  for (const a of assets) {
    for (const tid of taskIdsFor(a)) {
      const open = store.findOpenRun(tid, a.id);
      if (open !== undefined) updated.push(update(open));
    }
  }
  if (updated.length > 0) return { outcome: 'updated', runs: updated };

  // 2. No open run: a host of the scope of a known KUMA* task.
  const created: TaskRun[] = [];
  for (const a of assets) {
    if (a.status !== 'active') continue;
    const tasks = store.listTasks(a.connectionId);
    for (const tid of taskIdsFor(a)) {
      const t = tasks.find((x) => x.taskId === tid);
      if (t === undefined) continue;
      const last = store.latestRun(tid, a.id);
      // A repeated final event (same state) for a run already closed is not a new run.
      if (last !== undefined && last.kscState === ev.newState && last.finishedAt !== null && Math.abs(Date.parse(last.finishedAt) - Date.parse(at)) < 60_000) continue;
      created.push(
        store.createTaskRun({
          tenant: a.tenant,
          connectionId: a.connectionId,
          assetId: a.id,
          taskId: tid,
          taskName: t.displayName,
          hostName: a.displayName,
          origin: 'scope',
          state: mapped.state,
          kscState: ev.newState,
          at,
        }),
      );
      if (mapped.error !== undefined) created[created.length - 1] = store.updateTaskRun(created[created.length - 1]!.id, { error: mapped.error });
    }
  }
  if (created.length > 0) return { outcome: 'created', runs: created };
  return { outcome: 'ignored', runs: [], reason: 'no run of this task for the host, and the task is not a known KUMA* task of its connection' };
}
