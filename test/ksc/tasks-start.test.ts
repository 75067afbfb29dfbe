import { afterEach, beforeEach, expect, test } from 'vitest';
import { KscIntegration, KscPxgError, KscRefusedError, assetIdFor, isKumaTask, taskStateFromEvent, runStateOf } from '../../src/ksc/index.js';
import { decodeFrame } from '../../src/codecs/decode.js';
import { loadNormalizer, normalizeEvent } from '../../src/pipeline/normalize.js';
import type { CefdEvent } from '../../src/event.js';
import { kscView } from '../../normalizers/ksc/lean.js';
import { startKscEmulator, defaultModel, type KscEmulator } from '../helpers/ksc-emulator/index.js';
import { LineCollector, memoryLogger, tempDir, waitFor } from '../helpers/ksc-emulator/testkit.js';

const PASSWORD = 'S3cret-KSC-pass!w0rd';
const WS42 = 'c2b22f83-307c-45aa-8533-5ffffbcc6bf1';
const WS77 = '7d1e0a51-93c6-4a2b-9d0e-2b9c5d3e0177';
const LNX = 'e4b8d2f0-1c3a-4b5d-8e9f-0a1b2c3d4e5f';
const SRV = '0a3f6c2e-5b1d-4e8f-a7c9-3d2e1f0a1111';

let emu: KscEmulator;
let k: KscIntegration;
let collector: LineCollector;
let cleanup: () => void;
let connId: string;
const log = memoryLogger();

function decode(line: string): CefdEvent {
  const r = decodeFrame(Buffer.from(line), false, Date.now());
  if (!r.ok) throw new Error('line did not decode');
  return r.event;
}

beforeEach(async () => {
  collector = await new LineCollector().listen();
  emu = await startKscEmulator({ model: defaultModel(), taskEvents: { target: { host: '127.0.0.1', port: collector.port }, runningAfterMs: 10, finishAfterMs: 30 } });
  const t = tempDir();
  cleanup = t.cleanup;
  k = KscIntegration.open({ stateDir: t.dir, env: {}, logger: log, client: { retries: 1, backoffMs: 5 } });
  connId = k.addConnection({ name: 'main', url: emu.url, tls: { pinSha256: emu.cert.fingerprint256 }, secret: { user: 'kuma', password: PASSWORD } }).id;
  await k.syncAssets();
  // The daemon's part, in small: every line that arrives is decoded and fed to the task runs.
  collector.onLine((line) => k.applyTaskStateEvent(decode(line)));
});
afterEach(async () => {
  await emu.close();
  await collector.close();
  await k.close();
  cleanup();
});

const asset = (hostId: string): string => assetIdFor(connId, hostId);

test('KUMA tasks: display name begins with "KUMA", any case', async () => {
  expect(isKumaTask('KUMA Virus scan')).toBe(true);
  expect(isKumaTask('kuma update')).toBe(true);
  expect(isKumaTask('Kumalak')).toBe(true);
  expect(isKumaTask('Update KUMA')).toBe(false);
  const tasks = await k.listTasks('main');
  expect(tasks.map((t) => t.displayName)).toEqual(['KUMA Scan selection', 'KUMA Scan servers', 'KUMA Update (Windows)', 'kuma virus scan (Linux)', 'KUMA Virus scan (Windows)']);
  expect(tasks.find((t) => t.taskId === '31')).toMatchObject({ product: 'KESL', platform: 'linux', groupId: 3 });
  // Cached: no second walk of the tasks iterator unless asked.
  const n = emu.calls.filter((c) => c.method === 'Tasks.ResetTasksIterator').length;
  await k.listTasks('main');
  expect(emu.calls.filter((c) => c.method === 'Tasks.ResetTasksIterator').length).toBe(n);
  await k.listTasks('main', { refresh: true });
  expect(emu.calls.filter((c) => c.method === 'Tasks.ResetTasksIterator').length).toBe(n + 1);
});

test('start: the first task of the list that applies to the asset (scope, then product/platform)', async () => {
  const r = await k.startTask({ assetId: asset(WS42), tasks: ['KUMA Scan servers', 'kuma VIRUS scan (linux)', 'No such task', 'KUMA Update (Windows)', 'KUMA Virus scan (Windows)'] });
  expect(r.task).toMatchObject({ taskId: '22', displayName: 'KUMA Update (Windows)' });
  expect(r.wholeScope).toBe(true);
  expect(r.candidates.map((c) => [c.requested, c.applicable, c.reason])).toEqual([
    ['KUMA Scan servers', false, "the asset is not in the task's scope"],
    ['kuma VIRUS scan (linux)', false, 'the asset has no KESL installed'],
    ['No such task', false, 'no KUMA* task with this name on the connection'],
    ['KUMA Update (Windows)', true, 'first applicable task'],
  ]);
  expect(r.run).toMatchObject({ state: 'requested', origin: 'manual', taskId: '22', assetId: asset(WS42), hostName: 'WS-0142' });
  expect(emu.calls.filter((c) => c.method === 'Tasks.RunTask').map((c) => c.body['strTask'])).toEqual(['22']);
  const linux = await k.startTask({ assetId: asset(LNX), tasks: ['KUMA Virus scan (Windows)', 'kuma virus scan (Linux)'] });
  expect(linux.task.taskId).toBe('31');
  expect(linux.candidates[0]!.reason).toBe('the asset has no KES installed');
  const byId = await k.startTask({ assetId: asset(WS77), tasks: ['#41'] });
  expect(byId.task.displayName).toBe('KUMA Scan selection');
});

