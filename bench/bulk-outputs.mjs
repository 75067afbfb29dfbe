#!/usr/bin/env node
// bench/bulk-outputs.mjs — throughput of the elasticsearch and splunk_hec outputs against
// their emulators (test/helpers/es-emulator.ts, hec-emulator.ts: no Elasticsearch,
// OpenSearch or Splunk can be installed here).
//
//   npm run build && node bench/bulk-outputs.mjs [--n 50000] [--batch 1000]
//
// The KSC workload (gen-ksc.mjs) is decoded, normalized and encoded once (ecs for
// elasticsearch, native for splunk_hec, as their defaults); then the records go through
// the output's send() in batches, one batch in flight (as the output runner sends them).
// The emulator runs in a child process, so the CPU time measured is the sending side's:
// the output's envelope, JSON reading of each record (id, time, host), the HTTP request and
// the reading of the answer. Prints events/s (wall) and events per CPU-second of cefd's
// side. The emulator's own cost (it parses and maps every document) bounds the wall rate.
import { fork } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import { dataFile } from './data.mjs';

const args = { n: 50000, batch: 1000 };
for (let i = 2; i < process.argv.length; i += 2) {
  const k = process.argv[i].replace(/^--/, '');
  if (!(k in args)) throw new Error(`unknown option --${k}`);
  args[k] = Number(process.argv[i + 1]);
}

const tmp = mkdtempSync(join(tmpdir(), 'cefd-bench-bulk-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));
await build({
  entryPoints: ['test/helpers/es-emulator.ts', 'test/helpers/hec-emulator.ts'],
  outdir: tmp,
  format: 'esm',
  platform: 'node',
  outExtension: { '.js': '.mjs' },
  logLevel: 'error',
});
writeFileSync(
  join(tmp, 'serve.mjs'),
  `const kind = process.argv[2];
const { EsEmulator } = await import('./es-emulator.mjs');
const { HecEmulator } = await import('./hec-emulator.mjs');
const e = kind === 'es' ? new EsEmulator() : new HecEmulator({ tokens: ['bench-token'], maxContentLength: 100 * 1024 * 1024 });
await e.start();
process.send({ url: e.url });
process.on('message', (m) => { if (m === 'count') process.send({ count: kind === 'es' ? e.docs().length : e.events.length }); });
process.on('disconnect', () => process.exit(0));
`,
);

const { Framer } = await import('../dist/src/codecs/framing/framer.js');
const { decodeFrame } = await import('../dist/src/codecs/decode.js');
const { normalizeEvent, loadNormalizer } = await import('../dist/src/pipeline/normalize.js');
const { createEncoder } = await import('../dist/src/codecs/encoders/registry.js');
const { loadFields } = await import('../dist/src/config/load.js');
const { ElasticsearchOutput } = await import('../dist/src/outputs/elasticsearch/elasticsearch.js');
const { ELASTICSEARCH_FIELDS } = await import('../dist/src/outputs/elasticsearch/config.js');
const { SplunkHecOutput } = await import('../dist/src/outputs/splunk_hec/splunk-hec.js');
const { SPLUNK_HEC_FIELDS } = await import('../dist/src/outputs/splunk_hec/config.js');

const chain = [await loadNormalizer({ name: 'ksc' })];
const events = [];
let seq = 0;
const framer = new Framer({
  frame(buf, _mode, truncated) {
    const r = decodeFrame(buf, truncated, Date.now());
    if (!r.ok) throw new Error(`frame failed: ${r.failure.code}`);
    normalizeEvent(r.event, chain);
    r.event.id = `bench-${(seq++).toString(36)}`; // the daemon assigns ids at ingest
    events.push(r.event);
  },
  discarded() {},
  notice() {},
});
framer.push(readFileSync(dataFile(args.n)));
framer.end();

async function emulator(kind) {
  const child = fork(join(tmp, 'serve.mjs'), [kind], { stdio: 'inherit' });
  const { url } = await new Promise((r) => child.once('message', r));
  const count = () => new Promise((r) => { child.once('message', (m) => r(m.count)); child.send('count'); });
  return { url, count, stop: () => child.disconnect() };
}

async function run(name, kind, codec, make) {
  const enc = createEncoder({ codec });
  const records = events.map((e) => enc.encode(e));
  const bytes = records.reduce((s, r) => s + Buffer.byteLength(r), 0);
  const emu = await emulator(kind);
  const out = make(emu.url);
  await out.start();
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < records.length; i += args.batch) {
    const r = await out.send({ records: records.slice(i, i + args.batch) });
    if (r.status !== 'delivered') throw new Error(`${name}: ${JSON.stringify(r).slice(0, 300)}`);
  }
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const c = process.cpuUsage(cpu0);
  const cpu = (c.user + c.system) / 1e6;
  const got = await emu.count();
  await out.close();
  emu.stop();
  if (got !== records.length) throw new Error(`${name}: the emulator holds ${got} of ${records.length}`);
  console.log(`${name.padEnd(28)} ${records.length} events (${codec}, ${Math.round(bytes / records.length)} B each), batch ${args.batch}: ${Math.round(records.length / wall).toLocaleString('en')} events/s, ${Math.round(records.length / cpu).toLocaleString('en')} events per CPU-second (sender)`);
}

await run('elasticsearch', 'es', 'ecs', (url) => new ElasticsearchOutput('bench', loadFields(ELASTICSEARCH_FIELDS, { url, index: 'cefd-%Y.%m.%d' })));
await run('elasticsearch, gzip', 'es', 'ecs', (url) => new ElasticsearchOutput('bench', loadFields(ELASTICSEARCH_FIELDS, { url, index: 'cefd-%Y.%m.%d', compress: true })));
await run('splunk_hec', 'hec', 'native', (url) => new SplunkHecOutput('bench', loadFields(SPLUNK_HEC_FIELDS, { url, token: 'bench-token', max_request_bytes: '10MiB' })));
await run('splunk_hec, gzip', 'hec', 'native', (url) => new SplunkHecOutput('bench', loadFields(SPLUNK_HEC_FIELDS, { url, token: 'bench-token', max_request_bytes: '10MiB', compress: true })));
