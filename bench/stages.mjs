#!/usr/bin/env node
// bench/stages.mjs — where the time goes: each stage of the pipeline on its own, on the
// KSC workload of gen-ksc.mjs, in one thread, in events/s (and µs per event).
//
//   npm run build && node bench/stages.mjs [--n 200000] [--runs 7] [--json]
//
// Stages: framing (Framer over 64 KiB reads), syslog+CEF decode (decodeFrame, framing
// excluded), ksc normalize, JSON encode (JSON.stringify of the normalized event), UTF-8
// encode (the event's bytes, as the decode workers make them), disk buffer append + read
// back (DiskQueue on tmpfs), file output encode+write (FileOutput on tmpfs), and the CPU
// stages chained in one loop.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dataFile } from './data.mjs';

const args = { n: 200000, runs: 7, json: false };
for (let i = 2; i < process.argv.length; i++) {
  const k = process.argv[i].replace(/^--/, '');
  if (k === 'json') { args.json = true; continue; }
  args[k] = Number(process.argv[++i]);
}

const { Framer } = await import('../dist/src/codecs/framing/framer.js');
const { decodeFrame } = await import('../dist/src/codecs/decode.js');
const { normalizeEvent, loadNormalizer } = await import('../dist/src/pipeline/normalize.js');
const { DiskQueue } = await import('../dist/src/buffer/disk-queue.js');
const { FileOutput } = await import('../dist/src/outputs/file/file.js');
const { FILE_FIELDS } = await import('../dist/src/outputs/file/config.js');
const { loadFields } = await import('../dist/src/config/load.js');

const input = readFileSync(dataFile(args.n, 'lf'));
const ksc = await loadNormalizer({ name: 'ksc' });

// Frames once, for the stages after framing.
const frames = [];
{
  const f = new Framer({ frame: (b) => frames.push(Buffer.from(b)), discarded() {}, notice() {} });
  for (let o = 0; o < input.length; o += 65536) f.push(input.subarray(o, o + 65536));
  f.end();
}
const now = Date.now();
// Events are made and dropped one at a time, as in the daemon: holding all of them at once
// would make V8 allocate them straight into the old generation (pretenuring) and the
// stages would look several times slower than they are. So the normalize and JSON stages
// are measured as differences: (decode + normalize) - decode, and so on.
let jsons = [];
const shm = existsShm() ? '/dev/shm' : tmpdir();
function existsShm() { try { return readFileSync('/proc/mounts', 'utf8').includes(' /dev/shm '); } catch { return false; } }

function time(name, prepare, run) {
  const results = [];
  for (let r = 0; r < args.runs; r++) {
    const state = prepare();
    if (global.gc) global.gc();
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    run(state);
    const sec = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpu = process.cpuUsage(c0);
    results.push({ sec, cpu: (cpu.user + cpu.system) / 1e6 });
  }
  results.sort((a, b) => a.sec - b.sec);
  const best = results[0];

  return { stage: name, eventsPerSec: Math.round(frames.length / best.sec), usPerEvent: +((best.sec * 1e6) / frames.length).toFixed(2) };
}