test('no applicable task: refused, nothing started, nothing recorded', async () => {
  const e = await k.startTask({ assetId: asset(SRV), tasks: ['KUMA Update (Windows)', 'kuma virus scan (Linux)'] }).catch((x: unknown) => x);
  expect(e).toBeInstanceOf(KscRefusedError);
  expect((e as KscRefusedError).code).toBe('ksc_task_not_applicable');
  expect((e as Error).message).toMatch(/"KUMA Update \(Windows\)": the asset is not in the task's scope; "kuma virus scan \(Linux\)": the asset has no KESL installed/);
  expect(emu.calls.some((c) => c.method === 'Tasks.RunTask')).toBe(false);
  expect(k.taskStatus()).toEqual([]);
  await expect(k.startTask({ assetId: 'no-such-asset', tasks: ['x'] })).rejects.toMatchObject({ code: 'ksc_not_found' });
  await expect(k.startTask({ assetId: asset(SRV), tasks: [] })).rejects.toMatchObject({ code: 'ksc_invalid_input' });
  const old = asset('f0f0f0f0-0000-4000-8000-00000000dead');
  await expect(k.startTask({ assetId: old, tasks: ['KUMA Update (Windows)'] })).rejects.toThrow(/archived/);
});

test('full loop: start → Running → Completed from KSC task-state events over TCP', async () => {
  const r = await k.startTask({ assetId: asset(WS42), tasks: ['KUMA Update (Windows)'], origin: 'rule', rule: 'malware-on-workstation' });
  expect(k.isRunning('22', asset(WS42))).toBe(true);
  await waitFor(() => k.taskStatus({ assetId: asset(WS42) })[0]?.state === 'completed', 30_000, 'the run to complete');
  const run = k.taskStatus({ assetId: asset(WS42) })[0]!;
  expect(run).toMatchObject({ id: r.run.id, state: 'completed', kscState: 4, kscStateName: 'completed', origin: 'rule', rule: 'malware-on-workstation', error: null });
  expect(Date.parse(run.startedAt!)).toBeGreaterThanOrEqual(Date.parse(run.requestedAt!) - 1000);
  expect(Date.parse(run.finishedAt!)).toBeGreaterThanOrEqual(Date.parse(run.startedAt!));
  expect(k.isRunning('22', asset(WS42))).toBe(false);
  // RunTask ran the group task on its whole scope (Workstations): WS-0177 ran it too and is
  // recorded as a scope run. OLD-LAPTOP has no KES, so KSC sent nothing for it.
  await waitFor(() => k.taskStatus({ assetId: asset(WS77) })[0]?.state === 'completed', 30_000, 'the scope run');
  expect(k.taskStatus({ assetId: asset(WS77) })[0]).toMatchObject({ origin: 'scope', taskId: '22', state: 'completed' });
  expect(collector.lines).toHaveLength(4);
  expect(collector.lines[0]).toMatch(/^CEF:0\|KasperskyLab\|SecurityCenter\|13\.2\.0\.1511\|KLPRCI_TaskState\|Running\|1\|rt=\d+ cs9=Workstations cs9Label=GroupName dhost=WS-0142 dst=10\.0\.12\.42 cs2=KES cs2Label=ProductName cs3=11\.0\.0\.0 cs3Label=ProductVersion cs10=KUMA Update \(Windows\) cs10Label=TaskName cs4=22 cs4Label=TaskId cn2=1 cn2Label=TaskNewState cn1=0 cn1Label=TaskOldState$/);
});

test('a failing task ends the run as failed', async () => {
  emu.taskEvents.outcome = () => 3;
  await k.startTask({ assetId: asset(LNX), tasks: ['kuma virus scan (Linux)'] });
  await waitFor(() => k.taskStatus({ assetId: asset(LNX) })[0]?.state === 'failed', 30_000, 'the run to fail');
  expect(k.taskStatus({ assetId: asset(LNX) })[0]).toMatchObject({ state: 'failed', kscState: 3, error: 'KSC reports the task failed' });
});

test('no second start while running; cool-down after a finished run; concurrent starts start once', async () => {
  emu.taskEvents.finishAfterMs = 400;
  const [a, b] = await Promise.allSettled([
    k.startTask({ assetId: asset(WS77), tasks: ['KUMA Scan selection'] }),
    k.startTask({ assetId: asset(WS77), tasks: ['KUMA Scan selection'] }),
  ]);
  const ok = [a, b].filter((x) => x.status === 'fulfilled');
  const refused = [a, b].filter((x) => x.status === 'rejected') as PromiseRejectedResult[];
  expect(ok).toHaveLength(1);
  expect(refused[0]!.reason).toMatchObject({ code: 'ksc_task_running' });
  expect(emu.calls.filter((c) => c.method === 'Tasks.RunTask')).toHaveLength(1);
  await waitFor(() => k.taskStatus({ assetId: asset(WS77) })[0]?.state === 'completed', 30_000, 'completion');
  await expect(k.startTask({ assetId: asset(WS77), tasks: ['KUMA Scan selection'], cooldownMs: 60_000 })).rejects.toMatchObject({ code: 'ksc_task_cooldown' });
  const again = await k.startTask({ assetId: asset(WS77), tasks: ['KUMA Scan selection'], cooldownMs: 0 });
  expect(again.run.state).toBe('requested');
  // skipIfRunning: false lets a manual start through anyway.
  const forced = await k.startTask({ assetId: asset(WS77), tasks: ['KUMA Scan selection'], skipIfRunning: false });
  expect(forced.run.id).toBeGreaterThan(again.run.id);
});

test('RunTask refused by KSC (read-only user): the run is failed with the error, the error is typed', async () => {
  k.editConnection('main', { secret: { user: 'viewer', password: 'viewer-pass-123' } });
  const e = await k.startTask({ assetId: asset(WS42), tasks: ['KUMA Update (Windows)'] }).catch((x: unknown) => x);
  expect(e).toBeInstanceOf(KscPxgError);
  expect((e as KscPxgError).method).toBe('Tasks.RunTask');
  const run = k.taskStatus({ assetId: asset(WS42) })[0]!;
  expect(run.state).toBe('failed');
  expect(run.error).toMatch(/Tasks\.RunTask: PxgError 1150 \(KLSTD\): Access denied/);
  expect(k.isRunning('22', asset(WS42))).toBe(false);
});

test('disabled connection or integration switched off: task starts are refused', async () => {
  k.setConnectionDisabled('main', true);
  await expect(k.startTask({ assetId: asset(WS42), tasks: ['KUMA Update (Windows)'] })).rejects.toMatchObject({ code: 'ksc_disabled' });
  k.setConnectionDisabled('main', false);
  k.setIntegrationEnabled('default', false);
  await expect(k.startTask({ assetId: asset(WS42), tasks: ['KUMA Update (Windows)'] })).rejects.toMatchObject({ code: 'ksc_disabled' });
  expect(emu.calls.some((c) => c.method === 'Tasks.RunTask')).toBe(false);
});

test('task-state events: read by label, matched by task id or name and by host name or IP', async () => {
  const ev = taskStateFromEvent(decode('CEF:0|KasperskyLab|SecurityCenter|12.0.0.7734|KLPRCI_TaskState|Completed successfully|1|rt=1635847200000 dhost=WS-0142 dst=10.0.12.42 cs2=KES cs2Label=ProductName cs3=11.0.0.0 cs3Label=ProductVersion cs4=17 cs4Label=TaskId cs5=Update cs5Label=TaskName cn1=1 cn1Label=TaskOldState cn2=4 cn2Label=TaskNewState'));
  expect(ev).toEqual({ newState: 4, oldState: 1, taskId: '17', taskName: 'Update', hostName: 'WS-0142', ip: '10.0.12.42', time: '2021-11-02T10:00:00.000Z' });
  expect(taskStateFromEvent(decode('CEF:0|KasperskyLab|SecurityCenter|13.2|GNRL_EV_VIRUS_FOUND|x|5|dhost=WS-0142'))).toBeNull();
  expect(runStateOf(5)).toEqual({ state: 'failed', error: 'KSC reports the task failed by timeout' });
  expect(runStateOf(9)).toBeNull();

  await k.listTasks('main');
  const run = k.store.createTaskRun({ tenant: 'default', connectionId: connId, assetId: asset(WS42), taskId: '22', taskName: 'KUMA Update (Windows)', origin: 'manual', at: '2024-05-06T06:59:00Z' });
  // By task name and IP only (no id, no host name).
  const r1 = k.applyTaskStateEvent({ taskName: 'kuma update (windows)', ip: '10.0.12.42', newState: 1, time: '2024-05-06T07:00:00Z' });
  expect(r1).toMatchObject({ outcome: 'updated', runs: [{ id: run.id, state: 'running', startedAt: '2024-05-06T07:00:00.000Z' }] });
  // By id and FQDN; paused keeps it running.
  expect(k.applyTaskStateEvent({ taskId: '22', hostName: 'ws-0142.corp.example', newState: 2 }).runs[0]).toMatchObject({ state: 'running', kscStateName: 'paused' });
  expect(k.applyTaskStateEvent({ taskId: '22', hostName: 'WS-0142', newState: 5, time: '2024-05-06T07:10:00Z' }).runs[0]).toMatchObject({ state: 'failed', finishedAt: '2024-05-06T07:10:00.000Z' });
  // Ignored: unknown host, unknown state, a task that is not a known KUMA* task.
  expect(k.applyTaskStateEvent({ taskId: '22', hostName: 'nobody', newState: 4 })).toMatchObject({ outcome: 'ignored', reason: "no asset matches the event's host" });
  expect(k.applyTaskStateEvent({ taskId: '22', hostName: 'WS-0142', newState: 12 })).toMatchObject({ outcome: 'ignored' });
  expect(k.applyTaskStateEvent({ taskId: '17', hostName: 'WS-0142', newState: 1 })).toMatchObject({ outcome: 'ignored' });
  // A repeated final event does not invent a new run.
  expect(k.applyTaskStateEvent({ taskId: '22', hostName: 'WS-0142', newState: 5, time: '2024-05-06T07:10:05Z' })).toMatchObject({ outcome: 'ignored' });
  expect(k.taskStatus({ assetId: asset(WS42) })).toHaveLength(1);
});

test('task-state events as the daemon sees them: read from the ksc normalizer\'s object', async () => {
  const ksc = await loadNormalizer({ name: 'ksc' });
  const normalized = (line: string): CefdEvent => {
    const e = decode(line);
    expect(normalizeEvent(e, [ksc]).kind).toBe('normalized');
    return e;
  };
  // Slots differ from the usual ones (cn3/cs6/cs7): read by label, through event.ksc.
  const e = normalized('CEF:0|KasperskyLab|SecurityCenter|14.2|KLPRCI_TaskState|Failed|3|rt=1714978990000 dhost=WS-0177 dst=10.0.12.77 cs6=KUMA Scan selection cs6Label=TaskName cs7=41 cs7Label=TaskId cn3=3 cn3Label=TaskNewState cn1=1 cn1Label=TaskOldState');
  expect(e.ksc).toEqual({ category: 'task_state', severity: 'error', task: { oldState: 'running', newState: 'failed' } });
  expect(kscView(e)).toMatchObject({ eventType: 'KLPRCI_TaskState', category: 'task_state', task: { id: '41', newState: 'failed', newStateCode: 3, oldStateCode: 1 }, host: { name: 'WS-0177', ip: '10.0.12.77' } });
  expect(taskStateFromEvent(e)).toEqual({ newState: 3, oldState: 1, taskId: '41', taskName: 'KUMA Scan selection', hostName: 'WS-0177', ip: '10.0.12.77', time: '2024-05-06T07:03:10.000Z' });
  // An unknown state code is still a number (the run ignores it); other KSC events are not task-state events.
  expect(taskStateFromEvent(normalized('CEF:0|KasperskyLab|SecurityCenter|14.2|KLPRCI_TaskState|x|1|dhost=WS-0177 cs4=41 cs4Label=TaskId cn2=64 cn2Label=TaskNewState'))).toMatchObject({ newState: 64, taskId: '41' });
  expect(taskStateFromEvent(normalized('CEF:0|KasperskyLab|SecurityCenter|14.2|KLEVP_GroupTaskSyncState|x|1|dhost=WS-0177'))).toBeNull();
  expect(taskStateFromEvent(normalized('CEF:0|KasperskyLab|SecurityCenter|14.2|GNRL_EV_VIRUS_FOUND|x|5|dhost=WS-0177'))).toBeNull();
  // The "Syslog" format names the task but carries no state: not usable.
  expect(taskStateFromEvent(normalized('<14>1 2024-05-06T07:03:10.000Z ksc.corp.example KES|11.0.0.0 - KLPRCI_TaskState [event@23668 et="KLPRCI_TaskState" tdn="KUMA Scan selection" hdn="WS-0177" hip="10.0.12.77"] Task completed'))).toBeNull();

  // Fed to the runs: the run of WS-0177 started by hand fails.
  await k.listTasks('main');
  const r = await k.startTask({ assetId: asset(WS77), tasks: ['KUMA Scan selection'] });
  // The same event, from after the start (the one above is from 2024: an earlier run's).
  const now = normalized(`CEF:0|KasperskyLab|SecurityCenter|14.2|KLPRCI_TaskState|Failed|3|rt=${Date.now()} dhost=WS-0177 dst=10.0.12.77 cs6=KUMA Scan selection cs6Label=TaskName cs7=41 cs7Label=TaskId cn3=3 cn3Label=TaskNewState cn1=1 cn1Label=TaskOldState`);
  expect(k.applyTaskStateEvent(e)).toMatchObject({ outcome: 'ignored', reason: 'the event is older than the open run of the task: it is about an earlier run' });
  expect(k.applyTaskStateEvent(now)).toMatchObject({ outcome: 'updated', runs: [{ id: r.run.id, state: 'failed', kscState: 3, error: 'KSC reports the task failed' }] });
});

test('a connection deleted while its RunTask is under way: the start reports its real outcome, the lost run is logged', async () => {
  const during = async (fault: () => void): Promise<unknown> => {
    // The asset's id depends on its connection's (asset()), made again below.
    const ws = asset(WS42);
    fault();
    const release = emu.faults.holdNext({ method: 'Tasks.RunTask' });
    const calls = emu.calls.filter((c) => c.method === 'Tasks.RunTask').length;
    const start = k.startTask({ assetId: ws, tasks: ['KUMA Update (Windows)'] }).then(
      (r) => r,
      (e: unknown) => e,
    );
    await waitFor(() => emu.calls.filter((c) => c.method === 'Tasks.RunTask').length > calls, 30_000, 'RunTask to reach KSC');
    expect(k.taskStatus({ assetId: ws })).toHaveLength(1);
    k.deleteConnection('main');
    expect(k.taskStatus({ assetId: ws })).toEqual([]);
    release();
    return start;
  };
  // RunTask failed (KSC hung up): that is what the start says, not "no task run".
  const failed = await during(() => emu.faults.hangUpNext({ method: 'Tasks.RunTask' }));
  expect(failed).toBeInstanceOf(Error);
  expect((failed as { code?: string }).code).toBe('ksc_transport_error');
  const warned = () => log.lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l['code'] === 'ksc_task_run_deleted');
  expect(warned()).toMatchObject([{ level: 'warn', outcome: 'failed', connection: 'main', task: 'KUMA Update (Windows)' }]);

  // RunTask succeeded: the start succeeds; the run it returns is no longer in the store.
  connId = k.addConnection({ name: 'main', url: emu.url, tls: { pinSha256: emu.cert.fingerprint256 }, secret: { user: 'kuma', password: PASSWORD } }).id;
  await k.syncAssets();
  const ok = await during(() => undefined);
  expect(ok).toMatchObject({ task: { taskId: '22' } });
  expect(warned().map((l) => l['outcome'])).toEqual(['failed', 'succeeded']);
});

