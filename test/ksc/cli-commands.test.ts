/**
 * `cefd ksc ...` as a child process (dist/src/cli.js; `npm test` builds it): connections,
 * tenants, assets and tasks against a KSC emulator; `--json`; exit codes 0, 1, 64, 78; the
 * password never on the command line and never in any output.
 */
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { startKscEmulator, defaultModel, type KscEmulator } from '../helpers/ksc-emulator/index.js';
import { tempDir } from '../helpers/ksc-emulator/testkit.js';
import { runCli, type CliResult } from '../helpers/ksc-daemon.js';

const PASSWORD = 'S3cret-KSC-pass!w0rd';
const WS42 = 'c2b22f83-307c-45aa-8533-5ffffbcc6bf1';

let emu: KscEmulator;
let dir: string;
let cleanup: () => void;
const seen: CliResult[] = [];

async function ksc(args: string[], o: { input?: string; env?: Record<string, string>; state?: boolean } = {}): Promise<CliResult> {
  const r = await runCli(['ksc', ...args, ...(o.state === false ? [] : ['--state-dir', join(dir, 'state')])], { ...(o.input !== undefined ? { input: o.input } : {}), ...(o.env !== undefined ? { env: o.env } : {}), cwd: dir });
  seen.push(r);
  return r;
}

const json = (r: CliResult): Record<string, unknown> => JSON.parse(r.stdout) as Record<string, unknown>;

async function addMain(extra: string[] = []): Promise<string> {
  const r = await ksc(['connections', 'add', '--name', 'main', '--url', emu.url, '--pin', emu.cert.fingerprint256, '--user', 'kuma', '--password-stdin', '--json', ...extra], { input: `${PASSWORD}\n` });
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return (json(r)['connection'] as { id: string }).id;
}

beforeEach(async () => {
  seen.length = 0;
  emu = await startKscEmulator({ model: defaultModel() });
  const t = tempDir('cefd-ksc-cli-');
  dir = t.dir;
  cleanup = t.cleanup;
});

afterEach(async () => {
  // No command ever printed the password (or its base64 form).
  for (const r of seen) {
    for (const s of [PASSWORD, Buffer.from(PASSWORD).toString('base64')]) {
      expect(r.stdout).not.toContain(s);
      expect(r.stderr).not.toContain(s);
    }
  }
  await emu.close();
  cleanup();
});

