#!/usr/bin/env node
// bench/e2e.mjs — the whole daemon, end to end: runs the real `cefd run` (the ksc
// normalizer, NDJSON file output, the output's buffer on disk or in memory) as a child
// process, pushes the KSC workload of gen-ksc.mjs to it over loopback TCP, and waits
// until every event is in the output file.
//
//   npm run build && node bench/e2e.mjs [--n 200000] [--runs 3] [--only 1conn-disk,...] [--json]
//                                       [--workers N] [--cpu-prof DIR] [--console] [--threads]
//                                       [--node-flags '--flag ...']
//
// --console turns the admin listener and the web console on (the console keeps the last
// events in memory, docs/console.md): compare with and without it to see its cost.
// --workers sets decode_workers (default -1: one per core). --cpu-prof DIR runs cefd with
// node's --cpu-prof (one .cpuprofile per thread in DIR; CPU figures are then inflated by
// the profiler); bench/prof-summary.mjs DIR prints where the time goes. --threads prints
// each run's CPU µs per event by thread (from /proc/PID/task). --node-flags (default
// --single-threaded-gc --max-semi-space-size=4 --no-incremental-marking, as shipped) are the daemon's node/V8 flags; '' for none.
//
// Scenarios: 1conn-disk (one connection, LF framing, disk buffer with its default
// fsync policy: the default configuration), 2conn-disk, octet-disk (RFC 6587 octet
// counting), 1conn-memory (buffer in memory). Reports, per scenario, the median over
// --runs of: events/s (first byte sent to last event in the output file), events per
// CPU-second of the cefd process (user+system of all its threads, from /proc), and its
// peak RSS (VmHWM). The sender runs in this process, so its CPU is not counted. Runs are
// interleaved round-robin so drifts of the machine hit every scenario alike.
// For the side-by-side run with syslog-ng, rsyslog and the Node baselines, use
// bench/cefd-sut.sh with ../shared/bench-peer (docs/performance.md).
import { spawn } from 'node:child_process';
import { mkdtempSync, openSync, readdirSync, readFileSync, readSync, closeSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dataFile } from './data.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const cli = join(here, '..', 'dist', 'src', 'cli.js');

const SCENARIOS = {
  '1conn-disk': { conns: 1, framing: 'lf', buffer: 'disk' },
  '2conn-disk': { conns: 2, framing: 'lf', buffer: 'disk' },
  'octet-disk': { conns: 1, framing: 'octet', buffer: 'disk' },
  '1conn-memory': { conns: 1, framing: 'lf', buffer: 'memory' },
};

const args = { n: 200000, runs: 3, only: Object.keys(SCENARIOS).join(','), json: false, workers: -1, timeout: 600, 'cpu-prof': '', console: false, threads: false, 'node-flags': '--single-threaded-gc --max-semi-space-size=4 --no-incremental-marking' };
for (let i = 2; i < process.argv.length; i++) {
  const k = process.argv[i].replace(/^--/, '');
  if (k === 'json' || k === 'console' || k === 'threads') { args[k] = true; continue; }
  if (!(k in args)) { console.error(`unknown option --${k}`); process.exit(2); }
  const v = process.argv[++i];
  args[k] = typeof args[k] === 'number' ? Number(v) : v;
}
const chosen = args.only.split(',').map((s) => s.trim()).filter(Boolean);
for (const c of chosen) if (!(c in SCENARIOS)) { console.error(`unknown scenario ${c}; known: ${Object.keys(SCENARIOS).join(', ')}`); process.exit(2); }

const CLK_TCK = 100; // Linux USER_HZ
function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK; // utime, stime (fields 14, 15)
}
/** CPU seconds per thread (comm name + tid), for --threads. */
function threadCpu(pid) {
  const out = {};
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'latin1');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out[`${comm}#${tid}`] = (Number(f[11]) + Number(f[12])) / CLK_TCK;
    } catch { /* the thread ended */ }
  }
  return out;
}
function peakRssMiB(pid) {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'latin1'));
  return m ? Number(m[1]) / 1024 : NaN;
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Cuts `buf` into `k` contiguous slices at frame boundaries. */
function slices(buf, k, framing) {
  const starts = [0];
  if (framing === 'octet') {
    const bounds = [];
    for (let off = 0; off < buf.length; ) {
      bounds.push(off);
      const sp = buf.indexOf(32, off);
      off = sp + 1 + Number(buf.toString('latin1', off, sp));
    }
    for (let i = 1; i < k; i++) starts.push(bounds[Math.floor((bounds.length * i) / k)]);
  } else {
    for (let i = 1; i < k; i++) starts.push(buf.indexOf(10, Math.floor((buf.length * i) / k)) + 1);
  }
  starts.push(buf.length);
  const out = [];
  for (let i = 0; i < k; i++) out.push(buf.subarray(starts[i], starts[i + 1]));
  return out;
}

/** Counts LF bytes appended to `file` since the last call (the output is NDJSON). */
function lineCounter(file) {
  let pos = 0;
  let lines = 0;
  const chunk = Buffer.allocUnsafe(1 << 20);
  return () => {
    let fd;
    try {
      fd = openSync(file, 'r');
    } catch {
      return lines;
    }
    try {
      for (;;) {
        const n = readSync(fd, chunk, 0, chunk.length, pos);
        if (n <= 0) break;
        pos += n;
        const view = chunk.subarray(0, n);
        for (let i = view.indexOf(10); i !== -1; i = view.indexOf(10, i + 1)) lines++;
      }
    } finally {
      closeSync(fd);
    }
    return lines;
  };
}

function send(port, data) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('error', reject);
    s.once('connect', () => s.end(data, resolve));
  });
}