test('a rule naming a task KSC does not have reads the task list from KSC at most once a minute, not per start', async () => {
  const t = tempDir();
  let clock = new Date('2026-01-01T00:00:00Z');
  const k2 = KscIntegration.open({ stateDir: t.dir, env: {}, logger: memoryLogger(), now: () => clock, client: { retries: 1, backoffMs: 5 } });
  try {
    const c2 = k2.addConnection({ name: 'main', url: emu.url, tls: { pinSha256: emu.cert.fingerprint256 }, secret: { user: 'kuma', password: PASSWORD } }).id;
    await k2.syncAssets();
    const walks = (): number => emu.calls.filter((c) => c.method === 'Tasks.ResetTasksIterator').length;
    const before = walks();
    const tasks = ['KUMA Not In KSC', 'KUMA Virus scan (Windows)'];
    for (const host of [WS42, WS77, WS42]) {
      const r = await k2.startTask({ assetId: assetIdFor(c2, host), tasks, skipIfRunning: false });
      expect(r.candidates[0]).toMatchObject({ requested: 'KUMA Not In KSC', applicable: false, reason: 'no KUMA* task with this name on the connection' });
    }
    // The first start filled the cache; the next two used it.
    expect(walks() - before).toBe(1);
    // A minute later, a task created in KSC meanwhile is found.
    emu.model.tasks.push({ ...emu.model.tasks.find((x) => x.id === '21')!, id: '77', displayName: 'KUMA Not In KSC' });
    clock = new Date(clock.getTime() + 60_000);
    const r = await k2.startTask({ assetId: assetIdFor(c2, WS77), tasks, skipIfRunning: false });
    expect(walks() - before).toBe(2);
    expect(r.task).toMatchObject({ taskId: '77', displayName: 'KUMA Not In KSC' });
  } finally {
    await k2.close();
    t.cleanup();
  }
});

