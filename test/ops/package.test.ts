/**
 * The Debian package (deploy/debian/build.mjs, `npm run package:deb`), installed for real
 * with dpkg into a temporary root (`dpkg --root`, maintainer scripts run outside a chroot
 * with DPKG_ROOT set: what CI can do as root without a container). Checks the files and
 * their owners, the cefd user the postinst creates, that the shipped configuration passes
 * `cefd validate` and the packaged code runs, `systemd-analyze verify` on the units, and
 * that remove, upgrade and purge keep the configuration and the data.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, chmodSync, copyFileSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { parse } from 'yaml';
import { freePort } from '../helpers/child.js';
import { tempDir, waitFor } from '../helpers/daemon.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string; dependencies: Record<string, string> };

let work: string;
let root: string;
let deb: string;
let deb2: string;

function build(version: string): string {
  // Under umask 002 (a shared checkout's): the package's modes must not come from it.
  const out = execFileSync('/bin/sh', ['-c', 'umask 002 && exec "$0" "$@"', process.execPath, join(REPO, 'deploy/debian/build.mjs'), '--out', join(work, 'out'), '--version', version, '--fast'], { encoding: 'utf8' });
  return out.trim().split(' ')[0]!;
}

function dpkg(...args: string[]) {
  return spawnSync('dpkg', [`--root=${root}`, '--force-script-chrootless', '--force-depends', '--force-confold', ...args], { encoding: 'utf8', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
}

function status(): string {
  return execFileSync('dpkg-query', [`--admindir=${root}/var/lib/dpkg`, '-W', '-f', '${Status} ${Version}', 'cefd'], { encoding: 'utf8' });
}

beforeAll(() => {
  work = tempDir('cefd-deb-test-');
  deb = build(pkg.version);
  deb2 = build(`${pkg.version}+upgrade1`);
  // A root with an empty dpkg database and the accounts files useradd --prefix edits.
  root = join(work, 'root');
  for (const d of ['var/lib/dpkg/info', 'var/lib/dpkg/updates', 'var/lib/dpkg/triggers', 'etc']) mkdirSync(join(root, d), { recursive: true });
  writeFileSync(join(root, 'var/lib/dpkg/status'), '');
  writeFileSync(join(root, 'var/lib/dpkg/available'), '');
  writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  writeFileSync(join(root, 'etc/group'), 'root:x:0:\n');
  writeFileSync(join(root, 'etc/shadow'), 'root:*:19000:0:99999:7:::\n', { mode: 0o640 });
  writeFileSync(join(root, 'etc/gshadow'), 'root:*::\n', { mode: 0o640 });
}, 120_000);

afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

test('the package declares what it needs and ships the conffile', () => {
  const field = (f: string) => execFileSync('dpkg-deb', ['-f', deb, f], { encoding: 'utf8' }).trim();
  expect(field('Package')).toBe('cefd');
  expect(field('Version')).toBe(pkg.version);
  // Node.js of the build's major only: better-sqlite3's native module is built for its ABI
  // (another major cannot load it); the lower bound is package.json's engines (>=20.11).
  const major = Number(process.versions.node.split('.')[0]);
  const depends = field('Depends');
  expect(depends).toContain(`nodejs (<< ${major + 1})`);
  const range = [...depends.matchAll(/nodejs \((>=|<<) ([^)]+)\)/g)].map((m) => [m[1] === '>=' ? 'ge' : 'lt', m[2]!] as const);
  expect(range).toHaveLength(2);
  const accepts = (v: string) => range.every(([op, bound]) => spawnSync('dpkg', ['--compare-versions', v, op, bound]).status === 0);
  // The Node.js that runs the tests satisfies it, as Debian's and NodeSource's packages of
  // the same major do; the next major and a 20 before 20.11 do not.
  expect(accepts(process.versions.node)).toBe(true);
  if (major === 20) {
    expect(depends).toContain('nodejs (>= 20.11), nodejs (<< 21)');
    expect(accepts('20.19.2+dfsg-1')).toBe(true);
    expect(accepts('20.19.2-1nodesource1')).toBe(true);
    expect(accepts('20.10.0-1nodesource1')).toBe(false);
  }
  expect(accepts(`${major + 1}.0.0-1nodesource1`)).toBe(false);
  expect(accepts('22.12.0+dfsg-1')).toBe(major === 22);
  expect(execFileSync('dpkg-deb', ['-I', deb, 'conffiles'], { encoding: 'utf8' }).trim()).toBe('/etc/cefd/cefd.yaml');
});

test('the package sets its own file modes, not those of the build tree (built under umask 002)', () => {
  // Folders 0755, files 0644 or 0755 (executables), the conffile 0640 (it may hold secrets).
  const wrong: string[] = [];
  let executables = 0;
  for (const line of execFileSync('dpkg-deb', ['-c', deb], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }).trim().split('\n')) {
    const [mode, owner] = line.split(/\s+/);
    const path = line.slice(line.indexOf(' ./') + 1).replace(/ -> .*$/, '');
    if (owner !== 'root/root') wrong.push(`${owner} ${path}`);
    if (mode!.startsWith('l')) continue;
    const want = mode!.startsWith('d') ? ['drwxr-xr-x'] : path === './etc/cefd/cefd.yaml' ? ['-rw-r-----'] : ['-rw-r--r--', '-rwxr-xr-x'];
    if (!want.includes(mode!)) wrong.push(`${mode} ${path}`);
    if (mode === '-rwxr-xr-x') executables++;
  }
  expect(wrong).toEqual([]);
  expect(executables).toBeGreaterThan(1);
  const control = execFileSync('/bin/sh', ['-c', 'dpkg-deb --ctrl-tarfile "$0" | tar -tvf -', deb], { encoding: 'utf8' });
  for (const s of ['postinst', 'prerm', 'postrm']) expect(control).toMatch(new RegExp(`^-rwxr-xr-x \\S+ .* \\./${s}$`, 'm'));
  expect(control).toMatch(/^-rw-r--r-- \S+ .* \.\/control$/m);
});

test('docs/operations.md\'s install steps apply the edited configuration to the cefd the postinst started', () => {
  // The postinst starts cefd on first install (below, and test/ops/systemd.test.ts); the steps
  // that edit /etc/cefd/cefd.yaml afterwards must restart it (enable --now leaves a running
  // unit as it is; a reload refuses a change to either shipped listener).
  const postinst = readFileSync(join(REPO, 'deploy/debian/postinst'), 'utf8');
  expect(postinst).toMatch(/deb-systemd-invoke start cefd\.socket cefd\.service/);
  const ops = readFileSync(join(REPO, 'docs/operations.md'), 'utf8');
  const section = ops.slice(ops.indexOf('## Install from the Debian package'), ops.indexOf('### From a source tree'));
  const steps = /```sh\n([\s\S]*?)```/.exec(section)![1]!.split('\n');
  const edit = steps.findIndex((l) => l.startsWith('sudoedit /etc/cefd/cefd.yaml'));
  const validate = steps.findIndex((l) => l.startsWith('sudo cefd validate --config /etc/cefd/cefd.yaml'));
  const restart = steps.findIndex((l) => /^sudo systemctl restart cefd(\s|$)/.test(l));
  expect([edit >= 0, validate > edit, restart > validate]).toEqual([true, true, true]);
  expect(steps.join('\n')).not.toContain('enable --now');
});

test('dpkg -i installs it: files, owners, the cefd user, state and config folders', () => {
  const r = dpkg('-i', deb);
  expect(r.stderr + r.stdout).not.toMatch(/error/i);
  expect(r.status).toBe(0);
  expect(status()).toBe(`install ok installed ${pkg.version}`);
  for (const f of ['usr/bin/cefd', 'usr/lib/cefd/dist/src/cli.js', 'usr/lib/cefd/package.json', 'usr/lib/cefd/node_modules/better-sqlite3/build/Release/better_sqlite3.node', 'usr/lib/cefd/node_modules/prom-client/package.json', 'lib/systemd/system/cefd.service', 'lib/systemd/system/cefd.socket', 'usr/share/cefd/prometheus/cefd-alerts.yml', 'usr/share/cefd/grafana/cefd.json', 'usr/share/doc/cefd/docs/operations.md', 'usr/share/doc/cefd/docs/README.md', 'usr/share/doc/cefd/README.md']) {
    expect(existsSync(join(root, f)), f).toBe(true);
  }
  // The README next to docs/, as in the repository: its links to docs/ resolve, and docs/README.md stays the index.
  const doc = join(root, 'usr/share/doc/cefd');
  const readmeLinks = [...readFileSync(join(doc, 'README.md'), 'utf8').matchAll(/\]\((docs\/[^)#]+)/g)].map((m) => m[1]!);
  expect(readmeLinks.length).toBeGreaterThan(5);
  expect(readmeLinks.filter((l) => !existsSync(join(doc, l)))).toEqual([]);
  expect(readFileSync(join(doc, 'docs/README.md'), 'utf8')).toBe(readFileSync(join(REPO, 'docs/README.md'), 'utf8'));
  // No development dependencies in the package.
  expect(existsSync(join(root, 'usr/lib/cefd/node_modules/vitest'))).toBe(false);
  expect(existsSync(join(root, 'usr/lib/cefd/node_modules/typescript'))).toBe(false);
  expect(statSync(join(root, 'usr/bin/cefd')).mode & 0o777).toBe(0o755);
  // Only what runs: no typings, source maps, Markdown, tests or tool configuration of the
  // dependencies (they were half of node_modules); their licences stay.
  const modules = join(root, 'usr/lib/cefd/node_modules');
  const files = (readdirSync(modules, { recursive: true }) as string[]).map((f) => f.split('\\').join('/'));
  const extra = files.filter((f) => /(^|\/)(test|tests|__tests__|\.github)(\/|$)|\.(d\.ts|d\.mts|d\.cts|map)$|\/(?!licen[cs]e|copying|notice)[^/]*\.md$|\/(\.npmignore|\.eslintrc[^/]*|\.gitattributes)$/i.test(f));
  expect(extra).toEqual([]);
  for (const m of ['pino', 'prom-client', 'better-sqlite3', 'tedious', 'yaml']) expect(readdirSync(join(modules, m)).some((f) => /^licen[cs]e/i.test(f)), `${m}'s licence`).toBe(true);

  const user = readFileSync(join(root, 'etc/passwd'), 'utf8').split('\n').find((l) => l.startsWith('cefd:'))!;
  expect(user).toBeDefined();
  const [, , uid, gid, , home, shell] = user.split(':');
  expect(Number(uid)).toBeLessThan(1000);
  expect(home).toBe('/var/lib/cefd');
  expect(shell).toBe('/usr/sbin/nologin');
  const st = (p: string) => statSync(join(root, p));
  expect([st('etc/cefd').uid, st('etc/cefd').gid, st('etc/cefd').mode & 0o777]).toEqual([0, Number(gid), 0o750]);
  expect([st('etc/cefd/cefd.yaml').uid, st('etc/cefd/cefd.yaml').gid, st('etc/cefd/cefd.yaml').mode & 0o777]).toEqual([0, Number(gid), 0o640]);
  expect([st('var/lib/cefd').uid, st('var/lib/cefd').gid, st('var/lib/cefd').mode & 0o777]).toEqual([Number(uid), Number(gid), 0o700]);
  // The user exists once, also after the postinst runs again (reconfigure).
  expect(dpkg('--configure', '--pending').status).toBe(0);
  expect(readFileSync(join(root, 'etc/passwd'), 'utf8').match(/^cefd:/gm)).toHaveLength(1);
});

test('the shipped configuration validates with the packaged code, and that code runs', async () => {
  const cli = join(root, 'usr/lib/cefd/dist/src/cli.js');
  const conf = join(root, 'etc/cefd/cefd.yaml');
  const v = spawnSync(process.execPath, [cli, 'validate', '--config', conf], { encoding: 'utf8' });
  expect(v.stderr).toBe('');
  expect(v.stdout).toContain('OK (2 listeners, 1 outputs)');
  expect(v.status).toBe(0);
  expect(execFileSync(process.execPath, [cli, '--version'], { encoding: 'utf8' }).trim()).toBe(pkg.version);
  // Every production dependency loads from the package as shipped (build.mjs leaves files out
  // of node_modules: none that runs may be among them).
  for (const dep of Object.keys(pkg.dependencies)) {
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', `await import(${JSON.stringify(dep)})`], { cwd: join(root, 'usr/lib/cefd'), encoding: 'utf8' });
    expect(r.stderr, dep).toBe('');
    expect(r.status, dep).toBe(0);
  }
  // The wrapper runs the packaged code with the system's node.
  const wrapper = readFileSync(join(root, 'usr/bin/cefd'), 'utf8');
  expect(wrapper).toContain('exec /usr/bin/node ${CEFD_NODE_FLAGS---single-threaded-gc --max-semi-space-size=4 --no-incremental-marking} /usr/lib/cefd/dist/src/cli.js "$@"');
  // The wrapper as it is, pointed at this package's tree: node takes the default flags, and
  // CEFD_NODE_FLAGS (empty or not) replaces them.
  const local = join(root, 'cefd-local.sh');
  writeFileSync(local, wrapper.replaceAll('/usr/lib/cefd', join(root, 'usr/lib/cefd')).replace('/usr/bin/node', process.execPath));
  try {
    const flags = (env: Record<string, string>) => execFileSync('/bin/sh', [local, '--version'], { encoding: 'utf8', env: { ...process.env, ...env, NODE_DEBUG: '' } }).trim();
    expect(flags({})).toBe(pkg.version);
    expect(flags({ CEFD_NODE_FLAGS: '' })).toBe(pkg.version);
    expect(flags({ CEFD_NODE_FLAGS: '--max-old-space-size=256 --single-threaded-gc' })).toBe(pkg.version);
    expect(() => execFileSync('/bin/sh', [local, '--version'], { stdio: 'pipe', env: { ...process.env, CEFD_NODE_FLAGS: '--no-such-node-flag' } })).toThrow();
  } finally {
    rmSync(local, { force: true });
  }
  // Built-in defaults spelled out: the conffile states what validate --print says runs.
  const shipped = parse(readFileSync(conf, 'utf8')) as Record<string, unknown>;
  const printed = JSON.parse(execFileSync(process.execPath, [cli, 'validate', '--config', conf, '--print'], { encoding: 'utf8' }).split('\n').filter((l) => !l.includes(': OK (')).join('\n')) as Record<string, unknown>;
  delete printed['base_dir'];
  expect(shipped).toEqual(printed);
  // Every file the shipped configuration writes is rotated and bounded: the dead-letter file
  // too, which takes whatever a non-syslog client sends to the open port.
  const sinks = [...(shipped['outputs'] as Record<string, unknown>[]).filter((o) => o['type'] === 'file'), shipped['dead_letter'] as Record<string, unknown>];
  expect(sinks.length).toBe(2);
  for (const f of sinks) {
    expect(f['rotate_max_bytes'], String(f['path'])).toBeGreaterThan(0);
    expect(f['max_files'], String(f['path'])).toBeGreaterThan(0);
  }
  // Options the example does not set, there commented with a line each.
  const text = readFileSync(conf, 'utf8');
  for (const opt of ['#     ciphers: "ECDHE-', '#     allow_insecure_pinned_certificates: false', '# trusted_sources:']) expect(text).toContain(opt);
  // The header says how to apply a change: a listener's needs a restart (both take their
  // sockets from cefd.socket; a reload refuses to change them).
  expect(text).toMatch(/^# After a change to a listener: sudo systemctl restart cefd /m);
  // The listeners are the ports cefd.socket holds.
  const socket = readFileSync(join(root, 'lib/systemd/system/cefd.socket'), 'utf8');
  const listeners = shipped['listeners'] as { type: string; port: number }[];
  for (const l of listeners) expect(socket).toContain(`${l.type === 'udp' ? 'ListenDatagram' : 'ListenStream'}=${l.port}\n`);
  // The UDP socket's buffer is cefd.socket's ReceiveBuffer=, which cefd keeps
  // (test/ops/socket-activation.test.ts).
  expect(socket).toMatch(/^ReceiveBuffer=\d+M$/m);

  // `cefd run` from the package (its node_modules, the KSC store's native module) on a
  // configuration in a temp folder: it starts, accepts an event and stops cleanly.
  const dir = join(work, 'run');
  mkdirSync(dir);
  const port = await freePort();
  writeFileSync(join(dir, 'cefd.yaml'), `state_dir: ${dir}/state\nlisteners: [{ name: ksc, type: tcp, host: 127.0.0.1, port: ${port} }]\noutputs: [{ name: events, type: file, path: ${dir}/events.ndjson }]\ndead_letter: { path: ${dir}/dead.ndjson }\nmetrics: { enabled: false }\n`);
  const { spawn } = await import('node:child_process');
  const p = spawn(process.execPath, [cli, 'run', '--config', join(dir, 'cefd.yaml')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  p.stdout.on('data', (c: Buffer) => (out += c.toString()));
  p.stderr.on('data', (c: Buffer) => (out += c.toString()));
  const exit = new Promise<number | null>((r) => p.once('exit', r));
  await waitFor(() => out.includes('cefd started'), 60_000, 'packaged cefd started');
  const net = await import('node:net');
  await new Promise<void>((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.end('<14>1 2026-11-28T10:00:00.000Z ksc01 KES - - - CEF:0|KasperskyLab|SecurityCenter|14.2|GNRL_EV_VIRUS_FOUND|Virus found|4|msg=from the package\n'));
    s.once('close', () => resolve());
    s.once('error', reject);
  });
  await waitFor(() => existsSync(join(dir, 'events.ndjson')) && readFileSync(join(dir, 'events.ndjson'), 'utf8').includes('from the package'), 60_000, 'the event in the output file');
  p.kill('SIGTERM');
  expect(await exit).toBe(0);
  // The KSC store (better-sqlite3's native module, as packaged) opens.
  const tenants = spawnSync(process.execPath, [cli, 'ksc', 'tenants', 'list', '--config', join(dir, 'cefd.yaml')], { encoding: 'utf8' });
  expect(tenants.stdout).toMatch(/default\s+on/);
  expect(tenants.status).toBe(0);
  expect(existsSync(join(dir, 'state/ksc.sqlite'))).toBe(true);
}, 120_000);

test('systemd-analyze verify accepts the units', () => {
  // verify resolves everything under --root: the programs ExecStart and ExecReload name
  // (ours: /usr/bin/cefd; /bin/kill is util-linux's, copied in) and the targets the
  // units are ordered against (the host's, copied in: the temporary root has no systemd).
  mkdirSync(join(root, 'bin'), { recursive: true });
  copyFileSync('/bin/kill', join(root, 'bin/kill'));
  const units = '/lib/systemd/system';
  mkdirSync(join(root, units), { recursive: true });
  for (const f of readdirSync(units)) {
    if (/\.(target|slice)$/.test(f) && lstatSync(join(units, f)).isFile() && !existsSync(join(root, 'lib/systemd/system', f))) copyFileSync(join(units, f), join(root, 'lib/systemd/system', f));
  }
  const r = spawnSync('systemd-analyze', ['verify', `--root=${root}`, '/lib/systemd/system/cefd.socket', '/lib/systemd/system/cefd.service'], { encoding: 'utf8' });
  expect((r.stdout + r.stderr).trim()).toBe('');
  expect(r.status).toBe(0);
});

test('remove keeps config and data; an upgrade keeps an edited config; purge keeps the data', () => {
  const conf = join(root, 'etc/cefd/cefd.yaml');
  appendFileSync(conf, '# edited by the operator\n');
  // The operator's mode for it: an upgrade keeps it (dpkg does; the postinst sets the mode on
  // first install only).
  chmodSync(conf, 0o600);
  const gid = statSync(conf).gid;
  mkdirSync(join(root, 'var/lib/cefd/buffers/events'), { recursive: true });
  writeFileSync(join(root, 'var/lib/cefd/buffers/events/segment'), 'undelivered events\n');

  // Upgrade: the edited conffile stays (dpkg keeps it; the test answers "keep" with --force-confold).
  let r = dpkg('-i', deb2);
  expect(r.status).toBe(0);
  expect(status()).toBe(`install ok installed ${pkg.version}+upgrade1`);
  expect(readFileSync(conf, 'utf8')).toContain('# edited by the operator');
  expect([statSync(conf).uid, statSync(conf).gid, statSync(conf).mode & 0o777]).toEqual([0, gid, 0o600]);
  expect(readFileSync(join(root, 'var/lib/cefd/buffers/events/segment'), 'utf8')).toBe('undelivered events\n');

  r = dpkg('-r', 'cefd');
  expect(r.status).toBe(0);
  expect(existsSync(join(root, 'usr/lib/cefd/dist/src/cli.js'))).toBe(false);
  expect(readFileSync(conf, 'utf8')).toContain('# edited by the operator');
  expect(existsSync(join(root, 'var/lib/cefd/buffers/events/segment'))).toBe(true);

  r = dpkg('--purge', 'cefd');
  expect(r.status).toBe(0);
  expect(r.stderr).toContain('is kept (events, disk buffers, KSC store)');
  expect(existsSync(conf)).toBe(false);
  expect(readFileSync(join(root, 'var/lib/cefd/buffers/events/segment'), 'utf8')).toBe('undelivered events\n');
  // The user stays too: files under /var/lib/cefd keep an owner with a name.
  expect(readFileSync(join(root, 'etc/passwd'), 'utf8')).toMatch(/^cefd:/m);
  // Removing, upgrading and purging unpack the whole tree several times; it holds the sql
  // source's database drivers (tedious brings @azure/*, about 50 MB), so more than 30 s.
}, 120_000);

test('after a purge, a reinstall ships a fresh conffile that dpkg tracks by checksum', () => {
  // Reinstall after the purge: a fresh conffile, tracked with its checksum.
  expect(dpkg('-i', deb).status).toBe(0);
  const conffiles = execFileSync('dpkg-query', [`--admindir=${root}/var/lib/dpkg`, '-W', '-f', '${Conffiles}', 'cefd'], { encoding: 'utf8' }).trim();
  const md5 = execFileSync('md5sum', [join(root, 'etc/cefd/cefd.yaml')], { encoding: 'utf8' }).split(' ')[0];
  expect(conffiles).toBe(`/etc/cefd/cefd.yaml ${md5}`);
  expect(readFileSync(join(root, 'etc/cefd/cefd.yaml'), 'utf8')).not.toContain('# edited by the operator');
});

test('a deleted conffile does not stop an upgrade from configuring; one dpkg brings back is readable by cefd', () => {
  const conf = join(root, 'etc/cefd/cefd.yaml');
  rmSync(conf);
  // dpkg keeps the deletion (the operator's choice); the postinst must not fail on it.
  let r = dpkg('-i', deb2);
  expect(r.stderr + r.stdout).not.toMatch(/error/i);
  expect(r.status).toBe(0);
  expect(status()).toBe(`install ok installed ${pkg.version}+upgrade1`);
  expect(existsSync(conf)).toBe(false);
  // --force-confmiss brings it back as the package ships it (root:root 0640); the postinst
  // gives it to group cefd, as on first install.
  r = dpkg('--force-confmiss', '-i', deb2);
  expect(r.status).toBe(0);
  const gid = Number(readFileSync(join(root, 'etc/group'), 'utf8').split('\n').find((l) => l.startsWith('cefd:'))!.split(':')[2]);
  expect([statSync(conf).uid, statSync(conf).gid, statSync(conf).mode & 0o777]).toEqual([0, gid, 0o640]);
}, 120_000);