async function waitListening(port, child, deadline) {
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`cefd exited with ${child.exitCode}`);
    const ok = await new Promise((r) => {
      const s = net.connect({ host: '127.0.0.1', port });
      s.once('connect', () => { s.destroy(); r(true); });
      s.once('error', () => r(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error('cefd did not start listening');
}

async function runOnce(name, sc, input, port) {
  const dir = mkdtempSync(join(tmpdir(), 'cefd-e2e-'));
  const out = join(dir, 'events.ndjson');
  writeFileSync(join(dir, 'cefd.yaml'), [
    `state_dir: ${join(dir, 'state')}`,
    `decode_workers: ${args.workers}`,
    `listeners: [ { name: tcp, type: tcp, host: 127.0.0.1, port: ${port}, normalizers: [ksc] } ]`,
    `outputs: [ { name: events, type: file, path: "${out}", buffer: { type: ${sc.buffer} } } ]`,
    `dead_letter: { path: ${join(dir, 'dead.ndjson')}, buffer: { type: memory } }`,
    'metrics: { enabled: false }',
    'logging: { level: warn }',
    ...(args.console ? ['ksc: { sync_on_start: false, admin: { enabled: true, host: 127.0.0.1, port: 0, bearer_token: bench-admin-token-0123456789abcdef, console: { enabled: true } } }'] : []),
    '',
  ].join('\n'));
  const prof = args['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${args['cpu-prof']}`] : [];
  // What the package and `npm start` run with (deploy/debian/build.mjs); --node-flags '' for none.
  const nodeFlags = args['node-flags'] ? args['node-flags'].split(' ').filter(Boolean) : [];
  const child = spawn(process.execPath, [...nodeFlags, ...prof, cli, 'run', '--config', join(dir, 'cefd.yaml')], { stdio: ['ignore', 'ignore', 'inherit'] });
  try {
    await waitListening(port, child, Date.now() + 20_000);
    const cpu0 = cpuSeconds(child.pid);
    const threads0 = args.threads ? threadCpu(child.pid) : {};
    const parts = slices(input, sc.conns, sc.framing);
    const count = lineCounter(out);
    const t0 = performance.now();
    const sent = Promise.all(parts.map((p) => send(port, p)));
    const deadline = Date.now() + args.timeout * 1000;
    let got = 0;
    while ((got = count()) < args.n) {
      if (Date.now() > deadline) throw new Error(`${name}: only ${got} of ${args.n} events after ${args.timeout} s`);
      if (child.exitCode !== null) throw new Error(`${name}: cefd exited with ${child.exitCode}`);
      await sleep(10);
    }
    const secs = (performance.now() - t0) / 1000;
    await sent;
    const cpu = cpuSeconds(child.pid) - cpu0;
    const rss = peakRssMiB(child.pid);
    if (args.threads) {
      const t1 = threadCpu(child.pid);
      const busy = Object.entries(t1).map(([k, v]) => [k, v - (threads0[k] ?? 0)]).filter(([, v]) => v > 0.005).sort((a, b) => b[1] - a[1]);
      console.error(`  CPU µs per event by thread: ${busy.map(([k, v]) => `${k} ${((v * 1e6) / args.n).toFixed(2)}`).join(', ')}`);
    }
    if (got !== args.n) throw new Error(`${name}: ${got} events in the output, expected ${args.n}`);
    return { eventsPerSec: args.n / secs, eventsPerCpuSec: args.n / cpu, peakRssMiB: rss, secs, cpuSecs: cpu };
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => (child.exitCode !== null ? r() : child.once('exit', r)));
    rmSync(dir, { recursive: true, force: true });
  }
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
const inputs = {};
for (const c of chosen) inputs[SCENARIOS[c].framing] ??= readFileSync(dataFile(args.n, SCENARIOS[c].framing));
const results = Object.fromEntries(chosen.map((c) => [c, []]));
let port = 5700 + (process.pid % 200);
for (let r = 0; r < args.runs; r++) {
  for (const c of chosen) {
    const res = await runOnce(c, SCENARIOS[c], inputs[SCENARIOS[c].framing], port++);
    results[c].push(res);
    if (!args.json) console.error(`run ${r + 1} ${c}: ${Math.round(res.eventsPerSec).toLocaleString('en-US')} events/s, ${Math.round(res.eventsPerCpuSec).toLocaleString('en-US')} events/CPU-s, peak RSS ${res.peakRssMiB.toFixed(0)} MiB`);
  }
}
const rows = chosen.map((c) => ({
  scenario: c,
  ...SCENARIOS[c],
  n: args.n,
  runs: args.runs,
  eventsPerSec: Math.round(median(results[c].map((x) => x.eventsPerSec))),
  eventsPerCpuSec: Math.round(median(results[c].map((x) => x.eventsPerCpuSec))),
  peakRssMiB: Math.round(Math.max(...results[c].map((x) => x.peakRssMiB))),
}));
if (args.json) console.log(JSON.stringify({ bench: 'e2e', node: process.version, rows }));
else {
  const f = (x) => x.toLocaleString('en-US');
  console.log(`\n${f(args.n)} events per run, median of ${args.runs} runs, node ${process.version}${args.console ? ', console on' : ''}\n`);
  console.log('| scenario | conns | framing | buffer | events/s | events per CPU-s | peak RSS MiB |');
  console.log('|---|---:|---|---|---:|---:|---:|');
  for (const x of rows) console.log(`| ${x.scenario} | ${x.conns} | ${x.framing} | ${x.buffer} | ${f(x.eventsPerSec)} | ${f(x.eventsPerCpuSec)} | ${x.peakRssMiB} |`);
}