test('a late task-state event of an earlier run does not close the run started since; one within the clock allowance does', async () => {
  await k.listTasks('main');
  // No events from the emulator: this test sends them.
  delete emu.taskEvents.target;
  const r = await k.startTask({ assetId: asset(WS42), tasks: ['KUMA Update (Windows)'] });
  const began = Date.parse(r.run.requestedAt!);
  // The previous run's "completed", from an hour before this start, delivered late.
  const late = decode(`CEF:0|KasperskyLab|SecurityCenter|13.2|KLPRCI_TaskState|Completed successfully|1|rt=${began - 3_600_000} dhost=WS-0142 dst=10.0.12.42 cs4=22 cs4Label=TaskId cn2=4 cn2Label=TaskNewState cn1=1 cn1Label=TaskOldState`);
  expect(k.applyTaskStateEvent(late)).toMatchObject({ outcome: 'ignored', runs: [] });
  expect(k.getTaskRun(r.run.id)).toMatchObject({ state: 'requested', finishedAt: null });
  expect(k.isRunning('22', asset(WS42))).toBe(true);
  await expect(k.startTask({ assetId: asset(WS42), tasks: ['KUMA Update (Windows)'] })).rejects.toMatchObject({ code: 'ksc_task_running' });
  // KSC's clock a minute behind cefd's: still this run's.
  const behind = decode(`CEF:0|KasperskyLab|SecurityCenter|13.2|KLPRCI_TaskState|Running|1|rt=${began - 60_000} dhost=WS-0142 dst=10.0.12.42 cs4=22 cs4Label=TaskId cn2=1 cn2Label=TaskNewState cn1=0 cn1Label=TaskOldState`);
  expect(k.applyTaskStateEvent(behind)).toMatchObject({ outcome: 'updated', runs: [{ id: r.run.id, state: 'running' }] });
});

