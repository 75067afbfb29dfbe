/**
 * KSC tasks: list the KUMA* tasks of a connection, choose the first task of a list that
 * applies to an asset, start it, and follow its runs from KSC's task-state events.
 *
 * Per-host start (docs/reference/ksc-open-api.md §4): the Open API has no per-host RunTask. We
 * use option 2: a task "applies to" an asset when its id is in `Tasks.GetAllTasksOfHost(domain, host)`
 * (the asset is in the task's scope) and its product fits the asset (the asset has the
 * task's product installed; failing product data, the platforms match: Windows and Linux
 * tasks differ). The chosen task is started with `Tasks.RunTask`, which runs it on its
 * **whole scope**, not only on the asset. The run for the asset is recorded; task-state
 * events for other hosts of the scope are recorded as runs with origin `scope`.
 */
import type { KscClient, KscTask } from './client.js';
import { KscNotFoundError, KscRefusedError, KscInputError, KscPxgError, KscTransportError, KscError } from './errors.js';
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

/**
 * A start reads the task list from KSC again when the cache does not know a task it names, or
 * when a cached task looks stale (see `startTask`), but not more often than this per
 * connection: a rule that names a task KSC does not have (or a connection without KUMA*
 * tasks, or a task out of the asset's scope) would otherwise walk KSC's tasks iterator (a
 * ResetTasksIterator, a GetNextTask per task, a release) for every trigger.
 */
export const TASK_REFRESH_MIN_MS = 60_000;

/**
 * After a read of the task list that failed, the next may come this soon (doubling per
 * failure in a row, up to TASK_REFRESH_MIN_MS): a KSC that was briefly away (a restart, a
 * network blip) must not leave starts of a task it does have refused for a whole minute,
 * and a KSC that stays away is not asked per trigger either.
 */
export const TASK_REFRESH_RETRY_MS = 5_000;

/**
 * Per store and connection: when the task list may next be read from KSC (store clock, ms;
 * set when a read begins, so a failing KSC is not asked per trigger, and brought forward
 * when it fails), the failures in a row, and the read under way, which concurrent starts
 * join instead of walking the iterator again.
 */
interface RefreshState {
  nextAt?: number;
  failures: number;
  pending?: Promise<CachedTask[]>;
}
const refreshes = new WeakMap<KscStore, Map<string, RefreshState>>();

function refreshStateOf(store: KscStore, connId: string): RefreshState {
  let m = refreshes.get(store);
  if (m === undefined) refreshes.set(store, (m = new Map()));
  let s = m.get(connId);
  if (s === undefined) m.set(connId, (s = { failures: 0 }));
  return s;
}

/** Lists the connection's tasks in KSC, keeps the KUMA* ones in the cache, and returns them. */
export async function refreshTasks(store: KscStore, client: KscClient, conn: Connection): Promise<CachedTask[]> {
  const s = refreshStateOf(store, conn.id);
  const startedAt = store.currentTime().getTime();
  s.nextAt = startedAt + TASK_REFRESH_MIN_MS;
  const read = (async (): Promise<CachedTask[]> => {
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
  })();
  s.pending = read;
  try {
    const tasks = await read;
    s.failures = 0;
    return tasks;
  } catch (e) {
    // Counted from the failure, not the start: a read that hung until its timeout is not
    // followed at once by the next.
    s.failures++;
    const failedAt = Math.max(startedAt, store.currentTime().getTime());
    s.nextAt = Math.min(startedAt + TASK_REFRESH_MIN_MS, failedAt + TASK_REFRESH_RETRY_MS * 2 ** (s.failures - 1));
    throw e;
  } finally {
    if (s.pending === read) delete s.pending;
  }
}

/**
 * The task list read again for a start, unless it was read less than TASK_REFRESH_MIN_MS ago,
 * or failed less than the retry delay ago (undefined then). A read under way is joined (`walked: false`): a burst of starts that all
 * find the cache stale walks KSC's tasks iterator once.
 */
