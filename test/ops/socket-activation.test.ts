/**
 * Upgrades without losing intake: systemd holds the listening sockets (socket activation,
 * src/sources/shared/systemd.ts, deploy/cefd.socket), so while cefd restarts, connections
 * wait in the kernel's backlog and datagrams in the socket's buffer. Debian's
 * `systemd-socket-activate` (package systemd) opens the TCP and the UDP socket the way
 * systemd does and passes them as fds 3 and 4 with LISTEN_FDS; a shell loop under it plays
 * the service manager's restart: it starts `cefd run` again, with LISTEN_PID set to the new
 * process, after each exit. Senders open connection after connection while cefd is
 * restarted three times (SIGTERM, as `systemctl restart` does): no connection may be
 * refused or reset, and every event must arrive (every datagram the kernel did not drop for a
 * full buffer: see udpKernelDrops).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { existsSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { CLI, freePort } from '../helpers/child.js';
import { tempDir, waitFor } from '../helpers/daemon.js';

/** A port free for TCP and UDP alike on 127.0.0.1. */
async function freeTcpUdpPort(): Promise<number> {
  for (;;) {
    const p = await freePort();
    const u = dgram.createSocket('udp4');
    const ok = await new Promise<boolean>((r) => {
      u.once('error', () => r(false));
      u.bind(p, '127.0.0.1', () => r(true));
    });
    if (ok) await new Promise<void>((r) => u.close(() => r()));
    else u.close();
    if (ok) return p;
  }
}

/**
 * Datagrams the kernel dropped on the UDP socket bound to 127.0.0.1:port (the `drops` column
 * of /proc/net/udp): a full receive buffer while no process reads it, as during a restart on
 * a starved machine. No collector can get those back; cefd must lose none of the others.
 */
function udpKernelDrops(port: number): number {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  let drops = 0;
  for (const row of readFileSync('/proc/net/udp', 'utf8').split('\n').slice(1)) {
    const f = row.trim().split(/\s+/);
    if (f[1] === local) drops += Number(f[f.length - 1]);
  }
  return drops;
}