/** A second integration on the emulator whose calls time out after 300 ms: assets imported, tasks listed. */
async function shortTimeout(): Promise<{ k3: KscIntegration; c3: string; t: { cleanup: () => void } }> {
  const t = tempDir();
  const k3 = KscIntegration.open({ stateDir: t.dir, env: {}, logger: memoryLogger(), client: { retries: 1, backoffMs: 5, timeoutMs: 300 } });
  const c3 = k3.addConnection({ name: 'main', url: emu.url, tls: { pinSha256: emu.cert.fingerprint256 }, secret: { user: 'kuma', password: PASSWORD } }).id;
  await k3.syncAssets();
  await k3.listTasks('main');
  return { k3, c3, t };
}

test('a claimed start gives its claim back when RunTask was never sent, and keeps it when RunTask may have run', async () => {
  const { k3, c3, t } = await shortTimeout();
  try {
    const runTasks = (): number => emu.calls.filter((c) => c.method === 'Tasks.RunTask').length;
    const start = async (host: string): Promise<{ code: unknown; released: number }> => {
      let released = 0;
      const e = await k3
        .startTask({ assetId: assetIdFor(c3, host), tasks: ['KUMA Virus scan (Windows)'], claim: async () => true, release: () => void released++ })
        .then(() => undefined, (x: unknown) => x);
      return { code: (e as { code?: unknown } | undefined)?.code, released };
    };
    // The ping that refreshes the session before RunTask times out: RunTask is not sent.
    const before = runTasks();
    emu.faults.methodDelayMs['Session.Ping'] = 600;
    expect(await start(WS42)).toEqual({ code: 'ksc_timeout', released: 1 });
    expect(runTasks()).toBe(before);
    emu.faults.clear();
    // RunTask sent, its connection lost before the answer: KSC may have started the task.
    emu.faults.hangUpNext({ method: 'Tasks.RunTask' });
    expect(await start(WS77)).toEqual({ code: 'ksc_transport_error', released: 0 });
    expect(runTasks()).toBe(before + 1);
  } finally {
    await k3.close();
    t.cleanup();
  }
});

/** An integration with its own clock (the task-list refresh is rate limited by it) and log. */
async function clocked(client: { retries?: number; timeoutMs?: number } = {}): Promise<{
  k: KscIntegration;
  conn: string;
  lines: string[];
  advance: (ms: number) => void;
  close: () => Promise<void>;
}> {
  const t = tempDir();
  let clock = new Date('2026-01-01T00:00:00Z');
  const logger = memoryLogger([]);
  const kc = KscIntegration.open({ stateDir: t.dir, env: {}, logger, now: () => clock, client: { retries: 1, backoffMs: 5, ...client } });
  const conn = kc.addConnection({ name: 'main', url: emu.url, tls: { pinSha256: emu.cert.fingerprint256 }, secret: { user: 'kuma', password: PASSWORD } }).id;
  await kc.syncAssets();
  return {
    k: kc,
    conn,
    lines: logger.lines,
    advance: (ms) => void (clock = new Date(clock.getTime() + ms)),
    close: async () => {
      await kc.close();
      t.cleanup();
    },
  };
}

/** Deletes task `id` in the emulated KSC and, unless `newId` is null, creates it again under the same name with `newId`. */
function recreate(id: string, newId: string | null): void {
  const i = emu.model.tasks.findIndex((x) => x.id === id);
  const [old] = emu.model.tasks.splice(i, 1);
  if (newId !== null) emu.model.tasks.push({ ...old!, id: newId });
}

const walks = (): number => emu.calls.filter((c) => c.method === 'Tasks.ResetTasksIterator').length;
const runTaskIds = (): unknown[] => emu.calls.filter((c) => c.method === 'Tasks.RunTask').map((c) => c.body['strTask']);