const rows = [];
rows.push(time('framing (LF, 64 KiB reads)', () => null, () => {
  let n = 0;
  const f = new Framer({ frame: () => { n++; }, discarded() {}, notice() {} });
  for (let o = 0; o < input.length; o += 65536) f.push(input.subarray(o, o + 65536));
  f.end();
}));
const decode = time('decode: syslog header + CEF', () => null, () => { for (const b of frames) decodeFrame(b, false, now); });
const decodeNorm = time('decode + normalize', () => null, () => { for (const b of frames) normalizeEvent(decodeFrame(b, false, now).event, [ksc]); });
const decodeNormJson = time('decode + normalize + JSON', () => null, () => {
  for (const b of frames) {
    const e = decodeFrame(b, false, now).event;
    normalizeEvent(e, [ksc]);
    JSON.stringify(e);
  }
});
const decodeNormJsonUtf8 = time('decode + normalize + JSON + UTF-8', () => null, () => {
  const out = Buffer.allocUnsafe(4 << 20);
  for (const b of frames) {
    const e = decodeFrame(b, false, now).event;
    normalizeEvent(e, [ksc]);
    out.write(JSON.stringify(e), 0, 'utf8');
  }
});
const diff = (name, a, b) => {
  const us = Math.max(0.01, +(a.usPerEvent - b.usPerEvent).toFixed(2));
  return { stage: name, eventsPerSec: Math.round(1e6 / us), usPerEvent: us };
};
rows.push(decode);
rows.push(diff('ksc normalize (difference)', decodeNorm, decode));
rows.push(diff('JSON encode: JSON.stringify (difference)', decodeNormJson, decodeNorm));
rows.push(diff('UTF-8 encode into the output bytes (difference)', decodeNormJsonUtf8, decodeNormJson));
rows.push(time('all but I/O, one loop: frame, decode, normalize, JSON, UTF-8', () => null, () => {
  const out = Buffer.allocUnsafe(4 << 20);
  const f = new Framer({ frame: (b, _m, t) => { const r = decodeFrame(b, t, now); if (r.ok) { normalizeEvent(r.event, [ksc]); out.write(JSON.stringify(r.event), 0, 'utf8'); } }, discarded() {}, notice() {} });
  for (let o = 0; o < input.length; o += 65536) f.push(input.subarray(o, o + 65536));
  f.end();
}));
jsons = frames.map((b) => {
  const e = decodeFrame(b, false, now).event;
  normalizeEvent(e, [ksc]);
  return JSON.stringify(e);
});
rows.push(time('disk buffer: append + read back', () => {
  const dir = mkdtempSync(join(shm, 'cefd-stage-'));
  // As the daemon appends: the NDJSON bytes of one socket read (about 140 events) per block.
  const blocks = [];
  for (let i = 0; i < jsons.length; i += 140) {
    const part = jsons.slice(i, i + 140);
    blocks.push([Buffer.from(part.join('\n') + '\n'), part.length]);
  }
  return { dir, blocks, q: DiskQueue.open({ dir, maxBytes: 4 << 30, fsync: 'never', fsyncIntervalMs: 1000 }) };
}, ({ dir, blocks, q }) => {
  for (const [b, n] of blocks) q.appendNdjson(b, n);
  for (let b = q.peekBatch(1000); b.length > 0; b = q.peekBatch(1000)) q.ack(b.length);
  void q.close().then(() => rmSync(dir, { recursive: true, force: true }));
}));
// File output: async writes; measured with a promise chain outside time().
async function fileStage() {
  const results = [];
  for (let r = 0; r < args.runs; r++) {
    const dir = mkdtempSync(join(shm, 'cefd-stage-'));
    const out = new FileOutput('bench', loadFields(FILE_FIELDS, { path: join(dir, 'out.ndjson') }));
    await out.start();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < jsons.length; i += 1000) await out.send({ records: jsons.slice(i, i + 1000) });
    const sec = Number(process.hrtime.bigint() - t0) / 1e9;
    await out.close();
    rmSync(dir, { recursive: true, force: true });
    results.push(sec);
  }
  results.sort((a, b) => a - b);

  return { stage: 'file output: encode + write (tmpfs)', eventsPerSec: Math.round(frames.length / results[0]), usPerEvent: +((results[0] * 1e6) / frames.length).toFixed(2) };
}
rows.push(await fileStage());


const avgJson = Math.round(jsons.reduce((s, j) => s + Buffer.byteLength(j), 0) / jsons.length);
if (args.json) {
  console.log(JSON.stringify({ n: frames.length, inputAvgBytes: Math.round(input.length / frames.length), eventAvgJsonBytes: avgJson, node: process.version, rows }));
} else {
  console.log(`${frames.length} events, input ${Math.round(input.length / frames.length)} B/event, output JSON ${avgJson} B/event, node ${process.version}, best of ${args.runs} runs (noise only adds time; normalize, JSON and UTF-8 are differences of chained loops)\n`);
  console.log('| stage | events/s | µs/event |\n|---|---:|---:|');
  for (const r of rows) console.log(`| ${r.stage} | ${r.eventsPerSec.toLocaleString('en-US')} | ${r.usPerEvent} |`);
}
