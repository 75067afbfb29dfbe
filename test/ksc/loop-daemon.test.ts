/**
 * The whole KSC loop in one daemon: a connection added with the CLI,
 * assets imported through the admin API, a detection event over TCP, the response rule
 * starts the task, RunTask reaches the KSC emulator, the emulator sends KLPRCI_TaskState
 * events back to the daemon's TCP listener, and the run becomes "completed".
 */
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { startKscEmulator, defaultModel, type KscEmulator } from '../helpers/ksc-emulator/index.js';
import { readNdjson, scrape, sendTcp, waitFor } from '../helpers/daemon.js';
import { api, runCli, startKscDaemon, type ApiAnswer, type KscTestDaemon, ADMIN_TOKEN, DAEMON_BASE_YAML } from '../helpers/ksc-daemon.js';

const PASSWORD = 'S3cret-KSC-pass!w0rd';
const WS42_HOST = 'c2b22f83-307c-45aa-8533-5ffffbcc6bf1';
const RULE = 'scan-on-detection';

const YAML = `
${DAEMON_BASE_YAML}metrics: { enabled: true, host: 127.0.0.1, port: 0 }
ksc:
  sync_on_start: false
  request_timeout: 3s
  retries: 1
  admin: { enabled: true, host: 127.0.0.1, port: 0, bearer_token: ${ADMIN_TOKEN} }
  trusted_sources: [{ connection: main, listeners: [tcp], cidrs: [127.0.0.1/32] }]
  response_rules:
    - name: ${RULE}
      type: ksctasks
      tasks: ["KUMA Scan servers", "KUMA scan"]
      asset_field: device
      filter: 'ksc.category == "detection"'
      workers: 2
      cooldown: 0s
`;

/** A KSC detection for WS-0142, as KSC exports it in CEF. */
function detection(n: number): string {
  return (
    `CEF:0|KasperskyLab|SecurityCenter|13.2.0.1511|GNRL_EV_VIRUS_FOUND|Malicious object detected|5|rt=${Date.now()} ` +
    `cs9=Workstations cs9Label=GroupName dhost=WS-0142 dst=10.0.12.42 cs2=KES cs2Label=ProductName cs3=11.0.0.0 cs3Label=ProductVersion ` +
    `cs1=EICAR-Test-File cs1Label=VirusName cs4=C:\\\\Users\\\\u\\\\eicar${n}.com cs4Label=ObjectName duser=CORP\\\\u\n`
  );
}

let emu: KscEmulator;
let d: KscTestDaemon;
/** Every text cefd produced in a test: CLI output, API answers (logs are in d.logs). */
const outputs: string[] = [];

async function call(method: string, path: string, body?: unknown): Promise<ApiAnswer> {
  const r = await api(d.adminPort(), method, path, body !== undefined ? { body } : {});
  outputs.push(r.text);
  return r;
}

async function cli(args: string[], input?: string) {
  const r = await runCli([...args, '--state-dir', join(d.dir, 'state')], input !== undefined ? { input } : {});
  outputs.push(r.stdout, r.stderr);
  return r;
}

async function runsOf(assetId: string): Promise<Record<string, unknown>[]> {
  const r = await call('GET', `/api/v1/tasks/runs?asset=${encodeURIComponent(assetId)}`);
  expect(r.status).toBe(200);
  return r.json!['runs'] as Record<string, unknown>[];
}

async function rule(): Promise<{ counters: Record<string, number>; queued: number; inFlight: number }> {
  const r = await call('GET', `/api/v1/rules/${RULE}`);
  expect(r.status).toBe(200);
  return r.json!['rule'] as { counters: Record<string, number>; queued: number; inFlight: number };
}

