/**
 * `cefd run` and `cefd validate` as child processes through the CLI (dist/, built by
 * `npm test`): SIGTERM drain, SIGHUP file reopen and config reload, exit codes.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { renameSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, test } from 'vitest';
import { readNdjson, sendTcp, tempDir, waitFor, waitLines } from '../helpers/daemon.js';
import { freePort } from '../helpers/child.js';

const CLI = fileURLToPath(new URL('../../dist/src/cli.js', import.meta.url));

interface Child {
  proc: ChildProcess;
  out: string[];
  exit: Promise<number | null>;
}

let children: Child[] = [];
afterEach(() => {
  for (const c of children) c.proc.kill('SIGKILL');
  children = [];
});

function run(args: string[], cwd: string): Child {
  const proc = spawn(process.execPath, [CLI, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  const out: string[] = [];
  proc.stdout!.on('data', (c: Buffer) => out.push(c.toString()));
  proc.stderr!.on('data', (c: Buffer) => out.push(c.toString()));
  const exit = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  const c = { proc, out, exit };
  children.push(c);
  return c;
}

async function until(c: Child, text: string, timeoutMs = 30_000): Promise<void> {
  await waitFor(() => c.out.join('').includes(text), timeoutMs, `"${text}" in the daemon's output`);
}

/** The daemon's configuration file in `dir`: `head` first, one tcp listener, a file output, `extra`, `tail` (metrics). */
function writeConfig(dir: string, port: number, head: string, extra: string, tail: string): string {
  const file = join(dir, 'cefd.yaml');
  writeFileSync(
    file,
    `state_dir: ./state
${head}
listeners:
  - { name: tcp, type: tcp, host: 127.0.0.1, port: ${port} }
outputs:
  - { name: events, type: file, path: ./events.ndjson }
${extra}
dead_letter: { path: ./dead.ndjson }
${tail}
`,
  );
  return file;
}

function config(dir: string, port: number, metrics: number, extra = ''): string {
  return writeConfig(dir, port, 'shutdown_timeout: 10s', extra, `metrics: { host: 127.0.0.1, port: ${metrics} }`);
}

/** What cefd logs once its configuration is loaded and its signal handlers hold signals, before the start. */
const STARTING = 'starting (pid';

/** A configuration whose start takes a moment (two decode worker threads load their modules). */
function startupConfig(dir: string, port: number, extra = ''): string {
  return writeConfig(dir, port, 'decode_workers: 2', extra, 'metrics: { enabled: false }');
}

/**
 * Sends `sig` the moment the child's output shows `text` (in the output's own event, not
 * after a poll: the start-up window is short), after `before` if given.
 */
function signalOn(c: Child, text: string, sig: NodeJS.Signals, before?: () => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (!c.out.join('').includes(text)) return;
      c.proc.stdout!.off('data', check);
      before?.();
      c.proc.kill(sig);
      resolve();
    };
    c.proc.stdout!.on('data', check);
    void c.exit.then((code) => reject(new Error(`cefd exited (${code}) before "${text}": ${c.out.join('')}`)));
  });
}

const line = (i: number) => `<14>1 2026-11-28T10:00:00.000Z ksc01 - - - - CEF:0|KasperskyLab|SecurityCenter|14.2|KLPRCI_TaskState|Running|1|rt=${1795860000000 + i} cs3=Task ${i} cs3Label=TaskName cn1=1 cn1Label=TaskNewState\n`;

