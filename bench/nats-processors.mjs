#!/usr/bin/env node
// nats-processors.mjs: how fast 1 or 2 processors drain a stream of raw frames.
//
//   npm run build && node bench/nats-processors.mjs --n 100000 --processors 1
//
// Starts a nats-server (Debian's 2.9, JetStream, temp folder, free port), publishes --n
// KSC task-state frames to the stream RAW with the headers a receiver writes, then starts
// --processors cefd processors (a nats listener sharing the durable consumer, a file
// output each) and times from their start until every event is in their files. Prints
// events/s (from their start, and from the first event written: the drain, without the
// start-up) and the processors' CPU seconds, all threads and the main threads alone
// (/proc). The backlog is published before the clock starts, so this is the processors'
// rate, not the receivers'. --cpu-prof DIR profiles the processors (every thread).
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, headers } from 'nats';

const arg = (k, d) => {
  const i = process.argv.indexOf(`--${k}`);
  return i < 0 ? d : Number(process.argv[i + 1]);
};
const N = arg('n', 100000);
const profDir = (() => { const i = process.argv.indexOf('--cpu-prof'); return i < 0 ? null : process.argv[i + 1]; })();
const P = arg('processors', 1);
// CEFD_CLI: another build to compare with (default: this tree's dist/).
const CLI = process.env.CEFD_CLI ?? new URL('../dist/src/cli.js', import.meta.url).pathname;
const freePort = () => new Promise((r) => { const s = net.createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => r(p)); }); });

const dir = mkdtempSync(join(tmpdir(), 'cefd-bench-proc-'));
const port = await freePort();
const srv = spawn(process.env.NATS_SERVER ?? '/usr/sbin/nats-server', ['-js', '-sd', join(dir, 'store'), '-p', String(port), '-a', '127.0.0.1'], { stdio: ['ignore', 'ignore', 'pipe'] });
let log = '';
srv.stderr.on('data', (c) => (log += c));
while (!log.includes('Server is ready')) await new Promise((r) => setTimeout(r, 20));

const nc = await connect({ servers: `nats://127.0.0.1:${port}` });
await (await nc.jetstreamManager()).streams.add({ name: 'RAW', subjects: ['cefd.raw'] });
const js = nc.jetstream();
const enc = new TextEncoder();
for (let i = 0; i < N; i += 1000) {
  const ps = [];
  for (let k = i; k < Math.min(N, i + 1000); k++) {
    const h = headers();
    h.set('Cefd-Id', `bench-${k}`);
    h.set('Cefd-Listener', 'ksc');
    h.set('Cefd-Peer', '10.0.0.1:50000');
    h.set('Cefd-Received', String(Date.now()));
    ps.push(js.publish('cefd.raw', enc.encode(`<14>1 2026-11-28T10:00:00.000Z ksc01 - - - - CEF:0|KasperskyLab|SecurityCenter|14.2|KLPRCI_TaskState|Running|1|rt=${1795860000000 + k} dhost=WS-${k % 4000} dst=10.1.${k % 250}.${k % 200} cs2=KES cs2Label=ProductName cs3=Nightly scan cs3Label=TaskName cs4=${k % 900} cs4Label=TaskId cn1=1 cn1Label=TaskNewState cn2=4 cn2Label=TaskOldState cnt=${k} msg=Task started`), { headers: h }));
  }
  await Promise.all(ps);
}
await nc.close();

const procs = [];
const lines = (f) => (existsSync(f) ? readFileSync(f, 'utf8').split('\n').length - 1 : 0);
const t0 = process.hrtime.bigint();
for (let p = 0; p < P; p++) {
  const d = join(dir, `p${p}`);
  mkdirSync(d);
  writeFileSync(join(d, 'cefd.yaml'), `state_dir: ./state
listeners: [ { name: bus, type: nats, servers: [ "nats://127.0.0.1:${port}" ], stream: RAW, consumer: processors, batch_size: 512, max_ack_pending: 8192 } ]
outputs: [ { name: events, type: file, path: ./events.ndjson } ]
dead_letter: { path: ./dead.ndjson }
metrics: { enabled: false }
`);
  procs.push({ d, proc: spawn(process.execPath, [...(profDir ? ['--cpu-prof', '--cpu-prof-dir', profDir] : []), CLI, 'run', '--config', join(d, 'cefd.yaml')], { cwd: d, stdio: 'ignore' }) });
}
const cpuOf = (pid, task = pid) => { const f = readFileSync(`/proc/${pid}/task/${task}/stat`, 'utf8').split(') ')[1].split(' '); return (Number(f[11]) + Number(f[12])) / 100; };
const procCpu = (pid) => { const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' '); return (Number(f[11]) + Number(f[12])) / 100; };
let cpu = 0;
let main = 0;
let tFirst = null;
for (;;) {
  const done = procs.reduce((a, p) => a + lines(join(p.d, 'events.ndjson')), 0);
  if (done > 0 && tFirst === null) tFirst = process.hrtime.bigint();
  if (done >= N) break;
  cpu = procs.reduce((a, p) => a + procCpu(p.proc.pid), 0);
  main = procs.reduce((a, p) => a + cpuOf(p.proc.pid), 0);
  await new Promise((r) => setTimeout(r, 20));
}
const tEnd = process.hrtime.bigint();
const secs = Number(tEnd - t0) / 1e9;
const drain = Number(tEnd - tFirst) / 1e9;
cpu = procs.reduce((a, p) => a + procCpu(p.proc.pid), 0);
main = procs.reduce((a, p) => a + cpuOf(p.proc.pid), 0);
for (const p of procs) p.proc.kill('SIGTERM');
await Promise.all(procs.map((p) => new Promise((r) => p.proc.once('exit', r))));
srv.kill('SIGTERM');
await new Promise((r) => srv.once('exit', r));
rmSync(dir, { recursive: true, force: true });
console.log(JSON.stringify({ events: N, processors: P, seconds: +secs.toFixed(2), events_per_s: Math.round(N / secs), drain_seconds: +drain.toFixed(2), drain_events_per_s: Math.round(N / drain), processors_cpu_s: +cpu.toFixed(2), main_threads_cpu_s: +main.toFixed(2), events_per_cpu_s: Math.round(N / cpu) }));