test('connections: add, list (table and JSON), edit, disable/enable, test, delete', async () => {
  const id = await addMain();
  const mode = statSync(join(dir, 'state', 'ksc-secrets.json')).mode & 0o777;
  expect(mode).toBe(0o600);
  expect(readFileSync(join(dir, 'state', 'ksc-secrets.json'), 'utf8')).toContain('"user": "kuma"');

  const table = await ksc(['connections', 'list']);
  expect(table.code).toBe(0);
  const lines = table.stdout.trimEnd().split('\n');
  expect(lines[0]).toMatch(/^ID\s+TENANT\s+NAME\s+URL\s+STATE\s+TLS\s+SECRET\s+LAST IMPORT$/);
  expect(lines[1]).toMatch(new RegExp(`^${id}\\s+default\\s+main\\s+${emu.url.replace(/\./g, '\\.')}\\s+enabled\\s+pin [0-9a-f]{16}…\\s+file\\s+never$`));

  const list = await ksc(['connections', 'list', '--json']);
  expect(json(list)).toEqual({
    connections: [
      expect.objectContaining({ id, tenant: 'default', name: 'main', url: emu.url, disabled: false, lastSync: null, secret: { set: true, source: 'file' } }),
    ],
  });

  const edited = await ksc(['connections', 'edit', 'main', '--name', 'primary', '--json']);
  expect(edited.code).toBe(0);
  expect(json(edited)['connection']).toMatchObject({ id, name: 'primary' });
  // A new password alone keeps the user name.
  writeFileSync(join(dir, 'pw'), 'another-password-9\n', { mode: 0o600 });
  expect((await ksc(['connections', 'edit', id, '--password-file', join(dir, 'pw')])).code).toBe(0);
  const secrets = JSON.parse(readFileSync(join(dir, 'state', 'ksc-secrets.json'), 'utf8')) as { connections: Record<string, { user: string; password: string }> };
  expect(secrets.connections[id]).toEqual({ user: 'kuma', password: 'another-password-9' });
  const refused = await ksc(['connections', 'test', 'primary']);
  expect(refused.code).toBe(1);
  expect(refused.stdout).toMatch(/^default\/primary: FAILED \(ksc_auth_failed\): /);
  expect((await ksc(['connections', 'edit', 'primary', '--password-env', 'KSC_PW'], { env: { KSC_PW: PASSWORD } })).code).toBe(0);
  const ok = await ksc(['connections', 'test', 'primary']);
  expect(ok.stdout).toBe('default/primary: OK\n');
  expect(ok.code).toBe(0);

  const off = await ksc(['connections', 'disable', 'primary']);
  expect(off.stdout).toBe('disabled KSC connection default/primary\n');
  expect(json(await ksc(['connections', 'list', '--json']))['connections']).toMatchObject([{ disabled: true }]);
  expect((await ksc(['connections', 'enable', id])).stdout).toBe('enabled KSC connection default/primary\n');

  const del = await ksc(['connections', 'delete', 'primary']);
  expect(del.stdout).toBe(`deleted KSC connection default/primary (id ${id})\n`);
  expect(json(await ksc(['connections', 'list', '--json']))).toEqual({ connections: [] });
  expect(JSON.parse(readFileSync(join(dir, 'state', 'ksc-secrets.json'), 'utf8'))).toEqual({ version: 1, connections: {} });
  expect((await ksc(['connections', 'list'])).stdout).toBe('no KSC connections\n');
});

test('passwords: never from the command line; stdin, a file or an environment variable', async () => {
  const inline = await ksc(['connections', 'add', '--name', 'x', '--url', emu.url, '--user', 'kuma', `--password=${PASSWORD}`]);
  expect(inline.code).toBe(64);
  expect(inline.stderr).toBe('error: never give a password on the command line (ps shows it): use --password-stdin, --password-file or --password-env\n');
  const inline2 = await ksc(['connections', 'add', '--name', 'x', '--url', emu.url, '--user', 'kuma', '--password', PASSWORD]);
  expect(inline2.code).toBe(64);
  const two = await ksc(['connections', 'add', '--name', 'x', '--url', emu.url, '--user', 'kuma', '--password-stdin', '--password-env', 'HOME'], { input: PASSWORD });
  expect(two.code).toBe(64);
  expect(two.stderr).toMatch(/give only one of --password-stdin, --password-file, --password-env/);
  const noUser = await ksc(['connections', 'add', '--name', 'x', '--url', emu.url, '--password-stdin'], { input: PASSWORD });
  expect(noUser.code).toBe(64);
  expect(noUser.stderr).toBe('error: --user is required with a password\n');
  const none = await ksc(['connections', 'add', '--name', 'x', '--url', emu.url]);
  expect(none.code).toBe(64);
  expect(none.stderr).toBe('error: a KSC connection needs a secret (user name and password of a KSC internal user) (ksc_invalid_input)\n');
  const unset = await ksc(['connections', 'add', '--name', 'x', '--url', emu.url, '--user', 'kuma', '--password-env', 'CEFD_TEST_UNSET_VAR']);
  expect(unset.code).toBe(64);
  const missingFile = await ksc(['connections', 'add', '--name', 'x', '--url', emu.url, '--user', 'kuma', '--password-file', join(dir, 'nope')]);
  expect(missingFile.code).toBe(64);
  expect(missingFile.stderr).toMatch(/cannot read the password file .*: ENOENT/);
  const viaEnv = await ksc(['connections', 'add', '--name', 'env', '--url', emu.url, '--insecure', '--user', 'kuma', '--password-env', 'KSC_PW'], { env: { KSC_PW: PASSWORD } });
  expect(viaEnv.code).toBe(0);
  expect(viaEnv.stdout).toMatch(/^added KSC connection default\/env \(id [0-9a-f-]{36}, 127\.0\.0\.1:\d+, INSECURE\)\n$/);
  // A warning about --insecure comes from the client when it is used, not the password.
  const t = await ksc(['connections', 'test', 'env', '--verbose']);
  expect(t.code).toBe(0);
  expect(t.stderr).toMatch(/warning/);
});