test('a task deleted and created again in KSC (new id, same name) is found again: a stale cached id out of scope reads the task list again, at most once a minute, once for a burst', async () => {
  const x = await clocked();
  try {
    const first = await x.k.startTask({ assetId: assetIdFor(x.conn, WS42), tasks: ['KUMA Virus scan (Windows)'] });
    expect(first.task.taskId).toBe('21');
    recreate('21', '61');
    const before = walks();
    // Within the minute after the last read: the cache is used, the start refused.
    const e = await x.k.startTask({ assetId: assetIdFor(x.conn, WS77), tasks: ['KUMA Virus scan (Windows)'] }).catch((y: unknown) => y);
    expect(e).toMatchObject({ code: 'ksc_task_not_applicable' });
    expect((e as Error).message).toMatch(/"KUMA Virus scan \(Windows\)": the asset is not in the task's scope/);
    expect(walks()).toBe(before);
    // A minute later the stale id sends the start to a fresh list: the new task starts.
    x.advance(60_000);
    const r = await x.k.startTask({ assetId: assetIdFor(x.conn, WS77), tasks: ['KUMA Virus scan (Windows)'] });
    expect(r.task).toMatchObject({ taskId: '61', displayName: 'KUMA Virus scan (Windows)' });
    expect(r.candidates).toEqual([{ requested: 'KUMA Virus scan (Windows)', taskId: '61', displayName: 'KUMA Virus scan (Windows)', applicable: true, reason: 'first applicable task' }]);
    expect(walks()).toBe(before + 1);
    expect(runTaskIds()).toEqual(['21', '61']);
    const info = x.lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l['level'] === 'info' && /task list read again/.test(String(l['msg'])));
    expect(info).toEqual([expect.objectContaining({ connection: 'main', asset: assetIdFor(x.conn, WS77), tasks: ['KUMA Virus scan (Windows) #21 → #61'] })]);
    // A storm of starts that all meet an out-of-scope task (a server task for workstations)
    // walks KSC's tasks iterator once, not per start.
    x.advance(60_000);
    const storm = await Promise.all(
      [WS42, WS77, WS42, WS77, WS42].map((h) => x.k.startTask({ assetId: assetIdFor(x.conn, h), tasks: ['KUMA Scan servers'] }).catch((y: unknown) => y)),
    );
    expect(storm.map((y) => (y as { code?: unknown }).code)).toEqual(Array(5).fill('ksc_task_not_applicable'));
    expect(walks()).toBe(before + 2);
    await x.k.startTask({ assetId: assetIdFor(x.conn, WS42), tasks: ['KUMA Scan servers'] }).catch(() => undefined);
    expect(walks()).toBe(before + 2);
  } finally {
    await x.close();
  }
});

test('a task-list read that failed is tried again after 5 s, doubling per failure up to the minute, not a minute later: a task created in KSC meanwhile starts', async () => {
  const x = await clocked({ retries: 0 });
  try {
    await x.k.listTasks('main');
    // An admin creates the task the rule names; a minute later KSC is briefly away.
    emu.model.tasks.push({ ...emu.model.tasks.find((t) => t.id === '21')!, id: '62', displayName: 'KUMA Quick scan (Windows)' });
    x.advance(60_000);
    emu.faults.failNext(503, { method: 'Tasks.ResetTasksIterator', times: 2 });
    const before = walks();
    const start = () => x.k.startTask({ assetId: assetIdFor(x.conn, WS42), tasks: ['KUMA Quick scan (Windows)'] });
    expect(await start().catch((y: unknown) => y)).toMatchObject({ code: 'ksc_http_error' });
    expect(walks()).toBe(before + 1);
    // Within 5 s of the failure: KSC is not asked again per trigger.
    x.advance(4_000);
    expect(await start().catch((y: unknown) => y)).toMatchObject({ code: 'ksc_task_not_applicable' });
    expect(walks()).toBe(before + 1);
    // 5 s after: asked again; it fails a second time, so the next try waits 10 s.
    x.advance(1_000);
    expect(await start().catch((y: unknown) => y)).toMatchObject({ code: 'ksc_http_error' });
    expect(walks()).toBe(before + 2);
    x.advance(9_000);
    await start().catch(() => undefined);
    expect(walks()).toBe(before + 2);
    x.advance(1_000);
    const r = await start();
    expect(r.task).toMatchObject({ taskId: '62', displayName: 'KUMA Quick scan (Windows)' });
    expect(walks()).toBe(before + 3);
    expect(runTaskIds()).toEqual(['62']);
    // A read that worked: the next is a minute away again.
    x.advance(30_000);
    await x.k.startTask({ assetId: assetIdFor(x.conn, WS42), tasks: ['No such task'] }).catch(() => undefined);
    expect(walks()).toBe(before + 3);
  } finally {
    await x.close();
  }
});

test('RunTask refused because the task was deleted (and created again) meanwhile: the start reads the list again and starts the new task once; the claim is taken once and kept', async () => {
  const x = await clocked();
  try {
    await x.k.listTasks('main');
    x.advance(60_000);
    let claims = 0;
    let releases = 0;
    const claim = { claim: async (): Promise<boolean> => (claims++, true), release: (): void => void releases++ };
    // KSC gets RunTask for the cached id after the task was deleted and created again.
    const release = emu.faults.holdNext({ method: 'Tasks.RunTask', onHeld: () => (recreate('21', '61'), release()) });
    const before = walks();
    const r = await x.k.startTask({ assetId: assetIdFor(x.conn, WS42), tasks: ['KUMA Virus scan (Windows)'], origin: 'rule', rule: 'scan', ...claim });
    expect(r.task.taskId).toBe('61');
    expect(runTaskIds()).toEqual(['21', '61']);
    expect(emu.runs.map((y) => y.taskId)).toEqual(['61']);
    expect(walks()).toBe(before + 1);
    expect({ claims, releases }).toEqual({ claims: 1, releases: 0 });
    const runs = x.k.taskStatus({ assetId: assetIdFor(x.conn, WS42) });
    expect(runs.map((y) => [y.taskId, y.state])).toEqual([['61', 'requested'], ['21', 'failed']]);
    expect(runs[1]!.error).toMatch(/^not started: .*Tasks\.RunTask: PxgError 1168 .*the task is no longer in KSC/);
    expect(x.lines.some((l) => /"level":"info".*KSC refused RunTask and the task is no longer in KSC/.test(l) && l.includes('"newTaskId":"61"'))).toBe(true);

    // Deleted for good: chosen again, nothing applies; the claim is given back once.
    x.advance(60_000);
    const gone = emu.faults.holdNext({ method: 'Tasks.RunTask', onHeld: () => (recreate('61', null), gone()) });
    claims = 0;
    const e = await x.k.startTask({ assetId: assetIdFor(x.conn, WS77), tasks: ['KUMA Virus scan (Windows)'], ...claim }).catch((y: unknown) => y);
    expect(e).toMatchObject({ code: 'ksc_task_not_applicable' });
    expect((e as Error).message).toMatch(/no KUMA\* task with this name/);
    expect({ claims, releases }).toEqual({ claims: 1, releases: 1 });
    expect(emu.runs.map((y) => y.taskId)).toEqual(['61']);

    // Refused for another reason (the task is still in KSC): not repeated, claim given back.
    x.advance(60_000);
    x.k.editConnection('main', { secret: { user: 'viewer', password: 'viewer-pass-123' } });
    const n = runTaskIds().length;
    const denied = await x.k.startTask({ assetId: assetIdFor(x.conn, WS42), tasks: ['KUMA Update (Windows)'], ...claim }).catch((y: unknown) => y);
    expect(denied).toBeInstanceOf(KscPxgError);
    expect(runTaskIds().length).toBe(n + 1);
    expect(releases).toBe(2);
  } finally {
    await x.close();
  }
});

