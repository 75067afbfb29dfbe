/**
 * One daemon per state directory (src/state-dir.ts, docs/operations.md#one-daemon-per-state-directory):
 * `cefd run` as real processes on one state_dir. A second one is refused (exit 1,
 * `state_dir_locked`), also after a reload of the first and when both start at once; a
 * daemon killed with -9 does not block the next start, whatever its lock file says. And in
 * process: a reload that changes state_dir is refused (a restart moves it).
 */
import { spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { CLI, runCefd, type ChildDaemon } from '../helpers/child.js';
import { readNdjson, sendTcp, startFromFile, tempDir, waitFor } from '../helpers/daemon.js';
import type { Daemon } from '../../src/daemon.js';
import { StateDirLockedError, lockStateDir, type StateDirLock } from '../../src/state-dir.js';

let started: ChildDaemon[] = [];
const inProcess: Daemon[] = [];
const held: StateDirLock[] = [];
afterEach(async () => {
  await Promise.all(inProcess.splice(0).map((d) => d.stop()));
  for (const l of held.splice(0)) l.release();
  for (const c of started) if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
  await Promise.all(started.map((c) => c.exit));
  started = [];
});

/** A daemon in its own folder `<root>/<name>` (config, events file) on the shared `<root>/state`. */
function daemon(root: string, name: string): ChildDaemon {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  const c = runCefd(
    dir,
    `state_dir: ${join(root, 'state')}
shutdown_timeout: 5s
decode_workers: 0
listeners:
  - { name: tcp, type: tcp, host: 127.0.0.1, port: 0 }
outputs:
  - { name: events, type: file, path: ${dir}/events.ndjson, buffer: { type: disk } }
dead_letter: { path: ${dir}/dead.ndjson }
metrics: { host: 127.0.0.1, port: 0 }
`,
  );
  started.push(c);
  return c;
}

const STARTED = 'cefd started';

/** The pid a refused start names in its fatal line, with its exit code. */
async function refused(c: ChildDaemon): Promise<{ code: number | null; line: Record<string, unknown> }> {
  const code = await c.exit;
  const line = c
    .text()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .find((l) => l['code'] === 'state_dir_locked');
  return { code, line: line ?? {} };
}

/** The port a child daemon's tcp listener bound (its log line says). */
function tcpPort(c: ChildDaemon): number {
  const m = /listening for tcp on 127\.0\.0\.1:(\d+)/.exec(c.text());
  if (m === null) throw new Error(`no tcp port in ${c.text()}`);
  return Number(m[1]);
}

const line = (i: number) => `<14>1 2026-11-28T10:00:00.000Z h - - - - CEF:0|KasperskyLab|SecurityCenter|14.2|KLPRCI_TaskState|Running|1|cnt=${i}\n`;

test('a second cefd on the same state_dir exits 1 with state_dir_locked; a reload keeps the lock; validate does not take it', { timeout: 120_000 }, async () => {
  const root = tempDir();
  const first = daemon(root, 'a');
  await first.until(STARTED);
  expect(readFileSync(join(root, 'state', 'cefd.lock'), 'utf8')).toBe(`${first.proc.pid}\n`);

  const second = daemon(root, 'b');
  const r = await refused(second);
  expect(r.code).toBe(1);
  expect(r.line).toMatchObject({ level: 'fatal', code: 'state_dir_locked', holder: first.proc.pid });
  expect(String(r.line['msg'])).toContain(`state_dir ${join(root, 'state')} is in use by another cefd (pid ${first.proc.pid})`);
  // It wrote nothing: no buffer of its own output, no events file, and the first one's pid stays in the lock.
  expect(second.text()).not.toContain(STARTED);
  expect(existsSync(join(root, 'b', 'events.ndjson'))).toBe(false);
  expect(readFileSync(join(root, 'state', 'cefd.lock'), 'utf8')).toBe(`${first.proc.pid}\n`);

  // validate runs the same checks as run, but not the lock.
  const v = spawnSync(process.execPath, [CLI, 'validate', '--config', join(root, 'b', 'cefd.yaml')], { cwd: join(root, 'b'), encoding: 'utf8' });
  expect(v.stderr).toBe('');
  expect(v.status).toBe(0);

  // SIGHUP: reloaded, still the one daemon of the folder.
  first.proc.kill('SIGHUP');
  await first.until('configuration reloaded');
  const third = daemon(root, 'c');
  expect((await refused(third)).code).toBe(1);
  expect((await refused(third)).line['holder']).toBe(first.proc.pid);

  // The first one still works.
  await sendTcp(tcpPort(first), [line(1)]);
  await waitFor(() => readNdjson(join(root, 'a', 'events.ndjson'), { tolerateTornTail: true }).length === 1, 30_000, 'the event written by the first daemon');
  first.proc.kill('SIGTERM');
  expect(await first.exit).toBe(0);
  // A clean stop empties the lock file; the next daemon starts.
  expect(readFileSync(join(root, 'state', 'cefd.lock'), 'utf8')).toBe('');
  const next = daemon(root, 'b');
  await next.until(STARTED);
  next.proc.kill('SIGTERM');
  expect(await next.exit).toBe(0);
});

test('a daemon killed with -9 does not block the restart; nor does a lock file naming a live process that is not cefd', { timeout: 120_000 }, async () => {
  const root = tempDir();
  const first = daemon(root, 'a');
  await first.until(STARTED);
  await sendTcp(tcpPort(first), [line(1), line(2)]);
  await waitFor(() => readNdjson(join(root, 'a', 'events.ndjson'), { tolerateTornTail: true }).length === 2, 30_000, 'two events written');
  first.proc.kill('SIGKILL');
  await first.exit;
  // The crash left its pid in the file.
  expect(readFileSync(join(root, 'state', 'cefd.lock'), 'utf8')).toBe(`${first.proc.pid}\n`);

  const again = daemon(root, 'a');
  await again.until(STARTED);
  expect(readFileSync(join(root, 'state', 'cefd.lock'), 'utf8')).toBe(`${again.proc.pid}\n`);
  again.proc.kill('SIGTERM');
  expect(await again.exit).toBe(0);

  // A reused process id: the file names a live process (this test runner), and a pid file
  // of an older cefd is there too. Neither holds the lock.
  writeFileSync(join(root, 'state', 'cefd.lock'), `${process.pid}\n`);
  writeFileSync(join(root, 'state', 'cefd.pid'), `${process.pid}\n`);
  const third = daemon(root, 'a');
  await third.until(STARTED);
  expect(existsSync(join(root, 'state', 'cefd.pid'))).toBe(false);
  third.proc.kill('SIGTERM');
  expect(await third.exit).toBe(0);
});

test('two daemons started at the same moment on one state_dir: exactly one runs', { timeout: 120_000 }, async () => {
  const root = tempDir();
  const a = daemon(root, 'a');
  const b = daemon(root, 'b');
  // One of them exits (refused); the other starts.
  const loser = await Promise.race([a.exit.then(() => a), b.exit.then(() => b)]);
  const winner = loser === a ? b : a;
  const r = await refused(loser);
  expect(r.code).toBe(1);
  expect(r.line['code']).toBe('state_dir_locked');
  await winner.until(STARTED);
  expect(r.line['holder']).toBe(winner.proc.pid);
  expect(loser.text()).not.toContain(STARTED);
  winner.proc.kill('SIGTERM');
  expect(await winner.exit).toBe(0);
});

test('a reload that changes state_dir is refused (restart needed): the old folder keeps its lock and its disk buffers; the same folder through a symbolic link is no change', async () => {
  const root = tempDir();
  const yaml = (state: string, level = 'info') => `state_dir: ${join(root, state)}
decode_workers: 0
listeners: [ { name: tcp, type: tcp, host: 127.0.0.1, port: 0 } ]
outputs: [ { name: events, type: file, path: ${root}/events.ndjson, buffer: { type: disk } } ]
dead_letter: { path: ${root}/dead.ndjson }
metrics: { enabled: false }
logging: { level: ${level} }
`;
  const { d, file, logs } = await startFromFile(root, yaml('one'), inProcess);
  const before = d.current;
  writeFileSync(file, yaml('two', 'debug'));
  expect(await d.reload()).toBe(false);
  const failed = logs.parsed().filter((l) => l['code'] === 'config_reload_failed');
  expect(failed).toHaveLength(1);
  expect(failed[0]).toMatchObject({ reason: 'restart_needed', key: 'state_dir' });
  expect(String(failed[0]!['msg'])).toMatch(/state_dir changed from .*one to .*two: .*restart cefd to apply it/);
  // Nothing of the new configuration was applied, the new folder not even made.
  expect(d.current).toBe(before);
  expect(existsSync(join(root, 'two'))).toBe(false);
  expect(() => lockStateDir(join(root, 'one'))).toThrow(StateDirLockedError);
  // The buffer stays where the lock is, and takes events.
  await sendTcp(d.ports()['tcp']!, [line(1)]);
  await waitFor(() => readNdjson(join(root, 'events.ndjson'), { tolerateTornTail: true }).length === 1, 30_000, 'the event');
  expect(existsSync(join(root, 'one', 'buffers', 'events'))).toBe(true);

  // The same folder through a symbolic link keeps the lock it has (not "in use" by ourselves).
  symlinkSync(join(root, 'one'), join(root, 'one-link'));
  writeFileSync(file, yaml('one-link'));
  expect(await d.reload()).toBe(true);
  expect(() => lockStateDir(join(root, 'one'))).toThrow(StateDirLockedError);
});

test('the lock file belongs to the state folder\'s owner even when root makes it (sudo cefd buffers drop before the service ever ran), so the daemon\'s user can take it', () => {
  const root = tempDir();
  const dir = join(root, 'state');
  mkdirSync(dir, { mode: 0o700 });
  // As root (CI), the folder belongs to another user, as /var/lib/cefd belongs to cefd.
  if (process.getuid?.() === 0) chownSync(dir, 65534, 65534);
  const lock = lockStateDir(dir);
  held.push(lock);
  const f = statSync(join(dir, 'cefd.lock'));
  const d = statSync(dir);
  expect([f.uid, f.gid]).toEqual([d.uid, d.gid]);
});