test('usage, failure and configuration errors have their exit codes; --json errors too', async () => {
  const badUrl = await ksc(['connections', 'add', '--name', 'x', '--url', 'http://ksc/x', '--user', 'kuma', '--password-stdin', '--json'], { input: PASSWORD });
  expect(badUrl.code).toBe(64);
  expect(badUrl.stderr).toMatch(/^error: the URL "http:\/\/ksc\/x" is not hostname:port or IPv4:port: .* \(ksc_invalid_input\)\n$/);
  expect(json(badUrl)).toEqual({ error: { code: 'ksc_invalid_input', message: expect.stringContaining('is not hostname:port') } });
  expect((await ksc(['connections', 'add', '--url', emu.url])).code).toBe(64); // --name missing
  expect((await ksc(['connections', 'list', '--bogus'])).code).toBe(64);
  expect((await ksc(['connections', 'edit', 'nope'])).code).toBe(1);
  expect((await ksc(['tasks', 'status', '--limit', 'x'])).code).toBe(64);

  await addMain();
  const dup = await ksc(['connections', 'add', '--name', 'main', '--url', emu.url, '--user', 'kuma', '--password-stdin'], { input: PASSWORD });
  expect(dup.code).toBe(1);
  expect(dup.stderr).toBe('error: tenant "default" already has a KSC connection named "main" (ksc_conflict)\n');
  const nf = await ksc(['connections', 'delete', 'other', '--json']);
  expect(nf.code).toBe(1);
  expect(json(nf)).toEqual({ error: { code: 'ksc_not_found', message: 'no KSC connection "other"' } });
  const nothing = await ksc(['connections', 'edit', 'main']);
  expect(nothing.code).toBe(64);

  // KSC unreachable: a port nobody listens on.
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  await ksc(['connections', 'add', '--name', 'dead', '--url', `127.0.0.1:${port}`, '--pin', emu.cert.fingerprint256, '--user', 'kuma', '--password-stdin'], { input: PASSWORD });
  // (A configuration without retries keeps this quick.)
  writeFileSync(join(dir, 'fast.yaml'), 'ksc:\n  retries: 0\n');
  const sync = await ksc(['assets', 'sync', '--connection', 'dead', '--config', join(dir, 'fast.yaml')]);
  expect(sync.code).toBe(1);
  expect(sync.stdout).toMatch(/^default\/dead: FAILED: KSC 127\.0\.0\.1:\d+ .*connection failed \(ECONNREFUSED\)/);
  const tasks = await ksc(['tasks', 'list', '--connection', 'dead', '--json', '--config', join(dir, 'fast.yaml')]);
  expect(tasks.code).toBe(1);
  expect(json(tasks)).toMatchObject({ error: { code: 'ksc_transport_error' } });

  // --config: state_dir comes from it; a broken file exits 78.
  writeFileSync(join(dir, 'cefd.yaml'), `state_dir: ${join(dir, 'state')}\nksc:\n  request_timeout: 5s\n`);
  const viaConfig = await ksc(['connections', 'list', '--json', '--config', join(dir, 'cefd.yaml')], { state: false });
  expect(viaConfig.code).toBe(0);
  expect((json(viaConfig)['connections'] as unknown[]).length).toBe(2);
  writeFileSync(join(dir, 'bad.yaml'), 'ksc:\n  request_timout: 5s\n');
  const bad = await ksc(['connections', 'list', '--config', join(dir, 'bad.yaml')], { state: false });
  expect(bad.code).toBe(78);
  expect(bad.stderr).toMatch(/invalid configuration\n.*bad\.yaml:2: ksc\.request_timout: unknown key \(did you mean request_timeout\?\)/);
});