describe('cefd run', () => {
  test('SIGTERM right after sending: what cefd read is delivered (now or after the restart), the rest is reset to the sender; exit 0', async () => {
    const dir = tempDir();
    const port = await freePort();
    const file = config(dir, port, await freePort());
    const c = run(['run', '--config', file], dir);
    await until(c, 'cefd started');
    const n = 20_000;
    const sock = net.connect(port, '127.0.0.1');
    let reset = false;
    sock.on('error', () => (reset = true));
    await new Promise((r) => sock.once('connect', r));
    const payload = Array.from({ length: n }, (_, i) => line(i)).join('');
    // Write everything, then signal at once, without closing the connection.
    await new Promise<void>((r) => sock.write(payload, () => r()));
    c.proc.kill('SIGTERM');
    expect(await c.exit).toBe(0);
    if (!sock.destroyed) await new Promise((r) => sock.once('close', r));
    // cefd stops reading at once (docs/reliability.md): what it read but did not decode in
    // time is kept in state_dir and delivered by the next start, before new input.
    const again = run(['run', '--config', file], dir);
    await until(again, 'cefd started');
    again.proc.kill('SIGTERM');
    expect(await again.exit).toBe(0);
    const events = readNdjson(join(dir, 'events.ndjson'));
    // A prefix of what was sent, in order, each once.
    const tasks = events.map((e) => Object.entries((e['cef'] as { custom: Record<string, string> }).custom).find(([k]) => k.endsWith(':TaskName'))?.[1]);
    expect(tasks).toEqual(Array.from({ length: events.length }, (_, i) => `Task ${i}`));
    // What was not read stayed in the kernel: the sender saw its connection reset.
    if (events.length < n) expect(reset).toBe(true);
    else expect(c.out.join('')).toContain('every event was delivered');
  });

  test('SIGHUP reopens the output file (logrotate) and reloads the configuration; a bad config keeps the old one', async () => {
    const dir = tempDir();
    const port = await freePort();
    const metrics = await freePort();
    const file = config(dir, port, metrics);
    const c = run(['run', '--config', file], dir);
    await until(c, 'cefd started');
    await sendTcp(port, [line(1), line(2)]);
    await waitLines(join(dir, 'events.ndjson'), 2);
    renameSync(join(dir, 'events.ndjson'), join(dir, 'events.ndjson.1'));
    // Also add an output, to see the reload happen.
    config(dir, port, metrics, `  - { name: copy, type: file, path: ./copy.ndjson }`);
    c.proc.kill('SIGHUP');
    await until(c, 'configuration reloaded');
    await sendTcp(port, [line(3)]);
    await waitLines(join(dir, 'events.ndjson'), 1);
    await waitLines(join(dir, 'copy.ndjson'), 1);
    expect(readNdjson(join(dir, 'events.ndjson.1'))).toHaveLength(2);
    // An invalid file: logged, old config stays, the listener keeps working.
    writeFileSync(file, 'listeners: [ { name: tcp, type: tcp, port: "nope" } ]\nbogus_key: 1\n');
    c.proc.kill('SIGHUP');
    await until(c, 'configuration reload failed');
    await sendTcp(port, [line(4)]);
    await waitLines(join(dir, 'copy.ndjson'), 2);
    const logs = c.out.join('');
    expect(logs).toMatch(/cefd\.yaml:1: listeners\[0\]\.port: expected an integer/);
    expect(logs).toMatch(/cefd\.yaml:2: bogus_key: unknown key/);
    c.proc.kill('SIGTERM');
    expect(await c.exit).toBe(0);
  });

  test('SIGHUP during start-up does not kill cefd: it becomes ready, then reloads once (the file changed meanwhile is applied)', async () => {
    const dir = tempDir();
    const port = await freePort();
    const file = startupConfig(dir, port);
    const c = run(['run', '--config', file], dir);
    // The configuration is loaded when "starting" is logged; the start (decode workers,
    // listeners) is still ahead. Now the file changes and systemctl reload comes.
    await signalOn(c, STARTING, 'SIGHUP', () => startupConfig(dir, port, `  - { name: copy, type: file, path: ./copy.ndjson }`));
    await until(c, 'configuration reloaded');
    const text = c.out.join('');
    expect(text).toContain('SIGHUP during start-up: the configuration is reloaded once cefd has started');
    expect(text.indexOf('cefd started')).toBeGreaterThan(-1);
    expect(text.indexOf('configuration reloaded')).toBeGreaterThan(text.indexOf('cefd started'));
    expect(text.match(/configuration reloaded/g)).toHaveLength(1);
    expect(c.proc.exitCode).toBe(null);
    expect(c.proc.signalCode).toBe(null);
    await sendTcp(port, [line(1)]);
    await waitLines(join(dir, 'events.ndjson'), 1);
    await waitLines(join(dir, 'copy.ndjson'), 1);
    c.proc.kill('SIGTERM');
    expect(await c.exit).toBe(0);
  });

  test('SIGTERM during start-up: cefd finishes starting, then stops cleanly (exit 0)', async () => {
    const dir = tempDir();
    const c = run(['run', '--config', startupConfig(dir, await freePort())], dir);
    await signalOn(c, STARTING, 'SIGTERM');
    expect(await c.exit).toBe(0);
    const text = c.out.join('');
    expect(text).toContain('SIGTERM during start-up: cefd stops once it has started');
    expect(text.indexOf('SIGTERM: stopping')).toBeGreaterThan(text.indexOf('cefd started'));
    expect(text).toContain('stopped; every event was delivered');
  });

  test('a reload that adds a stdout output while the logs go to stdout is refused (restart needed): no event is mixed into the logs', async () => {
    const dir = tempDir();
    const port = await freePort();
    const file = config(dir, port, await freePort());
    const c = run(['run', '--config', file], dir);
    const stdout: string[] = [];
    c.proc.stdout!.on('data', (d: Buffer) => stdout.push(d.toString()));
    await until(c, 'cefd started');
    config(dir, port, await freePort(), `  - { name: so, type: stdout }`);
    c.proc.kill('SIGHUP');
    await until(c, 'configuration reload failed');
    await sendTcp(port, [line(1)]);
    await waitLines(join(dir, 'events.ndjson'), 1);
    c.proc.kill('SIGTERM');
    expect(await c.exit).toBe(0);
    const lines = stdout.join('').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
    const failed = lines.find((l) => l['code'] === 'config_reload_failed');
    expect(failed).toMatchObject({ reason: 'restart_needed', outputs: ['so'] });
    expect(String(failed!['msg'])).toContain("output so writes events to stdout, where cefd's logs go");
    // Every line on stdout is a log line; the event went to the running outputs only.
    expect(lines.every((l) => typeof l['level'] === 'string' && typeof l['msg'] === 'string')).toBe(true);
  });

  test('a reload that removes the last stdout output: applied, and a warning says the logs stay on stderr until a restart', async () => {
    const dir = tempDir();
    const port = await freePort();
    const metrics = await freePort();
    const file = config(dir, port, metrics, `  - { name: so, type: stdout }`);
    const c = run(['run', '--config', file], dir);
    const stderr: string[] = [];
    c.proc.stderr!.on('data', (d: Buffer) => stderr.push(d.toString()));
    await until(c, 'cefd started');
    config(dir, port, metrics);
    c.proc.kill('SIGHUP');
    await until(c, 'configuration reloaded');
    c.proc.kill('SIGTERM');
    expect(await c.exit).toBe(0);
    const warned = stderr.join('').split('\n').filter((l) => l.includes('config_restart_needed')).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(warned).toEqual([expect.objectContaining({ key: 'outputs', msg: "outputs changed from a stdout output to none: cefd's logs stay on stderr until the next restart" })]);
  });

  test('an invalid configuration exits 78 with the key and its line', async () => {
    const dir = tempDir();
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'listeners:\n  - name: tcp\n    type: tcp\n    port: 99999\noutputs:\n  - { name: x, type: file, path: ./x, filter: "cef.name ==" }\n');
    const c = run(['run', '--config', file], dir);
    expect(await c.exit).toBe(78);
    const out = c.out.join('');
    expect(out).toContain('bad.yaml:4: listeners[0].port: must be at most 65535');
    expect(out).toMatch(/bad\.yaml:6: outputs\[0\]\.filter: bad filter/);
  });

  test('a port in use is a runtime failure: exit 1 with a clear message', async () => {
    const dir = tempDir();
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      const c = run(['run', '--config', config(dir, port, await freePort())], dir);
      expect(await c.exit).toBe(1);
      expect(c.out.join('')).toContain(`cannot listen on 127.0.0.1:${port}`);
    } finally {
      blocker.close();
    }
  });
});

