#!/usr/bin/env node
// bench/parse.mjs — the parse path alone (framing + syslog + CEF, optionally the ksc
// normalizer and JSON encoding), in one thread, on the KSC workload of gen-ksc.mjs.
//
//   npm run build && node bench/parse.mjs [--n 200000] [--framing lf|octet] [--stages parse|normalize|json] [--runs 3]
//
// The input is generated once into bench/data/ (byte-identical to ../shared/bench-peer's
// file for the same --n and seed), read into memory, and fed to the framer in 64 KiB
// chunks as a socket would deliver it. Prints events/s (wall clock), events per
// CPU-second (user+system of this process) and peak RSS.
import { readFileSync } from 'node:fs';
import { dataFile } from './data.mjs';
const args = { n: 200000, framing: 'lf', stages: 'parse', runs: 3, chunk: 65536 };
for (let i = 2; i < process.argv.length; i += 2) {
  const k = process.argv[i].replace(/^--/, '');
  if (!(k in args)) throw new Error(`unknown option --${k}`);
  args[k] = typeof args[k] === 'number' ? Number(process.argv[i + 1]) : process.argv[i + 1];
}

const { Framer } = await import('../dist/src/codecs/framing/framer.js');
const { decodeFrame } = await import('../dist/src/codecs/decode.js');
const { normalizeEvent, loadNormalizer } = await import('../dist/src/pipeline/normalize.js');

const chain = args.stages === 'parse' ? [] : [await loadNormalizer({ name: 'ksc' })];
const json = args.stages === 'json';
const input = readFileSync(dataFile(args.n, args.framing));

function once() {
  let events = 0;
  let failed = 0;
  let bytesOut = 0;
  const framer = new Framer({
    frame(buf, _mode, truncated) {
      const r = decodeFrame(buf, truncated, Date.now());
      if (!r.ok) { failed++; return; }
      events++;
      if (chain.length) normalizeEvent(r.event, chain);
      if (json) bytesOut += JSON.stringify(r.event).length + 1;
    },
    discarded() {},
    notice() {},
  });
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  for (let off = 0; off < input.length; off += args.chunk) framer.push(input.subarray(off, off + args.chunk));
  framer.end();
  const sec = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  const cpuSec = (cpu.user + cpu.system) / 1e6;
  return { events, failed, sec, cpuSec, bytesOut };
}

const results = [];
for (let r = 0; r < args.runs; r++) {
  const res = once();
  if (res.events !== args.n) throw new Error(`expected ${args.n} events, got ${res.events} (+${res.failed} failed)`);
  results.push(res);
  process.stderr.write(`run ${r + 1}: ${Math.round(res.events / res.sec).toLocaleString('en-US')} events/s, ${Math.round(res.events / res.cpuSec).toLocaleString('en-US')} events/CPU-s\n`);
}
results.sort((a, b) => a.sec - b.sec);
const med = results[Math.floor(results.length / 2)];
const out = {
  bench: 'parse',
  stages: args.stages,
  framing: args.framing,
  n: args.n,
  inputMB: +(input.length / 1e6).toFixed(1),
  eventsPerSec: Math.round(med.events / med.sec),
  eventsPerCpuSec: Math.round(med.events / med.cpuSec),
  usPerEvent: +((med.cpuSec * 1e6) / med.events).toFixed(2),
  peakRssMiB: +(process.resourceUsage().maxRSS / 1024).toFixed(1),
  node: process.version,
};
console.log(JSON.stringify(out));