test('tenants, assets and tasks: import, list, show, start, status', async () => {
  const id = await addMain();
  const sync = await ksc(['assets', 'sync']);
  expect(sync.code).toBe(0);
  expect(sync.stdout).toMatch(/^default\/main: ok, 5 hosts \(5 new, 0 updated, 1 archived, 0 removed\) in \d+ ms\n$/);
  const syncJson = await ksc(['assets', 'sync', '--json']);
  expect(json(syncJson)['results']).toMatchObject([{ connectionId: id, ok: true, hosts: 5, updated: 5 }]);

  const list = await ksc(['assets', 'list']);
  const rows = list.stdout.trimEnd().split('\n');
  expect(rows[0]).toMatch(/^ID\s+TENANT\s+NAME\s+FQDN\s+IP\s+PLATFORM\s+GROUP\s+AGENT\s+LAST VISIBLE\s+PRODUCTS\s+STATUS$/);
  expect(rows).toHaveLength(5);
  expect(rows.find((r) => r.includes('WS-0142'))).toMatch(/ws-0142\.corp\.example\s+10\.0\.12\.42\s+windows\s+Workstations\s+yes\s+\S+Z\s+1103 1\.0\.0\.0, KES 11\.0\.0\.0\s+active$/);
  const all = json(await ksc(['assets', 'list', '--archived', '--json', '--connection', 'main']))['assets'] as { id: string; kscHostId: string; status: string }[];
  expect(all).toHaveLength(5);
  expect(json(await ksc(['assets', 'list', '--tenant', 'other', '--json']))).toEqual({ assets: [] });
  const ws = all.find((a) => a.kscHostId === WS42)!;
  const show = await ksc(['assets', 'show', ws.id]);
  expect(show.stdout).toContain(`id             ${ws.id}\n`);
  expect(show.stdout).toContain('IP addresses   10.0.12.42\n');
  expect(json(await ksc(['assets', 'show', ws.id, '--json']))['asset']).toMatchObject({ id: ws.id, displayName: 'WS-0142' });
  expect((await ksc(['assets', 'show', 'nope'])).code).toBe(1);

  const tasks = await ksc(['tasks', 'list', '--connection', 'main']);
  expect(tasks.stdout.split('\n')[0]).toMatch(/^TASK ID\s+NAME\s+TYPE\s+PRODUCT\s+PLATFORM\s+GROUP ID$/);
  expect(tasks.stdout).toMatch(/\n22\s+KUMA Update \(Windows\)\s+Updater\s+KES\s+windows\s+1\n/);
  expect((json(await ksc(['tasks', 'list', '--connection', id, '--refresh', '--json']))['tasks'] as unknown[]).length).toBe(5);

  const start = await ksc(['tasks', 'start', '--asset', ws.id, '--task', 'KUMA Scan servers', '--task', 'KUMA Update (Windows)']);
  expect(start.code).toBe(0);
  expect(start.stdout).toBe(
    `started KSC task "KUMA Update (Windows)" (task 22) for asset WS-0142: run 1\n` +
      `  - KUMA Scan servers: the asset is not in the task's scope\n` +
      `  * KUMA Update (Windows): first applicable task\n` +
      `note: KSC runs the task on every device of its scope (Tasks.RunTask), not only on this asset\n`,
  );
  expect(emu.calls.filter((c) => c.method === 'Tasks.RunTask').map((c) => c.body['strTask'])).toEqual(['22']);
  const again = await ksc(['tasks', 'start', '--asset', ws.id, '--task', 'KUMA Update (Windows)', '--json']);
  expect(again.code).toBe(1);
  expect(json(again)).toMatchObject({ error: { code: 'ksc_task_running' } });
  const forced = await ksc(['tasks', 'start', '--asset', ws.id, '--task', '#22', '--force', '--json']);
  expect(json(forced)).toMatchObject({ run: { id: 2, taskId: '22', origin: 'manual', state: 'requested' }, wholeScope: true });

  const status = await ksc(['tasks', 'status', '--asset', ws.id]);
  const st = status.stdout.trimEnd().split('\n');
  expect(st[0]).toMatch(/^RUN\s+TASK\s+ASSET\s+HOST\s+STATE\s+KSC STATE\s+ORIGIN\s+RULE\s+REQUESTED\s+STARTED\s+FINISHED\s+ERROR$/);
  expect(st.slice(1).map((l) => l.split(/\s{2,}/).slice(0, 2))).toEqual([
    ['2', 'KUMA Update (Windows)'],
    ['1', 'KUMA Update (Windows)'],
  ]);
  expect(json(await ksc(['tasks', 'status', '--active', '--limit', '1', '--json']))['runs']).toMatchObject([{ id: 2, state: 'requested' }]);
  expect(json(await ksc(['tasks', 'status', '--tenant', 'other', '--json']))).toEqual({ runs: [] });

  // The tenant switch: off stops imports and starts.
  expect((await ksc(['tenants', 'disable', 'default'])).stdout).toBe('KSC integration of tenant default: off\n');
  expect(json(await ksc(['tenants', 'list', '--json']))).toEqual({ tenants: [{ name: 'default', integrationEnabled: false, createdAt: expect.any(String) }] });
  expect((await ksc(['assets', 'sync'])).stdout).toBe('no enabled KSC connection to import from\n');
  const offStart = await ksc(['tasks', 'start', '--asset', ws.id, '--task', '#22', '--force']);
  expect(offStart.code).toBe(1);
  expect(offStart.stderr).toBe('error: the KSC integration of tenant "default" is off (ksc_disabled)\n');
  expect((await ksc(['tenants', 'enable', 'default'])).code).toBe(0);
  expect((await ksc(['tenants', 'list'])).stdout).toMatch(/^TENANT\s+INTEGRATION\ndefault\s+on\n$/);
  // The switch of a tenant that does not exist makes nothing.
  const missing = await ksc(['tenants', 'enable', 'nope']);
  expect(missing.code).toBe(1);
  expect(missing.stderr).toBe('error: no tenant "nope" (ksc_not_found)\n');
  expect((await ksc(['tenants', 'list'])).stdout).toMatch(/^TENANT\s+INTEGRATION\ndefault\s+on\n$/);
});