test('a RunTask queued behind a call that timed out is not sent: the start is reported as not started and the claim is given back', async () => {
  const x = await clocked({ retries: 0, timeoutMs: 1000 });
  try {
    await x.k.listTasks('main');
    let releases = 0;
    const n = runTaskIds().length;
    // While the ping that comes right before RunTask is in KSC, a task-list read (a call that
    // creates an iterator) queues behind it, so RunTask queues behind that read; KSC holds
    // the read past the timeout, and the client keeps the socket for its late answer.
    let read: Promise<unknown> | undefined;
    let releaseRead: (() => void) | undefined;
    const releasePing = emu.faults.holdNext({
      method: 'Session.Ping',
      onHeld: () => {
        releaseRead = emu.faults.holdNext({ method: 'Tasks.ResetTasksIterator' });
        read = x.k.listTasks('main', { refresh: true }).catch((y: unknown) => y);
        releasePing();
      },
    });
    const e = await x.k
      .startTask({ assetId: assetIdFor(x.conn, WS42), tasks: ['KUMA Virus scan (Windows)'], claim: async () => true, release: () => void releases++ })
      .catch((y: unknown) => y);
    expect(await read).toMatchObject({ code: 'ksc_timeout', method: 'Tasks.ResetTasksIterator' });
    expect(e).toMatchObject({ code: 'ksc_transport_error', method: 'Tasks.RunTask', beforeSend: true });
    expect(releases).toBe(1);
    const run = x.k.taskStatus({ assetId: assetIdFor(x.conn, WS42) })[0]!;
    expect(run).toMatchObject({ taskId: '21', state: 'failed' });
    expect(run.error).toMatch(/^not started: .*Tasks\.RunTask: .*the request was not sent/);
    releaseRead!();
    await waitFor(() => emu.openTaskIterators() === 0, 30_000, 'the late iterator released');
    expect(runTaskIds().length).toBe(n);
    expect(emu.runs).toEqual([]);
  } finally {
    await x.close();
  }
});

test('task-state events out of order: a late "running" after the run completed, or a "created" for a run cefd did not request, opens no run and holds back no start', async () => {
  await k.listTasks('main');
  delete emu.taskEvents.target;
  const r = await k.startTask({ assetId: asset(WS42), tasks: ['KUMA Update (Windows)'] });
  const t0 = Date.parse(r.run.requestedAt!);
  const ev = (state: number, old: number, at: number) =>
    decode(`CEF:0|KasperskyLab|SecurityCenter|13.2|KLPRCI_TaskState|State|1|rt=${at} dhost=WS-0142 dst=10.0.12.42 cs4=22 cs4Label=TaskId cn2=${state} cn2Label=TaskNewState cn1=${old} cn1Label=TaskOldState`);
  // KSC's order: running at +1 s, completed at +5 s; delivered the other way round
  // (two decode workers, UDP, a redelivered cluster message).
  expect(k.applyTaskStateEvent(ev(4, 1, t0 + 5000))).toMatchObject({ outcome: 'updated', runs: [{ id: r.run.id, state: 'completed' }] });
  expect(k.applyTaskStateEvent(ev(1, 0, t0 + 1000))).toMatchObject({ outcome: 'ignored', runs: [] });
  expect(k.taskStatus({ assetId: asset(WS42) }).map((x) => [x.id, x.state])).toEqual([[r.run.id, 'completed']]);
  expect(k.isRunning('22', asset(WS42))).toBe(false);
  // A "created" (state 0) after that, as KSC sends when someone schedules the task: nothing runs yet.
  expect(k.applyTaskStateEvent(ev(0, 7, t0 + 60_000))).toMatchObject({ outcome: 'ignored', runs: [] });
  const next = await k.startTask({ assetId: asset(WS42), tasks: ['KUMA Update (Windows)'] });
  expect(next.run).toMatchObject({ state: 'requested', origin: 'manual' });
  // A run started in KSC by someone else, after cefd's ended: still recorded (origin scope).
  expect(k.applyTaskStateEvent(ev(4, 1, Date.parse(next.run.requestedAt!) + 5000))).toMatchObject({ outcome: 'updated', runs: [{ id: next.run.id, state: 'completed' }] });
  expect(k.applyTaskStateEvent(ev(1, 0, Date.parse(next.run.requestedAt!) + 3_600_000))).toMatchObject({ outcome: 'created', runs: [{ origin: 'scope', state: 'running' }] });
  // A start KSC refused ended by cefd's clock: a run KSC reports right after, its clock two
  // minutes behind, is still recorded (the clocks' allowance).
  k.editConnection('main', { secret: { user: 'viewer', password: 'viewer-pass-123' } });
  await expect(k.startTask({ assetId: asset(WS77), tasks: ['KUMA Update (Windows)'] })).rejects.toMatchObject({ method: 'Tasks.RunTask' });
  const behind = decode(`CEF:0|KasperskyLab|SecurityCenter|13.2|KLPRCI_TaskState|State|1|rt=${Date.now() - 120_000} dhost=WS-0177 dst=10.0.12.77 cs4=22 cs4Label=TaskId cn2=1 cn2Label=TaskNewState cn1=0 cn1Label=TaskOldState`);
  expect(k.applyTaskStateEvent(behind)).toMatchObject({ outcome: 'created', runs: [{ origin: 'scope', state: 'running' }] });
});

