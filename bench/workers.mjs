#!/usr/bin/env node
// bench/workers.mjs — the decode workers alone: the KSC workload of gen-ksc.mjs cut into
// jobs of about 128 KiB (as the pipeline gathers the reads of one busy connection), sent
// through a WorkerPool (src/workers/worker-pool.ts) with the ksc normalizer and one native
// output, up to 4 jobs in flight. No sockets, no disk: what each event costs on the
// decode side (decode, normalize, route, encode, the result message).
//
//   npm run build && node bench/workers.mjs [--n 200000] [--runs 5] [--workers 2] [--codec native]
//
// Prints, for the best run, CPU µs per event of the whole process (user+system of every
// thread; the main thread only sends the jobs and drops the results), events per
// CPU-second, the system share and minor page faults per event. CPU time is the figure
// to compare on a shared machine: wall time is not printed. The jobs are gathered once, in
// shared memory the runs read (as src/pipeline/source-state.ts gathers a source's frames);
// before 2026-12-07 each run also copied every job into a transferred buffer, so figures
// from before then include that copy.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dataFile } from './data.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = { n: 200000, runs: 5, workers: 2, codec: 'native' };
for (let i = 2; i < process.argv.length; i += 2) {
  const k = process.argv[i].replace(/^--/, '');
  if (!(k in args)) throw new Error(`unknown option --${k}`);
  args[k] = typeof args[k] === 'number' ? Number(process.argv[i + 1]) : process.argv[i + 1];
}
const { WorkerPool } = await import('../dist/src/workers/worker-pool.js');
const { SourceState } = await import('../dist/src/pipeline/source-state.js');

// Frames split at LF and gathered by src/pipeline/source-state.ts, as the pipeline does.
const input = readFileSync(dataFile(args.n, 'lf'));
const jobs = [];
{
  let start = 0;
  const st = new SourceState();
  const flush = () => {
    if (st.gathered === 0) return;
    const g = st.take();
    jobs.push({ data: g.memory, offsets: g.offsets, n: g.count });
  };
  for (let i = input.indexOf(10); i !== -1; i = input.indexOf(10, start)) {
    st.gather(input.subarray(start, i), false);
    start = i + 1;
    if (st.bytes >= 128 * 1024) flush();
  }
  flush();
}
const events = jobs.reduce((s, j) => s + j.n, 0);

const pool = new WorkerPool(args.workers, (e) => console.error(e));
await pool.init({ defaultZone: 'UTC', includeRaw: false, routes: [{ encoding: { codec: args.codec } }], event: {}, chains: { bench: ['ksc'] }, baseDir: root });

function run() {
  let next = 0;
  let inFlight = 0;
  let done = 0;
  let bytes = 0;
  return new Promise((resolve, reject) => {
    const pump = () => {
      while (inFlight < 4 && next < jobs.length) {
        const j = jobs[next++];
        inFlight++;
        // The job's bytes are shared memory, as the pipeline sends them: read, not consumed.
        pool.submit({ listener: 'bench', peer: '127.0.0.1:1', nowMs: Date.now(), idPrefix: 'bench', firstSeq: 0, data: j.data, offsets: j.offsets, truncated: new Uint8Array(j.n) }, (o) => {
          if (!o.ok) return reject(new Error(o.error));
          bytes += o.result.blocks[0].length;
          inFlight--;
          if (++done === jobs.length) resolve(bytes);
          else pump();
        });
      }
    };
    pump();
  });
}

const minorFaults = () => Number(readFileSync('/proc/self/stat', 'latin1').split(') ')[1].split(' ')[7]);
await run(); // warm-up: the JIT, the workers' output sizes
const results = [];
for (let r = 0; r < args.runs; r++) {
  const f0 = minorFaults();
  const c0 = process.cpuUsage();
  const bytes = await run();
  const c = process.cpuUsage(c0);
  results.push({ us: (c.user + c.system) / events, sys: c.system / events, faults: (minorFaults() - f0) / events, bytes });
}
await pool.close();
results.sort((a, b) => a.us - b.us);
const best = results[0];
console.log(`${events} events in ${jobs.length} jobs, ${args.workers} workers, codec ${args.codec}, node ${process.version}, best of ${args.runs}`);
console.log(`CPU ${best.us.toFixed(2)} µs/event (runs: ${results.map((r) => r.us.toFixed(2)).join(', ')}), ${Math.round(1e6 / best.us).toLocaleString('en-US')} events per CPU-second, system ${best.sys.toFixed(2)} µs/event, ${best.faults.toFixed(3)} minor faults/event, output ${Math.round(best.bytes / events)} B/event`);