test('tenants create and delete: validation, duplicates, refused with connections unless --force', async () => {
  expect((await ksc(['tenants', 'create', 'branch', '--disabled'])).stdout).toBe('created tenant branch (KSC integration off)\n');
  const dup = await ksc(['tenants', 'create', 'branch']);
  expect(dup.code).toBe(1);
  expect(dup.stderr).toBe('error: tenant "branch" already exists (ksc_conflict)\n');
  const bad = await ksc(['tenants', 'create', 'a/b']);
  expect(bad.code).toBe(64);
  expect(bad.stderr).toContain('a tenant name must have 1 to 64 letters');
  const add = await ksc(['connections', 'add', '--tenant', 'branch', '--name', 'main', '--url', emu.url, '--pin', emu.cert.fingerprint256, '--user', 'kuma', '--password-stdin'], { input: `${PASSWORD}\n` });
  expect(add.code).toBe(0);
  const refused = await ksc(['tenants', 'delete', 'branch']);
  expect(refused.code).toBe(1);
  expect(refused.stderr).toMatch(/^error: tenant "branch" has 1 KSC connection \(main\): delete them first, or delete with force .*\(ksc_conflict\)\n$/);
  expect(json(await ksc(['tenants', 'delete', 'branch', '--force', '--json']))).toEqual({ deleted: { tenant: 'branch', connections: 1, assets: 0, taskRuns: 0 } });
  expect(json(await ksc(['connections', 'list', '--json']))).toEqual({ connections: [] });
  expect((await ksc(['tenants', 'list'])).stdout).toMatch(/^TENANT\s+INTEGRATION\ndefault\s+on\n$/);
  expect((await ksc(['tenants', 'delete', 'default'])).stderr).toBe('error: the tenant "default" cannot be deleted (ksc_conflict)\n');
  expect((await ksc(['tenants', 'delete', 'nope'])).code).toBe(1);
});

