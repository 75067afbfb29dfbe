#!/usr/bin/env node
// nats-hop.mjs: the latency the receiver -> JetStream -> processor hop adds, from the time a
// cefd read a frame (the event's `received`, set by the receiver) to the time its event is
// in the output file, at a steady sending rate below capacity.
//
//   npm run build && node bench/nats-hop.mjs --processors 0|1|2 --rate 2000 --seconds 20
//
// --processors 0: one single-node cefd (tcp listener -> file output): the baseline.
// --processors N: a nats-server (Debian's 2.9, JetStream, temp folder, free port), one
//   receiver cefd (mode: receiver, tcp listener, nats output with a disk buffer, as in
//   docs/cluster.md) and N processors (nats listener, one durable consumer, file output).
// One TCP connection sends KSC task-state lines at --rate lines/s (in 10 ms ticks) for
// --seconds; the output files are tailed every 2 ms and each event's latency is the time
// its line was seen minus its `received` (both on this machine's clock, ms). The first
// --warmup seconds (default 2) are left out. Prints p50/p90/p99/max (ms), the events and
// every cefd process's CPU seconds (/proc). --cpu-prof DIR profiles every cefd process.
// The tail's resolution is the poll (2 ms) plus the event's ms-rounded `received`.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const arg = (k, d) => {
  const i = process.argv.indexOf(`--${k}`);
  return i < 0 ? d : Number(process.argv[i + 1]);
};
const P = arg('processors', 1);
const RATE = arg('rate', 2000);
const SECS = arg('seconds', 20);
const WARMUP = arg('warmup', 2);
const profDir = (() => { const i = process.argv.indexOf('--cpu-prof'); return i < 0 ? null : process.argv[i + 1]; })();
// CEFD_CLI: another build to compare with (default: this tree's dist/).
const CLI = process.env.CEFD_CLI ?? new URL('../dist/src/cli.js', import.meta.url).pathname;
const freePort = () => new Promise((r) => { const s = net.createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => r(p)); }); });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const dir = mkdtempSync(join(tmpdir(), 'cefd-bench-hop-'));
const children = [];
const cefd = (name, yaml) => {
  const d = join(dir, name);
  mkdirSync(d);
  writeFileSync(join(d, 'cefd.yaml'), yaml);
  const proc = spawn(process.execPath, [...(profDir ? ['--cpu-prof', '--cpu-prof-dir', profDir] : []), CLI, 'run', '--config', join(d, 'cefd.yaml')], { cwd: d, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.on('data', (c) => (out = (out + c).slice(-20000)));
  proc.stderr.on('data', (c) => (out = (out + c).slice(-20000)));
  const c = { name, d, proc, started: async () => { while (!out.includes('cefd started')) { if (proc.exitCode !== null) throw new Error(`${name} exited: ${out}`); await sleep(20); } } };
  children.push(c);
  return c;
};

const tcpPort = await freePort();
let srv = null;
const outputsOf = [];
if (P === 0) {
  outputsOf.push(cefd('single', `state_dir: ./state
listeners: [ { name: ksc, type: tcp, host: 127.0.0.1, port: ${tcpPort} } ]
outputs: [ { name: events, type: file, path: ./events.ndjson } ]
dead_letter: { path: ./dead.ndjson }
metrics: { enabled: false }
`));
} else {
  const port = await freePort();
  srv = spawn(process.env.NATS_SERVER ?? '/usr/sbin/nats-server', ['-js', '-sd', join(dir, 'store'), '-p', String(port), '-a', '127.0.0.1'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  srv.stderr.on('data', (c) => (log += c));
  while (!log.includes('Server is ready')) await sleep(20);
  const r = cefd('r1', `mode: receiver
state_dir: ./state
listeners: [ { name: ksc, type: tcp, host: 127.0.0.1, port: ${tcpPort} } ]
outputs:
  - name: raw
    type: nats
    payload: frame
    servers: [ "nats://127.0.0.1:${port}" ]
    subject: cefd.raw
    buffer: { type: disk }
    stream: { create: true, name: RAW, duplicate_window: 10m }
dead_letter: { path: ./dead.ndjson }
metrics: { enabled: false }
`);
  await r.started();
  // The stream exists once the receiver published; processors wait for it otherwise.
  for (let p = 0; p < P; p++) {
    outputsOf.push(cefd(`p${p + 1}`, `state_dir: ./state
listeners: [ { name: bus, type: nats, servers: [ "nats://127.0.0.1:${port}" ], stream: RAW, consumer: processors } ]
outputs: [ { name: events, type: file, path: ./events.ndjson } ]
dead_letter: { path: ./dead.ndjson }
metrics: { enabled: false }
`));
  }
}
for (const c of children) await c.started();

// Tail every output file.
const lat = [];
let seen = 0;
const tails = outputsOf.map((c) => ({ f: join(c.d, 'events.ndjson'), fd: -1, rest: '' }));
const buf = Buffer.allocUnsafe(1 << 20);
const RX = /"received":"([^"]+)"/;
let measureFrom = Infinity;
const poll = () => {
  const now = Date.now();
  for (const t of tails) {
    if (t.fd < 0) {
      if (!existsSync(t.f)) continue;
      t.fd = openSync(t.f, 'r');
    }
    for (;;) {
      const n = readSync(t.fd, buf, 0, buf.length, null);
      if (n <= 0) break;
      const text = t.rest + buf.toString('utf8', 0, n);
      const lines = text.split('\n');
      t.rest = lines.pop();
      for (const l of lines) {
        seen++;
        const m = RX.exec(l);
        if (m === null) continue;
        const rx = Date.parse(m[1]);
        if (rx >= measureFrom) lat.push(now - rx);
      }
    }
  }
};
const tailer = setInterval(poll, 2);

const line = (k) => `<14>1 2026-11-28T10:00:00.000Z ksc01 - - - - CEF:0|KasperskyLab|SecurityCenter|14.2|KLPRCI_TaskState|Running|1|rt=${1795860000000 + k} dhost=WS-${k % 4000} dst=10.1.${k % 250}.${k % 200} cs2=KES cs2Label=ProductName cs3=Nightly scan cs3Label=TaskName cs4=${k % 900} cs4Label=TaskId cn1=1 cn1Label=TaskNewState cn2=4 cn2Label=TaskOldState cnt=${k} msg=Task started\n`;
const sock = net.connect(tcpPort, '127.0.0.1');
await new Promise((r) => sock.once('connect', r));
const cpuOf = (pid) => { const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' '); return (Number(f[11]) + Number(f[12])) / 100; };
const cpu0 = children.map((c) => cpuOf(c.proc.pid));
const t0 = Date.now();
measureFrom = t0 + WARMUP * 1000;
let sent = 0;
while (Date.now() - t0 < SECS * 1000) {
  const due = Math.floor(((Date.now() - t0) / 1000) * RATE);
  let chunk = '';
  while (sent < due) chunk += line(sent++);
  if (chunk !== '' && !sock.write(chunk)) await new Promise((r) => sock.once('drain', r));
  await sleep(10);
}
sock.end();
const deadline = Date.now() + 60_000;
while (seen < sent && Date.now() < deadline) await sleep(20);
poll();
clearInterval(tailer);
const cpu = children.map((c, i) => [c.name, +(cpuOf(c.proc.pid) - cpu0[i]).toFixed(2)]);
for (const c of children) c.proc.kill('SIGTERM');
await Promise.all(children.map((c) => new Promise((r) => (c.proc.exitCode !== null ? r() : c.proc.once('exit', r)))));
if (srv !== null) {
  srv.kill('SIGTERM');
  await new Promise((r) => srv.once('exit', r));
}
rmSync(dir, { recursive: true, force: true });
lat.sort((a, b) => a - b);
const q = (p) => lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))];
console.log(JSON.stringify({ processors: P, rate: RATE, seconds: SECS, sent, written: seen, measured: lat.length, p50_ms: q(50), p90_ms: q(90), p99_ms: q(99), max_ms: lat[lat.length - 1], cpu_s: Object.fromEntries(cpu) }));