async function refreshIfDue(store: KscStore, client: KscClient, conn: Connection): Promise<{ tasks: CachedTask[]; walked: boolean } | undefined> {
  const s = refreshStateOf(store, conn.id);
  if (s.pending !== undefined) return { tasks: await s.pending, walked: false };
  if (s.nextAt !== undefined && store.currentTime().getTime() < s.nextAt) return undefined;
  return { tasks: await refreshTasks(store, client, conn), walked: true };
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

/** The reason of a candidate whose id is not among the asset's tasks (also what a stale cached id looks like). */
const NOT_IN_SCOPE = 'the asset is not in the task\'s scope';

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
      candidates.push({ requested: name, taskId: t.taskId, displayName: t.displayName, applicable: false, reason: NOT_IN_SCOPE });
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
  /**
   * Called once when the start did not reach KSC after a claim: refused here, RunTask refused
   * by KSC or never sent. Not called when RunTask may have run (sent, then no answer).
   */
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
  const where = { connection: conn.name, tenant: conn.tenant, asset: asset.id };

  let tasks = store.listTasks(conn.id);
  if (tasks.length === 0 || req.tasks.some((n) => findTaskByName(tasks, n) === undefined)) {
    const r = await refreshIfDue(store, client, conn);
    if (r !== undefined) tasks = r.tasks;
  }
  let choice = await chooseTask(client, tasks, asset, req.tasks);
  // A task deleted in KSC and created again under the same name has a new id, and the cached
  // old id is in no asset's scope. So a named task that is not in the asset's scope sends the
  // start to a fresh task list (at most once per TASK_REFRESH_MIN_MS per connection) before
  // a later task of the list, or none, is taken. A failed read leaves the choice made from
  // the cache (the start goes on, or fails, as it would have).
  const outOfScope = choice.candidates.filter((c) => c.reason === NOT_IN_SCOPE);
  if (outOfScope.length > 0) {
    const r = await refreshIfDue(store, client, conn).catch((e: unknown) => {
      log.debug({ ...where, err: redact((e as Error).message) }, 'reading the KSC task list again failed; the cached list is used');
      return undefined;
    });
    if (r !== undefined) {
      tasks = r.tasks;
      if (r.walked) {
        const ids = outOfScope.map((c) => {
          const now = findTaskByName(tasks, c.requested);
          return `${c.displayName} #${c.taskId} → ${now === undefined ? 'gone' : `#${now.taskId}`}`;
        });
        log.info({ ...where, tasks: ids }, 'KSC task list read again: a cached task is not in the asset\'s scope (a task deleted and created again in KSC has a new id)');
      }
      choice = await chooseTask(client, tasks, asset, req.tasks);
    }
  }

  // The claim is taken once and given back once, on every way out that did not reach
  // RunTask or on which KSC refused it; kept only when RunTask may have run.
  let claimed = false;
  let mayHaveStarted = false;
  try {
    for (let attempt = 1; ; attempt++) {
      if (choice.task === null) {
        throw new KscRefusedError(
          'ksc_task_not_applicable',
          `none of the tasks applies to asset ${asset.displayName ?? asset.kscHostId}: ${choice.candidates.map((c) => `"${c.requested}": ${c.reason}`).join('; ')}`,
        );
      }
      const task = choice.task;
      if (req.claim !== undefined && !claimed) {
        if (!(await req.claim())) {
          throw new KscRefusedError('ksc_task_duplicate', `a start of task "${task.displayName}" for this rule and event was already made (the event was delivered again)`);
        }
        claimed = true;
      }
      // Check and record without an await in between: with several workers in one process,
      // two starts of the same task for the same asset cannot both pass.
      if (req.skipIfRunning !== false && store.isRunning(task.taskId, asset.id, req.staleAfterMs !== undefined ? { staleAfterMs: req.staleAfterMs } : {})) {
        throw new KscRefusedError('ksc_task_running', `task "${task.displayName}" is already running for asset ${asset.displayName ?? asset.id}`);
      }
      if (req.cooldownMs !== undefined && store.inCooldown(task.taskId, asset.id, req.cooldownMs)) {
        throw new KscRefusedError('ksc_task_cooldown', `task "${task.displayName}" started for asset ${asset.displayName ?? asset.id} less than ${Math.round(req.cooldownMs / 1000)} s ago`);
      }
      // RunTask runs the task on its whole scope, which holds this asset (chooseTask): a start
      // for another asset within the cool-down covered it. An outbreak on 200 devices of one
      // group sends one RunTask, not 200 restarts of the same group task.
      const scopeStart = req.cooldownMs !== undefined && req.cooldownMs > 0 ? store.lastTaskStart(conn.id, task.taskId) : undefined;
      if (scopeStart !== undefined && store.currentTime().getTime() - Date.parse(scopeStart.at) < req.cooldownMs!) {
        throw new KscRefusedError(
          'ksc_task_cooldown',
          `task "${task.displayName}" started on its whole scope, which holds asset ${asset.displayName ?? asset.id}, less than ${Math.round(req.cooldownMs! / 1000)} s ago (for ${scopeStart.hostName ?? scopeStart.assetId})`,
        );
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
          { code: 'ksc_task_run_deleted', ...where, task: task.displayName, run: run.id, outcome },
          `KSC task start ${outcome}, but its connection was deleted meanwhile: the task run is not recorded`,
        );
        return true;
      };
      try {
        await client.runTask(task.taskId);
      } catch (e) {
        // KSC may have started the task only when RunTask itself was sent and no answer came
        // (a timeout, a connection lost after sending). A failure before it (the ping that
        // refreshes the session, a login, a request never sent) or a refusal means it did not.
        mayHaveStarted = mayHaveRun(e);
        const error = redact((e as Error).message);
        const gone = runGone('failed');
        // Task-state events may have come while RunTask waited for its answer (KSC ran the
        // task and its answer was late): their news stands, the run is not marked failed.
        const news = gone || !mayHaveStarted ? undefined : store.getTaskRun(run.id);
        if (news !== undefined && news.state !== 'requested') {
          run = news;
          log.info({ ...where, task: task.displayName, run: run.id, state: run.state, err: error }, 'KSC task start: no answer to RunTask, but KSC\'s task-state events already report the run');
          return { run, task, candidates: choice.candidates, wholeScope: true };
        }
        if (!gone) {
          run = store.updateTaskRun(run.id, { state: 'failed', finishedAt: store.currentTime().toISOString(), error: mayHaveStarted ? `${NO_ANSWER}${error}` : `${NOT_STARTED}${error}` });
          // Debug only: the caller reports the failure (the CLI and the API in their answer, a
          // response rule in its own rate-limited warning), once.
          log.debug({ ...where, task: task.displayName, run: run.id, code: (e as { code?: string }).code, err: run.error }, 'KSC task start failed; run marked failed');
        }
        // KSC refused RunTask (it answered: nothing ran). If the task is no longer in KSC's
        // list (deleted, or deleted and created again with a new id), the start chooses again
        // from the fresh list, once; the refused id cannot be chosen again.
        if (attempt === 1 && !gone && e instanceof KscPxgError && e.method === 'Tasks.RunTask') {
          const r = await refreshIfDue(store, client, conn).catch(() => undefined);
          if (r !== undefined && !r.tasks.some((t) => t.taskId === task.taskId)) {
            tasks = r.tasks;
            const now = findTaskByName(tasks, task.displayName);
            log.info(
              { ...where, task: task.displayName, taskId: task.taskId, newTaskId: now?.taskId ?? null, run: run.id },
              'KSC task list read again: KSC refused RunTask and the task is no longer in KSC (deleted, or created again with a new id); choosing again',
            );
            if (store.getTaskRun(run.id) !== undefined) {
              store.updateTaskRun(run.id, { error: `${NOT_STARTED}${error}; the task is no longer in KSC, the start chose again from the task list read again` });
            }
            choice = await chooseTask(client, tasks, asset, req.tasks);
            continue;
          }
        }
        throw e;
      }
      runGone('succeeded');
      log.info({ ...where, task: task.displayName, taskId: task.taskId, run: run.id, origin: run.origin }, 'KSC task started (on its whole scope)');
      return { run, task, candidates: choice.candidates, wholeScope: true };
    }
  } catch (e) {
    if (claimed && !mayHaveStarted) req.release?.();
    throw e;
  }
}