/** Adds the connection with the CLI (password on stdin, certificate pin), imports, returns WS-0142's asset id. */
async function connectAndImport(): Promise<string> {
  const add = await cli(['ksc', 'connections', 'add', '--name', 'main', '--url', emu.url, '--pin', emu.cert.fingerprint256, '--user', 'kuma', '--password-stdin'], `${PASSWORD}\n`);
  expect(add.stderr).toBe('');
  expect(add.code).toBe(0);
  const sync = await call('POST', '/api/v1/assets/sync', {});
  expect(sync.status).toBe(200);
  expect(sync.json!['results']).toMatchObject([{ connection: 'main', ok: true, hosts: 5 }]);
  const assets = (await call('GET', '/api/v1/assets')).json!['assets'] as { id: string; kscHostId: string }[];
  const ws = assets.find((a) => a.kscHostId === WS42_HOST);
  expect(ws).toBeDefined();
  return ws!.id;
}

beforeEach(async () => {
  outputs.length = 0;
  const model = defaultModel();
  // A scan task on the Workstations group (WS-0142, WS-0177; OLD-LAPTOP has no KES).
  model.tasks.push({ id: '60', displayName: 'KUMA scan', taskType: 'ODS', product: 'KES', version: '11.0.0.0', groupId: 1 });
  emu = await startKscEmulator({ model });
  d = await startKscDaemon(YAML);
  emu.taskEvents = { target: { host: '127.0.0.1', port: d.port('tcp') }, runningAfterMs: 20, finishAfterMs: 60 };
});

afterEach(async () => {
  await emu.close();
  await d.stop();
  rmSync(d.dir, { recursive: true, force: true });
});

test('full loop: detection event → response rule → RunTask → task-state events → run completed', async () => {
  const assetId = await connectAndImport();
  await sendTcp(d.port('tcp'), [detection(1)]);

  await waitFor(async () => (await runsOf(assetId))[0]?.['state'] === 'completed', 30_000, 'the task run to complete');
  const run = (await runsOf(assetId))[0]!;
  expect(run).toMatchObject({ taskId: '60', taskName: 'KUMA scan', state: 'completed', kscState: 4, kscStateName: 'completed', origin: 'rule', rule: RULE, error: null });
  expect(run['startedAt']).not.toBeNull();
  expect(run['finishedAt']).not.toBeNull();
  // "KUMA Scan servers" comes first in the rule but WS-0142 is not in its scope: "KUMA scan" started, once.
  expect(emu.calls.filter((c) => c.method === 'Tasks.RunTask').map((c) => c.body['strTask'])).toEqual(['60']);
  expect(emu.runs).toEqual([{ taskId: '60', hostIds: expect.arrayContaining([WS42_HOST]), user: 'kuma' }]);

  // The run is readable by id, and the CLI sees the same status.
  const byId = await call('GET', `/api/v1/tasks/runs/${String(run['id'])}`);
  expect(byId.json!['run']).toMatchObject({ id: run['id'], state: 'completed' });
  const status = await cli(['ksc', 'tasks', 'status', '--asset', assetId, '--json']);
  expect(status.code).toBe(0);
  expect(JSON.parse(status.stdout).runs[0]).toMatchObject({ id: run['id'], state: 'completed', origin: 'rule' });

  // The detection went out enriched with the device asset; so did the task-state events.
  await waitFor(() => readNdjson(join(d.dir, 'events.ndjson'), { tolerateTornTail: true }).length >= 3, 30_000, 'events in the output');
  const events = readNdjson(join(d.dir, 'events.ndjson'));
  // KSC's event type is the CEF header's class id (the ksc object carries derived fields only).
  const typeOf = (e: Record<string, unknown>) => (e['cef'] as { deviceEventClassId?: string } | undefined)?.deviceEventClassId;
  const det = events.find((e) => typeOf(e) === 'GNRL_EV_VIRUS_FOUND');
  expect(det?.['assets']).toEqual({ destination: assetId, device: assetId });
  const states = events.filter((e) => typeOf(e) === 'KLPRCI_TaskState' && (e['assets'] as { device?: string } | undefined)?.device === assetId);
  expect(states.map((e) => (e['ksc'] as { task: { newState: string } }).task.newState)).toEqual(['running', 'completed']);

  // Metrics: one trigger, one start; the task-state events updated the run.
  const m = await scrape(d.metricsPort());
  expect(m.get(`cefd_ksc_rule_triggered_total{rule="${RULE}"}`)).toBe(1);
  expect(m.get(`cefd_ksc_task_starts_total{rule="${RULE}",result="started"}`)).toBe(1);
  expect(m.get('cefd_ksc_task_state_events_total{outcome="updated"}')).toBeGreaterThanOrEqual(2);
  expect(m.get('cefd_ksc_asset_sync_total{result="ok"}')).toBe(1);
  expect(m.get('cefd_ksc_assets{tenant="default",state="active"}')).toBe(4);
  expect(m.get('cefd_ksc_task_runs{state="completed"}')).toBeGreaterThanOrEqual(1);
  expect(m.get('cefd_ksc_enriched_events_total')).toBeGreaterThanOrEqual(3);
});

