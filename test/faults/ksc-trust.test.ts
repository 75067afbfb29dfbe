/**
 * KSC actions only from KSC, black-box: `cefd run` as a child process with a TLS listener
 * for KSC (its self-signed client certificate pinned) and an open TCP listener; the KSC
 * emulator (test/helpers/ksc-emulator) stands in for KSC. A detection forged on the open
 * listener is collected but starts nothing; the same detection from KSC's TLS connection
 * starts the task; task-state events on the open listener do not move the run. Counts come
 * from the emulator's call log, /metrics, the events file and `cefd ksc tasks status`.
 * Also: `cefd ksc assets sync` survives a single 503 on Session.StartSession.
 */
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { defaultModel, startKscEmulator, type KscEmulator } from '../helpers/ksc-emulator/index.js';
import { readNdjson, scrape, sendTcp, tempDir, waitFor } from '../helpers/daemon.js';
import { freePort, runCefd, type ChildDaemon } from '../helpers/child.js';
import { runCli } from '../helpers/ksc-daemon.js';
import { makePki } from '../helpers/pki.js';

const PASSWORD = 'S3cret-KSC-pass!w0rd';
const WS42_HOST = 'c2b22f83-307c-45aa-8533-5ffffbcc6bf1';

let emu: KscEmulator;
let dir: string;
const children: ChildDaemon[] = [];

beforeEach(async () => {
  const model = defaultModel();
  model.tasks.push({ id: '60', displayName: 'KUMA scan', taskType: 'ODS', product: 'KES', version: '11.0.0.0', groupId: 1 });
  emu = await startKscEmulator({ model });
  dir = tempDir();
});
afterEach(async () => {
  for (const c of children.splice(0)) {
    c.proc.kill('SIGKILL');
    await c.exit;
  }
  await emu.close();
  rmSync(dir, { recursive: true, force: true });
});

const cli = (args: string[], input?: string) => runCli([...args, '--state-dir', join(dir, 'state')], { cwd: dir, ...(input !== undefined ? { input } : {}) });

function detection(n: number): string {
  return (
    `CEF:0|KasperskyLab|SecurityCenter|13.2.0.1511|GNRL_EV_VIRUS_FOUND|Malicious object detected|5|rt=${Date.now()} ` +
    `cs9=Workstations cs9Label=GroupName dhost=WS-0142 dst=10.0.12.42 cs2=KES cs2Label=ProductName cs3=11.0.0.0 cs3Label=ProductVersion ` +
    `cs1=EICAR-Test-File cs1Label=VirusName cs4=C:\\\\eicar${n}.com cs4Label=ObjectName\n`
  );
}

async function setUpConnection(): Promise<string> {
  const add = await cli(['ksc', 'connections', 'add', '--name', 'main', '--url', emu.url, '--pin', emu.cert.fingerprint256, '--user', 'kuma', '--password-stdin'], `${PASSWORD}\n`);
  expect(add.code).toBe(0);
  // One 503 on the login: retried, the import succeeds.
  emu.faults.failNext(503, { method: 'Session.StartSession', times: 1 });
  const sync = await cli(['ksc', 'assets', 'sync']);
  expect(sync.stderr).toContain('KSC call failed; retrying');
  expect(sync.code).toBe(0);
  expect(emu.methods().filter((m) => m === 'Session.StartSession').length).toBe(2);
  const list = await cli(['ksc', 'assets', 'list', '--json']);
  const ws = (JSON.parse(list.stdout) as { assets: { id: string; kscHostId: string }[] }).assets.find((a) => a.kscHostId === WS42_HOST);
  expect(ws).toBeDefined();
  return ws!.id;
}

test('a forged detection or task state on an untrusted listener acts on nothing; KSC\'s pinned TLS connection does', async () => {
  const pki = makePki();
  const assetId = await setUpConnection();
  const tlsPort = await freePort();
  const openPort = await freePort();
  const metrics = await freePort();
  const c = runCefd(
    dir,
    `state_dir: ./state
listeners:
  - name: ksc-tls
    type: tls
    host: 127.0.0.1
    port: ${tlsPort}
    tls: { cert_file: "${pki.serverCert}", key_file: "${pki.serverKey}", client_fingerprints: ["${pki.selfSignedFingerprint}"] }
  - { name: open, type: tcp, host: 127.0.0.1, port: ${openPort} }
outputs: [ { name: out, type: file, path: ./events.ndjson } ]
dead_letter: { path: ./dead.ndjson }
metrics: { host: 127.0.0.1, port: ${metrics} }
ksc:
  sync_on_start: false
  request_timeout: 3s
  trusted_sources:
    - { connection: main, listeners: [ksc-tls], client_fingerprints: ["${pki.selfSignedFingerprint}"] }
  response_rules:
    - { name: scan, type: ksctasks, tasks: ["KUMA scan"], filter: 'ksc.category == "detection"', cooldown: 0s }
`,
  );
  children.push(c);
  await c.until('cefd started');
  // KSC's task-state events arrive on the open listener here: as a forger's would.
  emu.taskEvents = { target: { host: '127.0.0.1', port: openPort }, runningAfterMs: 20, finishAfterMs: 60 };

  // 1. Forged on the open listener: collected, counted, no RunTask.
  await sendTcp(openPort, [detection(1)]);
  await waitFor(async () => (await scrape(metrics)).get('cefd_ksc_untrusted_events_total{kind="rule_trigger"}') === 1, 30_000, 'the untrusted trigger');
  await waitFor(() => readNdjson(join(dir, 'events.ndjson'), { tolerateTornTail: true }).length === 1, 30_000, 'the forged event collected');
  expect(emu.methods().filter((m) => m === 'Tasks.RunTask')).toHaveLength(0);

  // 2. From KSC's TLS connection with its pinned certificate: the task starts, once.
  const ca = readFileSync(pki.caCert);
  await sendTcp(tlsPort, [detection(2)], { tls: { ca, cert: pki.selfSignedCert, key: pki.selfSignedKey, servername: 'localhost' } });
  await waitFor(() => emu.methods().filter((m) => m === 'Tasks.RunTask').length === 1, 30_000, 'RunTask');

  // 3. The task-state events (on the open listener) do not move the run.
  await emu.flushEvents();
  await waitFor(async () => ((await scrape(metrics)).get('cefd_ksc_untrusted_events_total{kind="task_state"}') ?? 0) >= 2, 30_000, 'untrusted task states');
  const status = await cli(['ksc', 'tasks', 'status', '--asset', assetId, '--json']);
  expect(status.code).toBe(0);
  const runs = (JSON.parse(status.stdout) as { runs: { state: string; origin: string }[] }).runs;
  expect(runs).toHaveLength(1);
  expect(runs[0]).toMatchObject({ state: 'requested', origin: 'rule' });
  const m = await scrape(metrics);
  expect(m.get('cefd_ksc_rule_triggered_total{rule="scan"}')).toBe(1);
  expect(m.get('cefd_ksc_task_state_events_total{outcome="updated"}') ?? 0).toBe(0);
  // Logged once per kind and listener, however many arrive.
  const warnings = c.text().split('\n').filter((l) => l.includes('"code":"ksc_untrusted_origin"') && l.includes('"kind"'));
  expect(warnings.map((l) => (JSON.parse(l) as { kind: string }).kind).sort()).toEqual(['rule_trigger', 'task_state']);
  c.proc.kill('SIGTERM');
  expect(await c.exit).toBe(0);
});