/** How the error of a run that certainly did not start begins (KSC refused RunTask, or it was never sent). */
const NOT_STARTED = 'not started: ';

/** How the error of a run whose RunTask got no answer begins (KSC may have started the task). */
const NO_ANSWER = 'no answer to RunTask (the task may have started): ';

/**
 * How long after its RunTask a run marked failed for KSC's silence still takes the
 * task-state events that come (a task KSC queued runs within minutes on a device that is
 * on); a later event is a run of its own (origin scope).
 */
export const SILENT_RUN_NEWS_MS = 60 * 60_000;

/**
 * A run marked failed because RunTask got no answer, of which KSC has said nothing yet but
 * perhaps "created" (state 0), and requested at most SILENT_RUN_NEWS_MS before `atMs`: the
 * task-state events that still come are about it (applyTaskStateEvent).
 */
function awaitingNews(run: TaskRun | undefined, atMs: number): TaskRun | undefined {
  if (run === undefined || run.state !== 'failed' || (run.kscState !== null && run.kscState !== 0) || !(run.error ?? '').startsWith(NO_ANSWER)) return undefined;
  const asked = run.requestedAt === null ? NaN : Date.parse(run.requestedAt);
  return atMs - asked <= SILENT_RUN_NEWS_MS ? run : undefined;
}