test('a second matching event while the task runs does not start it again', async () => {
  const assetId = await connectAndImport();
  emu.taskEvents.finishAfterMs = 60_000; // "Running" comes, "Completed" not during this test
  await sendTcp(d.port('tcp'), [detection(1)]);
  await waitFor(async () => (await runsOf(assetId))[0]?.['state'] === 'running', 30_000, 'the run to be running');
  await waitFor(async () => (await rule()).counters['started'] === 1, 30_000, 'the start to be counted');

  await sendTcp(d.port('tcp'), [detection(2), detection(3)]);
  await waitFor(async () => (await rule()).counters['triggered'] === 3, 30_000, 'three triggers');
  await waitFor(async () => {
    const r = await rule();
    return r.queued === 0 && r.inFlight === 0;
  }, 30_000, 'the rule to be idle');
  const c = (await rule()).counters;
  expect(c['started']).toBe(1);
  expect(c['skippedRunning']! + c['skippedQueued']!).toBe(2);
  expect(c['skippedRunning']).toBeGreaterThanOrEqual(1);
  expect(c['failed']).toBe(0);
  // The last triggers, oldest first: the start, then the two skipped ones (the console shows them).
  const last = (await call('GET', `/api/v1/rules/${RULE}`)).json!['rule'] as { lastTriggers: { assetId: string; result: string; task: string | null }[] };
  expect(last.lastTriggers).toHaveLength(3);
  expect(last.lastTriggers[0]).toMatchObject({ assetId, result: 'started', task: 'KUMA scan' });
  expect(last.lastTriggers.slice(1).every((t) => t.result === 'skipped_running' || t.result === 'skipped_queued')).toBe(true);
  expect(emu.calls.filter((x) => x.method === 'Tasks.RunTask')).toHaveLength(1);
  expect(await runsOf(assetId)).toHaveLength(1);

  // A manual start through the API is refused too (409), unless forced.
  const again = await call('POST', '/api/v1/tasks/start', { asset: assetId, tasks: ['KUMA scan'] });
  expect(again.status).toBe(409);
  expect(again.json).toEqual({ error: { code: 'ksc_task_running', message: expect.stringContaining('already running') } });
  const forced = await call('POST', '/api/v1/tasks/start', { asset: assetId, tasks: ['KUMA scan'], force: true });
  expect(forced.status).toBe(201);
  expect(emu.calls.filter((x) => x.method === 'Tasks.RunTask')).toHaveLength(2);
});

