#!/usr/bin/env node
// bench/encoders.mjs — cost of each encoder per event, on the KSC workload of gen-ksc.mjs.
//
//   npm run build && node bench/encoders.mjs [--n 50000] [--runs 3]
//
// The frames are decoded and normalized once (ksc); then each encoder (and the native
// event with every schema 1 field, `event: {typed: all, custom_fields: pairs, ksc: full, syslog_timestamp: always}`)
// encodes every event, timed alone. Prints µs per event (best run), events/s and the
// average record size in bytes (UTF-8), one line per encoder.
import { readFileSync } from 'node:fs';
import { dataFile } from './data.mjs';
const args = { n: 50000, runs: 3 };
for (let i = 2; i < process.argv.length; i += 2) {
  const k = process.argv[i].replace(/^--/, '');
  if (!(k in args)) throw new Error(`unknown option --${k}`);
  args[k] = Number(process.argv[i + 1]);
}

const { Framer } = await import('../dist/src/codecs/framing/framer.js');
const { decodeFrame } = await import('../dist/src/codecs/decode.js');
const { normalizeEvent, loadNormalizer } = await import('../dist/src/pipeline/normalize.js');
const { createEncoder, ENCODER_NAMES } = await import('../dist/src/codecs/encoders/registry.js');

const chain = [await loadNormalizer({ name: 'ksc' })];
const events = [];
const framer = new Framer({
  frame(buf, _mode, truncated) {
    const r = decodeFrame(buf, truncated, Date.now());
    if (!r.ok) throw new Error(`frame failed: ${r.failure.code}`);
    normalizeEvent(r.event, chain);
    events.push(r.event);
  },
  discarded() {},
  notice() {},
});
framer.push(readFileSync(dataFile(args.n)));
framer.end();

const configs = [
  ...ENCODER_NAMES.map((codec) => ({ name: codec, cfg: { codec } })),
  { name: 'native (schema 1 fields)', cfg: { codec: 'native', event: { typed: 'all', custom_fields: 'pairs', ksc: 'full', syslog_timestamp: 'always' } } },
];
console.log(`${events.length} KSC events (bench/gen-ksc.mjs --n ${args.n}), best of ${args.runs} runs`);
console.log('encoder                    µs/event   events/s   bytes/event');
for (const { name, cfg } of configs) {
  let best = Infinity;
  let bytes = 0;
  for (let r = 0; r < args.runs; r++) {
    // A fresh encoder each run: nothing cached on the events between runs of one encoder
    // is shared with the next encoder (the ksc view is cached per event object, as in the daemon).
    const enc = createEncoder(cfg);
    let b = 0;
    const t0 = process.hrtime.bigint();
    for (const e of events) b += Buffer.byteLength(enc.encode(e));
    const sec = Number(process.hrtime.bigint() - t0) / 1e9;
    if (sec < best) best = sec;
    bytes = b;
  }
  const us = (best / events.length) * 1e6;
  console.log(`${name.padEnd(26)} ${us.toFixed(2).padStart(8)} ${Math.round(events.length / best).toLocaleString('en-US').padStart(10)} ${(bytes / events.length).toFixed(0).padStart(13)}`);
}