/** Whether a failed `runTask` may still have started the task in KSC: RunTask was sent and no answer came. */
function mayHaveRun(e: unknown): boolean {
  if (!(e instanceof KscError) || e.method !== 'Tasks.RunTask') return false;
  return e.code === 'ksc_timeout' || (e instanceof KscTransportError && !e.beforeSend);
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
 * label (KSC's slot numbers vary, docs/reference/ksc-format.md §0.2: TaskId, TaskName, TaskNewState,
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

/**
 * How much earlier than a run's start (by cefd's clock) a task-state event (by KSC's clock)
 * may be and still be about that run: the two clocks may differ a little. An event older
 * than that is about an earlier run of the task (delivered late: KSC's export, a backlog
 * after a restart, a redelivery) and does not change the open run.
 */
export const TASK_EVENT_CLOCK_SKEW_MS = 10 * 60_000;

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
  const timed = ev.time !== undefined && !Number.isNaN(Date.parse(ev.time));
  const at = timed ? new Date(Date.parse(ev.time!)).toISOString() : store.currentTime().toISOString();
  const final = mapped.state === 'completed' || mapped.state === 'failed';

  const taskIdsFor = (a: Asset): string[] => {
    if (ev.taskId !== undefined) return [ev.taskId];
    if (ev.taskName === undefined) return [];
    const n = ev.taskName.trim().toLowerCase();
    const fromCache = store.listTasks(a.connectionId).filter((t) => t.displayName.trim().toLowerCase() === n).map((t) => t.taskId);
    const fromRuns = store.listTaskRuns({ assetId: a.id, activeOnly: true }).filter((r) => r.taskName.trim().toLowerCase() === n).map((r) => r.taskId);
    return [...new Set([...fromRuns, ...fromCache])];
  };

  const update = (run: TaskRun): TaskRun => {
    // A run marked failed for KSC's silence (awaitingNews) takes KSC's word instead.
    const revived = run.state === 'failed';
    return store.updateTaskRun(run.id, {
      // Never move a run backwards from running to requested.
      state: mapped.state === 'requested' && run.state === 'running' ? 'running' : mapped.state,
      kscState: ev.newState,
      ...(mapped.state === 'running' && run.startedAt === null ? { startedAt: at } : {}),
      ...(final ? { finishedAt: at } : revived ? { finishedAt: null } : {}),
      ...(mapped.error !== undefined ? { error: mapped.error } : revived ? { error: null } : {}),
    });
  };

  // An event from before the run began is about an earlier run of the task (its late
  // "completed" would otherwise close the new run, and a rule could start the task again).
  const earlier = (run: TaskRun): boolean => {
    const began = run.requestedAt ?? run.startedAt;
    return timed && began !== null && Date.parse(at) < Date.parse(began) - TASK_EVENT_CLOCK_SKEW_MS;
  };

  // 1. Open runs of the task on a matching asset, or its run still waiting for KSC's news
  //    after RunTask got no answer (awaitingNews).
  const updated: TaskRun[] = [];
  let older = 0;
  for (const a of assets) {
    for (const tid of taskIdsFor(a)) {
      // Not from a "created" (state 0): nothing runs yet, and the run would hold back starts.
      const open = store.findOpenRun(tid, a.id) ?? (ev.newState === 0 ? undefined : awaitingNews(store.latestRun(tid, a.id), Date.parse(at)));
      if (open === undefined) continue;
      if (earlier(open)) older++;
      else updated.push(update(open));
    }
  }
  if (updated.length > 0) return { outcome: 'updated', runs: updated };
  if (older > 0) return { outcome: 'ignored', runs: [], reason: 'the event is older than the open run of the task: it is about an earlier run' };

  // 2. No open run: a host of the scope of a known KUMA* task. Not from a "created" event
  //    (state 0: nothing runs yet, and a requested run nobody made would hold back starts),
  //    nor from an event no later than the end of the task's last run on the asset (a late
  //    "running" delivered after the "completed" would open a run that never ends).
  if (ev.newState === 0) return { outcome: 'ignored', runs: [], reason: 'a "created" state for a task run cefd did not request' };
  const created: TaskRun[] = [];
  let stale = 0;
  for (const a of assets) {
    if (a.status !== 'active') continue;
    const tasks = store.listTasks(a.connectionId);
    for (const tid of taskIdsFor(a)) {
      const t = tasks.find((x) => x.taskId === tid);
      if (t === undefined) continue;
      const last = store.latestRun(tid, a.id);
      // A repeated final event (same state) for a run already closed is not a new run.
      if (last !== undefined && last.kscState === ev.newState && last.finishedAt !== null && Math.abs(Date.parse(last.finishedAt) - Date.parse(at)) < 60_000) continue;
      // An end set by cefd's clock (no KSC state: refused, expired) gets the clocks' allowance.
      if (timed && last?.finishedAt != null && Date.parse(at) <= Date.parse(last.finishedAt) - (last.kscState === null ? TASK_EVENT_CLOCK_SKEW_MS : 0)) {
        stale++;
        continue;
      }
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
  if (stale > 0) return { outcome: 'ignored', runs: [], reason: 'the event is no later than the end of the last run of the task: it is about that run or an earlier one' };
  return { outcome: 'ignored', runs: [], reason: 'no run of this task for the host, and the task is not a known KUMA* task of its connection' };
}