test('a failing KSC: the start counts as failed, the run is failed, the daemon keeps going', async () => {
  const assetId = await connectAndImport();
  emu.faults.failNext(500, { method: 'Tasks.RunTask', body: 'internal error' });
  await sendTcp(d.port('tcp'), [detection(1)]);
  await waitFor(async () => (await rule()).counters['failed'] === 1, 30_000, 'a failed start');
  const run = (await runsOf(assetId))[0]!;
  expect(run).toMatchObject({ state: 'failed', origin: 'rule', rule: RULE });
  expect(String(run['error'])).toMatch(/Tasks\.RunTask: HTTP 500/);
  const m = await scrape(d.metricsPort());
  expect(m.get(`cefd_ksc_task_starts_total{rule="${RULE}",result="failed"}`)).toBe(1);
  expect(m.get(`cefd_ksc_task_start_failures_total{rule="${RULE}",code="ksc_http_error"}`)).toBe(1);
  const warn = d.logs.parsed().find((l) => l['code'] === 'ksc_http_error' && l['rule'] === RULE);
  expect(warn).toMatchObject({ level: 'warn' });

  // KSC unreachable for an import: counted and logged as a warning, nothing archived.
  emu.faults.failNext(503, { method: 'HostGroup.FindHosts', times: 5 });
  const sync = await call('POST', '/api/v1/assets/sync', {});
  expect(sync.status).toBe(200);
  expect(sync.json!['results']).toMatchObject([{ connection: 'main', ok: false, error: expect.stringMatching(/HTTP 503/) }]);
  const m2 = await scrape(d.metricsPort());
  emu.faults.clear();
  expect(m2.get('cefd_ksc_asset_sync_total{result="failed"}')).toBe(1);
  expect(m2.get('cefd_ksc_assets{tenant="default",state="active"}')).toBe(4);
  expect(d.logs.parsed().some((l) => l['level'] === 'warn' && String(l['msg']).startsWith('KSC asset import failed'))).toBe(true);

  // The next event starts the task (the failed run does not block it).
  await sendTcp(d.port('tcp'), [detection(2)]);
  await waitFor(async () => (await runsOf(assetId))[0]?.['state'] === 'completed', 30_000, 'the second run to complete');
  expect((await rule()).counters).toMatchObject({ started: 1, failed: 1 });
});

test('the password appears in no log line, CLI output, API answer, event or metric', async () => {
  const assetId = await connectAndImport();
  // More ways to touch the secret: list and show through CLI and API, a second connection
  // created and edited through the API, a wrong password (login refused), a task start.
  outputs.push(...(await Promise.all([cli(['ksc', 'connections', 'list']), cli(['ksc', 'connections', 'list', '--json'])])).map((r) => r.stdout));
  const created = await call('POST', '/api/v1/connections', { name: 'second', url: emu.url, tls: { pinSha256: emu.cert.fingerprint256 }, secret: { user: 'kuma', password: PASSWORD } });
  expect(created.status).toBe(201);
  expect(created.json!['connection']).toMatchObject({ name: 'second', secret: { set: true, source: 'file' } });
  const id = (created.json!['connection'] as { id: string }).id;
  expect((await call('PATCH', `/api/v1/connections/${id}`, { secret: { user: 'kuma', password: `${PASSWORD}-wrong` } })).status).toBe(200);
  const test1 = await call('POST', `/api/v1/connections/${id}/test`);
  expect(test1.json!['result']).toMatchObject({ ok: false, code: 'ksc_auth_failed' });
  await call('POST', '/api/v1/assets/sync', { connection: 'second' });
  await cli(['ksc', 'connections', 'test', 'second', '--verbose']);
  await cli(['ksc', 'assets', 'sync', '--connection', 'second', '--verbose', '--json']);
  await call('GET', '/api/v1/connections');
  await call('GET', `/api/v1/connections/main`);
  await sendTcp(d.port('tcp'), [detection(1)]);
  await waitFor(async () => (await runsOf(assetId))[0]?.['state'] === 'completed', 30_000, 'the run to complete');
  await cli(['ksc', 'tasks', 'status', '--verbose']);

  const metrics = await (await fetch(`http://127.0.0.1:${d.metricsPort()}/metrics`)).text();
  const all = [...outputs, ...d.logs.lines, readFileSync(join(d.dir, 'events.ndjson'), 'utf8'), metrics].join('\n');
  expect(d.logs.lines.length).toBeGreaterThan(10);
  expect(all).toContain('ksc_auth_failed'); // the failures were reported...
  for (const secret of [PASSWORD, `${PASSWORD}-wrong`, Buffer.from(PASSWORD).toString('base64'), Buffer.from(`${PASSWORD}-wrong`).toString('base64'), ADMIN_TOKEN]) {
    expect(all.includes(secret), `found ${secret.slice(0, 4)}… in the output`).toBe(false); // ...without the secrets
  }
});
