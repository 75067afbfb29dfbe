/**
 * The Debian package under a real systemd, as a server runs it. systemd-nspawn (Debian
 * package systemd-container) boots this machine's own systemd in a container: its root is
 * a tmpfs with the host's /usr under a writable overlay (`--volatile=yes`, `--overlay`), it
 * has its own network namespace (nothing in it binds a port of this machine) and its own
 * /etc. dpkg installs the package there; the maintainer scripts enable, start, restart and
 * stop the units through that systemd (deb-systemd-helper, deb-systemd-invoke), and the
 * service runs with every hardening option of deploy/cefd.service in force (ProcSubset=pid,
 * the system-call filter, ProtectSystem=strict, User=cefd).
 *
 * What an operator relies on: cefd starts under the unit and takes both sockets of
 * cefd.socket; events arrive; `systemctl restart` and a package upgrade leave cefd.socket
 * (the listening sockets) alone; `systemctl reload` reloads; a configuration error exits 78
 * and is not restarted; removing the package stops both units.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { tempDir, waitFor } from '../helpers/daemon.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string };
const UPGRADE = `${pkg.version}+upgrade1`;

let work: string;
let nspawn: ChildProcess | undefined;
let nspawnOut = '';
let leader = 0;
/** The environment of commands in the container: none of this machine's (NODE_EXTRA_CA_CERTS and the like name files the container lacks). */
const CONTAINER_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8' };