describe('cefd validate', () => {
  test('exit 0 on a good file; secrets never printed', () => {
    const dir = tempDir();
    const file = join(dir, 'ok.yaml');
    writeFileSync(join(dir, 'token'), 's3cr3t-t0ken\n');
    writeFileSync(file, 'outputs:\n  - { name: siem, type: http, url: "https://siem.example/ingest", bearer_token_file: ./token }\nmetrics: { bearer_token: "${METRICS_TOKEN}" }\n');
    const r = spawnSync(process.execPath, [CLI, 'validate', '--config', file, '--print'], { cwd: dir, env: { ...process.env, METRICS_TOKEN: 'm3trics-t0ken-0123456789abcdef0123' }, encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('OK (2 listeners, 1 outputs)');
    expect(r.stdout).toContain('(redacted)');
    expect(r.stdout + r.stderr).not.toContain('s3cr3t-t0ken');
    expect(r.stdout + r.stderr).not.toContain('m3trics-t0ken-0123456789abcdef0123');
  });

  test('exit 78 naming every bad key and its line; an unset environment variable is an error', () => {
    const dir = tempDir();
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'timezone: Mars/Olympus\nlisteners:\n  - { name: a, type: tcp }\n  - { name: a, type: udp, prot: 1 }\noutputs:\n  - { name: o, type: http, url: "${NO_SUCH_VAR}" }\n');
    const env = { ...process.env };
    delete env['NO_SUCH_VAR'];
    const r = spawnSync(process.execPath, [CLI, 'validate', '--config', file], { cwd: dir, encoding: 'utf8', env });
    expect(r.status).toBe(78);
    expect(r.stderr).toContain('bad.yaml:1: timezone: expected an IANA time zone name');
    expect(r.stderr).toContain('bad.yaml:4: listeners[1].prot: unknown key (did you mean port?)');
    expect(r.stderr).toContain('bad.yaml:4: listeners[1].name: duplicate name "a"');
    expect(r.stderr).toContain('bad.yaml:6: outputs[0].url: environment variable NO_SUCH_VAR is not set');
  });

  test('KSC integration problems the daemon would refuse are caught by validate', () => {
    const dir = tempDir();
    const file = join(dir, 'k.yaml');
    writeFileSync(file, 'ksc:\n  admin: { enabled: true }\n  response_rules:\n    - { name: r, type: ksctasks, tasks: [], filter: "true" }\n');
    const r = spawnSync(process.execPath, [CLI, 'validate', '--config', file], { cwd: dir, encoding: 'utf8' });
    expect(r.status).toBe(78);
    expect(r.stderr).toContain('ksc.admin.bearer_token: is required when ksc.admin.enabled is true');
    expect(r.stderr).toContain('ksc.response_rules[0]: tasks: give at least one KSC task name');
  });

  test('a normalizer that does not load is a configuration error', () => {
    const dir = tempDir();
    const file = join(dir, 'n.yaml');
    writeFileSync(file, 'listeners:\n  - { name: t, type: tcp, normalizers: [ksc, ./missing.js] }\n');
    const r = spawnSync(process.execPath, [CLI, 'validate', '--config', file], { cwd: dir, encoding: 'utf8' });
    expect(r.status).toBe(78);
    expect(r.stderr).toContain('listeners[0].normalizers[1]: normalizer module');
  });
});