test('RunTask without an answer in time (the task may have started): the task-state events still update that run, before or after the timeout', async () => {
  const { k3, c3, t } = await shortTimeout();
  try {
    delete emu.taskEvents.target;
    const ev = (state: number, old: number, host: string, ip: string) =>
      decode(`CEF:0|KasperskyLab|SecurityCenter|13.2|KLPRCI_TaskState|State|1|rt=${Date.now()} dhost=${host} dst=${ip} cs4=22 cs4Label=TaskId cn2=${state} cn2Label=TaskNewState cn1=${old} cn1Label=TaskOldState`);
    emu.faults.answerDelayMs['Tasks.RunTask'] = 1000;
    // (a) The events come while RunTask waits for its late answer: their news stands.
    const early = k3.startTask({ assetId: assetIdFor(c3, WS42), tasks: ['KUMA Update (Windows)'] });
    await waitFor(() => emu.calls.some((c) => c.method === 'Tasks.RunTask'), 10_000, 'RunTask sent');
    expect(k3.applyTaskStateEvent(ev(1, 0, 'WS-0142', '10.0.12.42'))).toMatchObject({ outcome: 'updated' });
    expect(k3.applyTaskStateEvent(ev(4, 1, 'WS-0142', '10.0.12.42'))).toMatchObject({ outcome: 'updated' });
    const a = await early;
    expect(k3.getTaskRun(a.run.id)).toMatchObject({ state: 'completed', kscState: 4, origin: 'manual', error: null });
    // (b) The events come after the timeout: the run marked failed for KSC's silence takes them.
    const e = await k3.startTask({ assetId: assetIdFor(c3, WS77), tasks: ['KUMA Update (Windows)'] }).catch((x: unknown) => x);
    expect(e).toMatchObject({ code: 'ksc_timeout', method: 'Tasks.RunTask' });
    const failed = k3.taskStatus({ assetId: assetIdFor(c3, WS77) })[0]!;
    expect(failed).toMatchObject({ state: 'failed', kscState: null, origin: 'manual' });
    expect(k3.applyTaskStateEvent(ev(1, 0, 'WS-0177', '10.0.12.77'))).toMatchObject({ outcome: 'updated', runs: [{ id: failed.id, state: 'running', finishedAt: null, error: null }] });
    expect(k3.applyTaskStateEvent(ev(4, 1, 'WS-0177', '10.0.12.77'))).toMatchObject({ outcome: 'updated', runs: [{ id: failed.id, state: 'completed' }] });
    expect(k3.taskStatus({ assetId: assetIdFor(c3, WS77) }).map((x) => [x.id, x.origin, x.state])).toEqual([[failed.id, 'manual', 'completed']]);
    // (c) Events long after (an hour past the RunTask) are a run of their own; a "created" revives nothing.
    const e2 = await k3.startTask({ assetId: assetIdFor(c3, WS77), tasks: ['KUMA Update (Windows)'], skipIfRunning: false }).catch((x: unknown) => x);
    expect(e2).toMatchObject({ code: 'ksc_timeout' });
    const silent = k3.taskStatus({ assetId: assetIdFor(c3, WS77) })[0]!;
    expect(silent.error).toMatch(/^no answer to RunTask \(the task may have started\): /);
    const after = (ms: number, state: number, old: number) =>
      decode(`CEF:0|KasperskyLab|SecurityCenter|13.2|KLPRCI_TaskState|State|1|rt=${Date.parse(silent.requestedAt!) + ms} dhost=WS-0177 dst=10.0.12.77 cs4=22 cs4Label=TaskId cn2=${state} cn2Label=TaskNewState cn1=${old} cn1Label=TaskOldState`);
    expect(k3.applyTaskStateEvent(after(1000, 0, 7))).toMatchObject({ outcome: 'ignored' });
    expect(k3.getTaskRun(silent.id)).toMatchObject({ state: 'failed' });
    expect(k3.applyTaskStateEvent(after(2 * 3_600_000, 1, 0))).toMatchObject({ outcome: 'created', runs: [{ origin: 'scope', state: 'running' }] });
    expect(k3.getTaskRun(silent.id)).toMatchObject({ state: 'failed', kscState: null });
  } finally {
    emu.faults.clear();
    await k3.close();
    t.cleanup();
  }
});

test('rule starts over one task scope: a start for another asset of the scope within the cool-down covered it (one RunTask for a burst); manual starts and a start KSC refused do not count', async () => {
  await k.listTasks('main');
  delete emu.taskEvents.target;
  const runTasks = () => emu.calls.filter((c) => c.method === 'Tasks.RunTask').length;
  const rule = (host: string) => k.startTask({ assetId: asset(host), tasks: ['KUMA Update (Windows)'], origin: 'rule', rule: 'r1', cooldownMs: 600_000 });
  // A start KSC refused (a read-only account) started nothing: it does not count.
  k.editConnection('main', { secret: { user: 'viewer', password: 'viewer-pass-123' } });
  await expect(rule(WS77)).rejects.toMatchObject({ method: 'Tasks.RunTask' });
  k.editConnection('main', { secret: { user: 'kuma', password: PASSWORD } });
  expect(runTasks()).toBe(1);
  emu.calls.length = 0;
  // WS-0142 and WS-0177 are both in the scope of task 22 (group Workstations).
  const outcomes = await Promise.allSettled([rule(WS42), rule(WS77)]);
  expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected']);
  expect((outcomes[1] as PromiseRejectedResult).reason).toMatchObject({ code: 'ksc_task_cooldown', message: expect.stringMatching(/started on its whole scope, which holds asset WS-0177, less than 600 s ago \(for WS-0142\)/) });
  expect(runTasks()).toBe(1);
  // A manual start is the operator's call.
  await k.startTask({ assetId: asset(WS77), tasks: ['KUMA Update (Windows)'] });
  expect(runTasks()).toBe(2);
});