/** A shell command in the container (every namespace of its init), to its end. */
function inside(cmd: string, timeoutMs = 60_000): { status: number | null; out: string } {
  const r = spawnSync('nsenter', ['-t', String(leader), '-a', '/bin/sh', '-c', cmd], { encoding: 'utf8', timeout: timeoutMs, env: CONTAINER_ENV });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

/** `systemctl show` properties of a unit in the container. */
function show(unit: string, ...props: string[]): Record<string, string> {
  const out = inside(`systemctl show ${unit} ${props.map((p) => `-p ${p}`).join(' ')}`).out;
  return Object.fromEntries(out.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

/** cefd's journal (message text only) in the container. */
const journal = () => inside('journalctl -u cefd.service -o cat --no-pager').out;


/**
 * Sends `line` to 127.0.0.1:5141 over TCP and UDP from the container's network namespace
 * (the host's node, only the network namespace entered).
 */
function send(line: string): void {
  const script = `
    const net = require('node:net'), dgram = require('node:dgram');
    const line = process.argv[1];
    const s = net.connect(5141, '127.0.0.1', () => s.end(line + ' tcp\\n'));
    s.on('error', (e) => { console.error(e.message); process.exit(1); });
    s.on('close', () => { const u = dgram.createSocket('udp4'); u.send(line + ' udp', 5141, '127.0.0.1', (e) => { u.close(); if (e) process.exit(1); }); });`;
  const r = spawnSync('nsenter', ['-t', String(leader), '-n', process.execPath, '-e', script, event(line)], { encoding: 'utf8', timeout: 30_000 });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
}

const event = (msg: string) => `<14>1 2026-11-28T10:00:00.000Z ksc01 KES - - - CEF:0|KasperskyLab|SecurityCenter|14.2|GNRL_EV_VIRUS_FOUND|Virus found|4|msg=${msg}`;

/** Waits until the shipped file output holds `msg` from TCP and from UDP. */
async function arrived(msg: string): Promise<void> {
  await waitFor(() => {
    const events = inside('cat /var/lib/cefd/events.ndjson 2>/dev/null').out;
    return events.includes(`${msg} tcp`) && events.includes(`${msg} udp`);
  }, 60_000, `"${msg}" in /var/lib/cefd/events.ndjson`);
}

const STATE = ['ActiveState', 'SubState', 'MainPID', 'NRestarts', 'Result', 'ExecMainStatus'];

/** Waits until cefd.service runs (active with a main process that logged "cefd started" after `since` journal lines). */
async function running(since: number): Promise<Record<string, string>> {
  let s: Record<string, string> = {};
  await waitFor(() => {
    s = show('cefd.service', ...STATE);
    if (s['ActiveState'] === 'failed' || Number(s['NRestarts']) > 0) throw new Error(`cefd.service did not start: ${JSON.stringify(s)}\n${journal()}`);
    return s['ActiveState'] === 'active' && s['MainPID'] !== '0' && journalLines().slice(since).some((l) => l.includes('cefd started'));
  }, 60_000, 'cefd.service running');
  return s;
}

/** Waits until cefd.service has failed, or systemd has scheduled a restart of it. */
async function stopped(): Promise<Record<string, string>> {
  let s: Record<string, string> = {};
  await waitFor(() => {
    s = show('cefd.service', ...STATE);
    return s['ActiveState'] === 'failed' || Number(s['NRestarts']) > 0;
  }, 60_000, 'cefd.service failed or restarting');
  return s;
}

const journalLines = () => journal().split('\n');

function build(version: string): void {
  execNode([join(REPO, 'deploy/debian/build.mjs'), '--out', join(work, 'debs'), '--version', version, '--fast']);
}

function execNode(args: string[]): void {
  const r = spawnSync(process.execPath, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}`);
}

beforeAll(async () => {
  work = tempDir('cefd-systemd-test-');
  build(pkg.version);
  build(UPGRADE);
  mkdirSync(join(work, 'usr-upper'));
  // A fixed machine id: the container is not on its first boot, so systemd does not
  // enable every unit of /usr by preset (the host's database servers among them).
  writeFileSync(join(work, 'machine-id'), 'c0ffee00c0ffee00c0ffee00c0ffee00\n');
  const args = [
    '--quiet',
    '--register=no',
    '--keep-unit',
    '--directory=/',
    '--volatile=yes',
    '--private-network',
    `--overlay=/usr:${join(work, 'usr-upper')}:/usr`,
    `--bind=${join(work, 'machine-id')}:/etc/machine-id`,
    `--bind-ro=${join(work, 'debs')}:/debs`,
    // What adduser and the postinst need from /etc besides the accounts files systemd makes.
    ...['/etc/pam.d', '/etc/security', '/etc/login.defs', '/etc/adduser.conf', '/etc/nsswitch.conf', '/etc/alternatives'].filter((p) => existsSync(p)).map((p) => `--bind-ro=${p}`),
    '--boot',
    '--console=pipe',
    '--',
    '--unit=multi-user.target',
  ];
  nspawn = spawn('systemd-nspawn', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  nspawn.stdout!.on('data', (c: Buffer) => (nspawnOut += c.toString()));
  nspawn.stderr!.on('data', (c: Buffer) => (nspawnOut += c.toString()));
  // The container's init: the child of systemd-nspawn.
  await waitFor(() => {
    if (nspawn!.exitCode !== null) throw new Error(`systemd-nspawn exited ${nspawn!.exitCode}: ${nspawnOut}`);
    const kids = readFileSync(`/proc/${nspawn!.pid}/task/${nspawn!.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
    const init = kids.find((k) => readFileSync(`/proc/${k}/comm`, 'utf8').trim() === 'systemd');
    if (init !== undefined) leader = Number(init);
    return leader !== 0;
  }, 30_000, 'the container booting');
  await waitFor(() => /^(running|degraded)$/m.test(inside('systemctl is-system-running --wait', 60_000).out), 60_000, 'the container booted');
  // An empty dpkg database (the container's /var is empty), and service starts allowed:
  // this machine's policy-rc.d forbids them, the container's overlay drops it.
  const prep = inside('mkdir -p /var/lib/dpkg/info /var/lib/dpkg/updates /var/lib/dpkg/triggers /var/log && touch /var/lib/dpkg/status /var/lib/dpkg/available && rm -f /usr/sbin/policy-rc.d');
  expect(prep.out).toBe('');
}, 400_000);

afterAll(async () => {
  if (nspawn !== undefined && nspawn.exitCode === null) {
    const exited = new Promise((r) => nspawn!.once('exit', r));
    // SIGTERM: systemd-nspawn asks the container's systemd to power off.
    nspawn.kill('SIGTERM');
    const t = setTimeout(() => nspawn!.kill('SIGKILL'), 30_000);
    await exited;
    clearTimeout(t);
  }
  rmSync(work, { recursive: true, force: true });
}, 120_000);

test('dpkg -i starts cefd under its unit: it takes both sockets of cefd.socket and events arrive', async () => {
  const r = inside(`dpkg --force-depends -i /debs/cefd_${pkg.version}_*.deb`, 300_000);
  expect(r.out).not.toMatch(/error processing/);
  expect(r.status).toBe(0);
  expect(inside('systemctl is-enabled cefd.socket cefd.service').out.trim().split('\n')).toEqual(['enabled', 'enabled']);
  expect(show('cefd.socket', 'ActiveState')['ActiveState']).toBe('active');
  await running(0);
  send('from the package');
  await arrived('from the package');
  // Started once, no socket of cefd.socket left unused, nothing bound twice.
  expect(show('cefd.service', 'NRestarts')['NRestarts']).toBe('0');
  const log = journal();
  expect(log).not.toMatch(/EADDRINUSE|matches no listener|"level":"(warn|error|fatal)"/);
  expect(log).toContain('listening for tcp on :::5141 (socket from systemd)');
  expect(log).toContain('listening for udp on :::5141 (socket from systemd)');
  // No warning above also says the kernel's UDP drop count is readable under the unit's
  // ProcSubset=pid (from /proc/self/net; src/sources/udp/kernel-drops.ts), and no deprecation either.
  expect(log).not.toMatch(/cannot be counted|DeprecationWarning/);
  // The state directory as the unit and the daemon both want it: cefd's own, 0700.
  expect(inside('stat -c "%U:%G %a" /var/lib/cefd /etc/cefd /etc/cefd/cefd.yaml').out.trim().split('\n')).toEqual(['cefd:cefd 700', 'root:cefd 750', 'root:cefd 640']);
}, 400_000);

test('systemctl restart and a package upgrade restart cefd but leave cefd.socket open', async () => {
  const socket = show('cefd.socket', 'InvocationID')['InvocationID'];
  const pid = show('cefd.service', 'MainPID')['MainPID'];
  let since = journalLines().length;
  expect(inside('systemctl restart cefd.service').status).toBe(0);
  await running(since);
  const afterRestart = show('cefd.service', 'MainPID')['MainPID'];
  expect(afterRestart).not.toBe(pid);
  expect(show('cefd.socket', 'InvocationID', 'ActiveState')).toEqual({ InvocationID: socket, ActiveState: 'active' });

  since = journalLines().length;
  const r = inside(`dpkg --force-depends --force-confold -i /debs/cefd_${UPGRADE}_*.deb`, 300_000);
  expect(r.out).not.toMatch(/error processing/);
  expect(r.status).toBe(0);
  await running(since);
  expect(show('cefd.service', 'MainPID')['MainPID']).not.toBe(afterRestart);
  expect(show('cefd.socket', 'InvocationID', 'ActiveState')).toEqual({ InvocationID: socket, ActiveState: 'active' });
  expect(inside('cefd --version').out.trim()).toBe(UPGRADE);
  send('after the upgrade');
  await arrived('after the upgrade');
  expect(show('cefd.service', 'NRestarts')['NRestarts']).toBe('0');
}, 400_000);

test('systemctl reload (SIGHUP) reloads the configuration in the same process', async () => {
  const pid = show('cefd.service', 'MainPID')['MainPID'];
  expect(inside(`sed -i 's/^shutdown_timeout: .*/shutdown_timeout: 12s/' /etc/cefd/cefd.yaml && grep -c '^shutdown_timeout: 12s' /etc/cefd/cefd.yaml`).out.trim()).toBe('1');
  const since = journalLines().length;
  expect(inside('systemctl reload cefd.service').status).toBe(0);
  await waitFor(() => journalLines().slice(since).some((l) => l.includes('configuration reloaded')), 30_000, 'configuration reloaded in the journal');
  expect(show('cefd.service', 'MainPID', 'ActiveState')).toEqual({ MainPID: pid, ActiveState: 'active' });
}, 120_000);

test('a configuration error exits 78 and systemd does not restart cefd', async () => {
  expect(inside('cp /etc/cefd/cefd.yaml /root/cefd.yaml.good && echo "no_such_option: 1" >> /etc/cefd/cefd.yaml').status).toBe(0);
  inside('systemctl restart cefd.service');
  const s = await stopped();
  expect(s).toMatchObject({ ActiveState: 'failed', Result: 'exit-code', ExecMainStatus: '78', NRestarts: '0' });
  expect(journal()).toContain('/etc/cefd/cefd.yaml:');
  // cefd.socket stays: a fixed configuration and a start, and cefd takes its sockets again.
  expect(show('cefd.socket', 'ActiveState')['ActiveState']).toBe('active');
  const since = journalLines().length;
  expect(inside('cp /root/cefd.yaml.good /etc/cefd/cefd.yaml && systemctl reset-failed cefd.service && systemctl start cefd.service').status).toBe(0);
  await running(since);
  send('after the fix');
  await arrived('after the fix');
}, 200_000);

test('dpkg -r stops cefd.service and cefd.socket; the events stay', async () => {
  const r = inside('dpkg -r cefd', 300_000);
  expect(r.status).toBe(0);
  expect(inside('systemctl is-active cefd.socket cefd.service').out.trim().split('\n')).toEqual(['inactive', 'inactive']);
  // Nothing listens on 5141 any more in the container.
  expect(inside('cat /proc/net/tcp6 /proc/net/udp6 /proc/net/tcp /proc/net/udp').out).not.toMatch(/^\s*\d+: [0-9A-F]+:1415 /m);
  expect(inside('cat /var/lib/cefd/events.ndjson').out).toContain('after the fix tcp');
}, 400_000);