test('tasks start honours ksc.task_run_blocking from --config: a run without news for longer no longer blocks', async () => {
  await addMain();
  expect((await ksc(['assets', 'sync'])).code).toBe(0);
  const all = json(await ksc(['assets', 'list', '--json']))['assets'] as { id: string; kscHostId: string }[];
  const ws = all.find((a) => a.kscHostId === WS42)!;
  // 5 s: wide enough that the second start below (a CLI process start) lands inside it on a loaded machine.
  writeFileSync(join(dir, 'short.yaml'), 'ksc:\n  task_run_blocking: 5s\n');
  const start = (extra: string[] = []) => ksc(['tasks', 'start', '--asset', ws.id, '--task', 'KUMA Update (Windows)', '--json', ...extra]);
  expect((await start(['--config', join(dir, 'short.yaml')])).code).toBe(0);
  // At once: the run is still requested, so both settings block.
  expect(json(await start(['--config', join(dir, 'short.yaml')]))).toMatchObject({ error: { code: 'ksc_task_running' } });
  await new Promise((r) => setTimeout(r, 5_200));
  // Without the configuration the default (6 h) still blocks; with it, the run is stale.
  expect(json(await start())).toMatchObject({ error: { code: 'ksc_task_running' } });
  const again = await start(['--config', join(dir, 'short.yaml')]);
  expect(again.code).toBe(0);
  expect(json(again)).toMatchObject({ run: { id: 2, taskId: '22', origin: 'manual' } });
});

test('assets sync --attributes, then assets show: a Windows device has software and vulnerabilities, a Linux device none', async () => {
  await addMain();
  expect((await ksc(['assets', 'sync'])).code).toBe(0);
  const attrs = await ksc(['assets', 'sync', '--attributes']);
  expect(attrs.stderr).toBe('');
  expect(attrs.code).toBe(0);
  expect(attrs.stdout).toMatch(/^default\/main: ok, 4 devices imported, 0 failed in \d+ ms$/m);
  const list = json(await ksc(['assets', 'list', '--json']))['assets'] as { id: string; kscHostId: string; platform: string }[];
  const ws = list.find((a) => a.kscHostId === WS42)!;
  const lnx = list.find((a) => a.platform === 'linux')!;
  const text = await ksc(['assets', 'show', ws.id]);
  expect(text.code).toBe(0);
  expect(text.stdout).toMatch(/^MAC addresses +00:1a:2b:3c:4d:42, 00:1a:2b:3c:4d:43$/m);
  expect(text.stdout).toMatch(/^protection +warning, real-time protection installed/m);
  expect(text.stdout).toMatch(/^AV bases +2024-05-01T04:00:00Z$/m);
  expect(text.stdout).toMatch(/^owners +CORP\\j\.smith$/m);
  expect(text.stdout).toMatch(/^software \(3\)$/m);
  expect(text.stdout).toMatch(/^Microsoft Edge +124\.0\.2478\.80 +Microsoft Corporation +2024-05-02$/m);
  expect(text.stdout).toMatch(/^vulnerabilities \(2\)$/m);
  expect(text.stdout).toMatch(/^KLA10001 +3 +Mozilla Firefox 115\.0 +2024-04-20T10:00:00Z +no +https:\/\/threats\.kaspersky\.com\/en\/vulnerability\/KLA10001\/$/m);
  const j = json(await ksc(['assets', 'show', ws.id, '--format', 'json']));
  expect((j['software'] as unknown[]).length).toBe(3);
  expect(j['vulnerabilities']).toMatchObject([{ id: 'KLA10001' }, { id: 'KLA10002', ignored: true }]);
  expect(j['asset']).toMatchObject({ id: ws.id, macs: ['00:1a:2b:3c:4d:42', '00:1a:2b:3c:4d:43'] });
  const l = await ksc(['assets', 'show', lnx.id]);
  expect(l.stdout).toMatch(/^software \(0\)$/m);
  expect(l.stdout).toMatch(/^vulnerabilities \(0\)$/m);
  expect(l.stdout).toContain('Windows devices only');
  expect((await ksc(['assets', 'show', ws.id, '--format', 'xml'])).code).not.toBe(0);
});