/** The children of a process (/proc/<pid>/task/<pid>/children). */
function children(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

const alive = (pid: number) => existsSync(`/proc/${pid}`);

let proc: ChildProcess | undefined;
let dir: string | undefined;

afterEach(async () => {
  if (proc?.pid !== undefined && dir !== undefined) {
    rmSync(join(dir, 'run'), { force: true });
    for (const c of children(proc.pid)) process.kill(c, 'SIGKILL');
    if (proc.exitCode === null) proc.kill('SIGKILL');
  }
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  proc = undefined;
  dir = undefined;
});

const line = (tag: string) => `<14>1 2026-11-28T10:00:00.000Z ksc01 KES - - - CEF:0|KasperskyLab|SecurityCenter|14.2|GNRL_EV_VIRUS_FOUND|Virus found|4|msg=${tag}\n`;

test('restarts under load refuse no connection and lose no event (systemd-socket-activate)', async () => {
  dir = tempDir('cefd-sockact-');
  const port = await freeTcpUdpPort();
  writeFileSync(
    join(dir, 'cefd.yaml'),
    `state_dir: ./state
shutdown_timeout: 10s
decode_workers: 0
listeners:
  - { name: ksc, type: tcp, host: 127.0.0.1, port: ${port} }
  - { name: udp, type: udp, host: 127.0.0.1, port: ${port} }
outputs:
  - { name: events, type: file, path: ./events.ndjson }
dead_letter: { path: ./dead.ndjson }
metrics: { enabled: false }
`,
  );
  writeFileSync(join(dir, 'run'), '');
  // The loop is the service manager: while ./run exists, start cefd again when it exits.
  // `exec` keeps the pid, so LISTEN_PID names the cefd process, as systemd sets it.
  const loop = `while [ -e run ]; do sh -c 'export LISTEN_PID=$$; exec "$0" "$1" run --config cefd.yaml' "${process.execPath}" "${CLI}"; done`;
  const out: string[] = [];
  proc = spawn('systemd-socket-activate', ['-l', `127.0.0.1:${port}`, 'systemd-socket-activate', '-d', '-l', `127.0.0.1:${port}`, 'sh', '-c', loop], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stdout!.on('data', (c: Buffer) => out.push(c.toString()));
  proc.stderr!.on('data', (c: Buffer) => out.push(c.toString()));
  const starts = () => out.join('').split('cefd started').length - 1;
  const root = proc.pid!;
  await waitFor(() => out.join('').includes('Listening on'), 30_000, 'systemd-socket-activate listening');

  // Load: 4 senders, each opening connection after connection (50 events each), and one
  // UDP sender; every event carries a unique tag. The first connection also starts the
  // chain (systemd-socket-activate waits for traffic before it executes its command).
  const sent = new Set<string>();
  const failures: string[] = [];
  let loading = true;
  const tcpSender = async (w: number) => {
    for (let c = 0; loading; c++) {
      const tags = Array.from({ length: 50 }, (_, i) => `t${w}c${c}e${i}x`);
      try {
        await new Promise<void>((resolve, reject) => {
          const s = net.connect(port, '127.0.0.1');
          s.once('error', reject);
          s.on('data', () => {});
          s.once('connect', () => {
            s.end(tags.map(line).join(''));
          });
          s.once('close', (hadError) => (hadError ? reject(new Error('closed with an error')) : resolve()));
        });
        for (const t of tags) sent.add(t);
      } catch (e) {
        failures.push(`${tags[0]}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
    }
  };
  const udpSent = new Set<string>();
  const udpSender = async () => {
    const u = dgram.createSocket('udp4');
    for (let i = 0; loading; i++) {
      const tag = `u${i}x`;
      await new Promise<void>((r, j) => u.send(line(tag), port, '127.0.0.1', (e) => (e ? j(e) : r())));
      udpSent.add(tag);
      await new Promise((r) => setTimeout(r, 5));
    }
    u.close();
  };
  const load = Promise.all([0, 1, 2, 3].map(tcpSender));
  await waitFor(() => starts() === 1, 30_000, 'cefd started');
  const udp = udpSender();

  const cefdPid = () => children(root)[0];
  for (let r = 1; r <= 3; r++) {
    // Let some load reach this instance, then restart it.
    const before = sent.size;
    await waitFor(() => sent.size >= before + 400, 30_000, 'events sent to this instance');
    const pid = cefdPid()!;
    process.kill(pid, 'SIGTERM');
    await waitFor(() => !alive(pid) && starts() === r + 1, 60_000, `restart ${r}`);
  }
  const before = sent.size;
  await waitFor(() => sent.size >= before + 400, 30_000, 'events sent after the last restart');
  loading = false;
  await Promise.all([load, udp]);

  // Read while the socket is still open (systemd-socket-activate holds it until it exits),
  // after the last instance has read everything the kernel kept.
  const udpMissing = () => {
    const text = readFileSync(join(dir!, 'events.ndjson'), 'utf8');
    return [...udpSent].filter((t) => !text.includes(`"${t}"`)).length;
  };
  await waitFor(() => udpMissing() === udpKernelDrops(port), 30_000, 'every datagram the kernel kept, read');
  const udpDrops = udpKernelDrops(port);
  unlinkSync(join(dir, 'run'));
  const last = cefdPid()!;
  process.kill(last, 'SIGTERM');
  const code = await new Promise<number | null>((r) => proc!.once('exit', (c) => r(c)));
  expect(code).toBe(0);

  expect(failures).toEqual([]);
  const text = out.join('');
  // Each instance took both sockets from systemd rather than binding its own.
  expect(text.split('(socket from systemd)').length - 1).toBe(2 * 4);
  expect(text).not.toContain('matches no listener');
  const got = readFileSync(join(dir, 'events.ndjson'), 'utf8');
  const arrived = new Map<string, number>();
  for (const m of got.matchAll(/"extensions":\{"message":"([tu]\d+(?:c\d+e\d+)?x)"/g)) arrived.set(m[1]!, (arrived.get(m[1]!) ?? 0) + 1);
  expect([...sent].filter((t) => !arrived.has(t))).toEqual([]);
  // Every datagram the kernel kept arrived: the only ones missing are those it counted as dropped.
  expect([...udpSent].filter((t) => !arrived.has(t)).length).toBe(udpDrops);
  expect(udpSent.size - udpDrops).toBeGreaterThan(100);
  expect([...arrived.values()].filter((n) => n > 1)).toEqual([]);
  expect(sent.size).toBeGreaterThan(2000);
  expect(existsSync(join(dir, 'dead.ndjson')) ? readFileSync(join(dir, 'dead.ndjson'), 'utf8') : '').toBe('');
}, 240_000);

test('a socket named like a listener (FileDescriptorName=) goes to it whatever the port; a socket no listener takes is reported; a reload cannot reopen it', async () => {
  dir = tempDir('cefd-sockname-');
  const named = await freePort();
  const spare = await freePort();
  const configured = await freePort();
  writeFileSync(
    join(dir, 'cefd.yaml'),
    `state_dir: ./state
decode_workers: 0
listeners:
  - { name: ksc, type: tcp, host: 127.0.0.1, port: ${configured} }
outputs:
  - { name: events, type: file, path: ./events.ndjson }
dead_letter: { path: ./dead.ndjson }
metrics: { enabled: false }
`,
  );
  const out: string[] = [];
  proc = spawn('systemd-socket-activate', ['-l', `127.0.0.1:${named}`, '-l', `127.0.0.1:${spare}`, '--fdname=ksc:spare', process.execPath, CLI, 'run', '--config', 'cefd.yaml'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stdout!.on('data', (c: Buffer) => out.push(c.toString()));
  proc.stderr!.on('data', (c: Buffer) => out.push(c.toString()));
  await waitFor(() => out.join('').includes(`Listening on 127.0.0.1:${spare}`), 30_000, 'systemd-socket-activate listening');
  // This connection starts cefd (systemd-socket-activate waits for traffic) and is served by it.
  await new Promise<void>((resolve, reject) => {
    const s = net.connect(named, '127.0.0.1', () => s.end(line('by-name')));
    s.once('close', () => resolve());
    s.once('error', reject);
  });
  await waitFor(() => out.join('').includes('cefd started'), 30_000, 'cefd started');
  await waitFor(() => existsSync(join(dir!, 'events.ndjson')) && readFileSync(join(dir!, 'events.ndjson'), 'utf8').includes('"message":"by-name"'), 60_000, 'the event');
  const text = out.join('');
  expect(text).toContain(`listening for tcp on 127.0.0.1:${named} (socket from systemd)`);
  expect(text).toContain(`socket 4 from systemd (spare, tcp port ${spare}) matches no listener`);
  // The configured port was not bound: the socket replaced it.
  const refused = await new Promise<string>((resolve) => {
    const s = net.connect(configured, '127.0.0.1', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
  });
  expect(refused).toBe('ECONNREFUSED');

  // A reload that would reopen that listener is refused (the socket could not be had
  // again); the listener keeps serving on the socket. The restart is the way to apply it.
  writeFileSync(join(dir, 'cefd.yaml'), readFileSync(join(dir, 'cefd.yaml'), 'utf8').replace('port: ' + configured + ' }', 'port: ' + configured + ', max_connections: 50 }'));
  proc.kill('SIGHUP');
  await waitFor(() => out.join('').includes('which a reload cannot reopen: restart cefd instead'), 60_000, 'the refused reload');
  await new Promise<void>((resolve, reject) => {
    const s = net.connect(named, '127.0.0.1', () => s.end(line('after-reload')));
    s.once('close', () => resolve());
    s.once('error', reject);
  });
  await waitFor(() => readFileSync(join(dir!, 'events.ndjson'), 'utf8').includes('"message":"after-reload"'), 60_000, 'the event after the reload');
  proc.kill('SIGTERM');
  expect(await new Promise<number | null>((r) => proc!.once('exit', (c) => r(c)))).toBe(0);
});

/** The file descriptor of a bound dgram socket (Node keeps it on an internal handle). */
function dgramFd(u: dgram.Socket): number {
  const state = Object.getOwnPropertySymbols(u).map((s) => (u as unknown as Record<symbol, { handle?: { fd?: number } }>)[s]).find((v) => typeof v?.handle?.fd === 'number');
  if (state === undefined) throw new Error('no fd on the dgram socket');
  return state.handle!.fd!;
}

test('a UDP socket from systemd keeps the receive buffer its unit gave it: receive_buffer_bytes does not shrink it (a smaller one is reported)', async () => {
  dir = tempDir();
  const port = await freeTcpUdpPort();
  // The unit's socket, as systemd makes it with ReceiveBuffer=: here as large as the
  // system allows (rmem_max) without CAP_NET_ADMIN's SO_RCVBUFFORCE.
  const u = dgram.createSocket('udp4');
  await new Promise<void>((r) => u.bind(port, '127.0.0.1', () => r()));
  u.setRecvBufferSize(64 * 1024 * 1024);
  const before = u.getRecvBufferSize();
  expect(before).toBeGreaterThan(2 * 1024 * 1024);
  writeFileSync(
    join(dir, 'cefd.yaml'),
    `state_dir: ./state
listeners: [ { name: udp, type: udp, host: 127.0.0.1, port: ${port}, receive_buffer_bytes: 1MiB } ]
outputs: [ { name: events, type: file, path: ./events.ndjson } ]
dead_letter: { path: ./dead.ndjson }
metrics: { enabled: false }
`,
  );
  // fd 3 with LISTEN_FDS=1 and LISTEN_PID the daemon's own (the shell execs it).
  proc = spawn('sh', ['-c', 'LISTEN_PID=$$ exec "$0" "$@"', process.execPath, CLI, 'run', '--config', 'cefd.yaml'], {
    cwd: dir,
    env: { ...process.env, LISTEN_FDS: '1' },
    stdio: ['ignore', 'pipe', 'pipe', dgramFd(u)],
  });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  await waitFor(() => out.includes('cefd started'), 30_000, 'cefd started');
  expect(out).toContain('(socket from systemd)');
  expect(u.getRecvBufferSize()).toBe(before);
  // The other way round: a socket smaller than receive_buffer_bytes is kept and reported.
  proc.kill('SIGTERM');
  await new Promise((r) => proc!.once('exit', r));
  u.setRecvBufferSize(256 * 1024);
  const small = u.getRecvBufferSize();
  out = '';
  proc = spawn('sh', ['-c', 'LISTEN_PID=$$ exec "$0" "$@"', process.execPath, CLI, 'run', '--config', 'cefd.yaml'], {
    cwd: dir,
    env: { ...process.env, LISTEN_FDS: '1' },
    stdio: ['ignore', 'pipe', 'pipe', dgramFd(u)],
  });
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  await waitFor(() => out.includes('cefd started'), 30_000, 'cefd started again');
  expect(u.getRecvBufferSize()).toBe(small);
  expect(out).toMatch(/the socket from systemd has a receive buffer of \d+ bytes, less than receive_buffer_bytes \(1048576\)/);
  proc.kill('SIGTERM');
  await new Promise((r) => proc!.once('exit', r));
  u.close();
});
