#!/usr/bin/env node
// nats-output.mjs: throughput of the nats output (dist/) against a real nats-server
// (Debian's 2.9, JetStream, file storage, started here in a temp folder on a free port).
//
//   npm run build && node bench/nats-output.mjs --n 100000 --batch 1000 --bytes 1000
//
// Sends --n records of about --bytes bytes (native JSON events with an id) in batches of
// --batch through NatsOutput.send, the way the output runner does (one batch in flight),
// each event counted only after its PubAck. Prints events/s, cefd's CPU seconds (this
// process: encoding, the client, the PubAcks) and nats-server's CPU seconds (/proc).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadFields } from '../dist/src/config/load.js';
import { NATS_FIELDS } from '../dist/src/outputs/nats/config.js';
import { NatsOutput } from '../dist/src/outputs/nats/nats.js';

const arg = (k, d) => {
  const i = process.argv.indexOf(`--${k}`);
  return i < 0 ? d : Number(process.argv[i + 1]);
};
const N = arg('n', 100000);
const BATCH = arg('batch', 1000);
const BYTES = arg('bytes', 1000);

const port = await new Promise((r) => {
  const s = net.createServer().listen(0, '127.0.0.1', () => {
    const p = s.address().port;
    s.close(() => r(p));
  });
});
const dir = mkdtempSync(join(tmpdir(), 'cefd-bench-nats-'));
const srv = spawn(process.env.NATS_SERVER ?? '/usr/sbin/nats-server', ['-js', '-sd', join(dir, 'store'), '-p', String(port), '-a', '127.0.0.1'], { stdio: ['ignore', 'ignore', 'pipe'] });
let log = '';
srv.stderr.on('data', (c) => (log += c));
while (!log.includes('Server is ready')) await new Promise((r) => setTimeout(r, 20));

const ticks = () => {
  const f = readFileSync(`/proc/${srv.pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, in seconds at USER_HZ 100
};

const pad = 'x'.repeat(Math.max(0, BYTES - 120));
const records = Array.from({ length: N }, (_, i) => JSON.stringify({ schema: 2, id: `bench-${i.toString(36)}`, timestamp: '2026-11-28T10:00:00.000Z', message: `event ${i}`, pad }));
const o = new NatsOutput('bench', { ...loadFields(NATS_FIELDS, { servers: [`nats://127.0.0.1:${port}`], subject: 'bench.events', stream: { create: true, name: 'BENCH' } }), encoding: { codec: 'native' } });
await o.start();
// Warm up (stream creation, JIT) before the clock starts.
await o.send({ records: records.slice(0, Math.min(1000, N)).map((r) => r.replace('bench-', 'warm-')) });

const cpu0 = process.cpuUsage();
const srv0 = ticks();
const t0 = process.hrtime.bigint();
for (let i = 0; i < N; i += BATCH) {
  const r = await o.send({ records: records.slice(i, i + BATCH) });
  if (r.status !== 'delivered') throw new Error(`batch at ${i}: ${JSON.stringify(r)}`);
}
const secs = Number(process.hrtime.bigint() - t0) / 1e9;
const cpu = process.cpuUsage(cpu0);
const cefdCpu = (cpu.user + cpu.system) / 1e6;
const srvCpu = ticks() - srv0;
await o.close();
srv.kill('SIGTERM');
await new Promise((r) => srv.once('exit', r));
rmSync(dir, { recursive: true, force: true });
console.log(JSON.stringify({ events: N, batch: BATCH, bytes: BYTES, seconds: +secs.toFixed(2), events_per_s: Math.round(N / secs), cefd_cpu_s: +cefdCpu.toFixed(2), events_per_cefd_cpu_s: Math.round(N / cefdCpu), nats_server_cpu_s: +srvCpu.toFixed(2) }));
