#!/usr/bin/env node
// bench/clickhouse.mjs — throughput of the clickhouse output against a real clickhouse-server
// (Debian's 18.16), on the KSC workload of gen-ksc.mjs.
//
//   npm run build && node bench/clickhouse.mjs [--n 100000] [--batch 1000]
//
// Starts its own clickhouse-server (temp folder, free ports on 127.0.0.1, removed at the
// end), creates the tables of docs/outputs-clickhouse.md, and for the native and kuma
// encodings sends every event through ClickHouseOutput.send in batches of --batch, one
// insert at a time as the output runner does. The events are decoded, normalized and
// encoded before the clock starts: the figures are the output's work (row layout, HTTP)
// and the server's insert. Prints events/s, events per CPU-second of cefd's process and
// of cefd + the server, and checks that the table holds every event.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dataFile } from './data.mjs';

const args = { n: 100000, batch: 1000 };
for (let i = 2; i < process.argv.length; i += 2) {
  const k = process.argv[i].replace(/^--/, '');
  if (!(k in args)) throw new Error(`unknown option --${k}`);
  args[k] = Number(process.argv[i + 1]);
}
const ROOT = fileURLToPath(new URL('../', import.meta.url));

const { Framer } = await import('../dist/src/codecs/framing/framer.js');
const { decodeFrame } = await import('../dist/src/codecs/decode.js');
const { normalizeEvent, loadNormalizer } = await import('../dist/src/pipeline/normalize.js');
const { createEncoder } = await import('../dist/src/codecs/encoders/registry.js');
const { ClickHouseOutput } = await import('../dist/src/outputs/clickhouse/clickhouse.js');
const { CLICKHOUSE_FIELDS } = await import('../dist/src/outputs/clickhouse/config.js');
const { loadFields } = await import('../dist/src/config/load.js');

// --- the workload -------------------------------------------------------------------------
const chain = [await loadNormalizer({ name: 'ksc' })];
const events = [];
const framer = new Framer({
  frame(buf, _mode, truncated) {
    const r = decodeFrame(buf, truncated, Date.now());
    if (!r.ok) throw new Error(`frame failed: ${r.failure.code}`);
    normalizeEvent(r.event, chain);
    r.event.id = `bench-${events.length}`;
    events.push(r.event);
  },
  discarded() {},
  notice() {},
});
framer.push(readFileSync(dataFile(args.n)));
framer.end();

// --- a server of our own -----------------------------------------------------------------
async function freePort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const p = s.address().port;
  await new Promise((r) => s.close(r));
  return p;
}
const dir = mkdtempSync(join(tmpdir(), 'cefd-bench-clickhouse-'));
for (const d of ['data', 'tmp', 'log']) mkdirSync(join(dir, d));
const httpPort = await freePort();
const tcpPort = await freePort();
writeFileSync(
  join(dir, 'config.xml'),
  `<?xml version="1.0"?><yandex><logger><level>warning</level><log>${dir}/log/server.log</log><errorlog>${dir}/log/err.log</errorlog></logger>
<http_port>${httpPort}</http_port><tcp_port>${tcpPort}</tcp_port><listen_host>127.0.0.1</listen_host>
<path>${dir}/data/</path><tmp_path>${dir}/tmp/</tmp_path><users_config>${dir}/users.xml</users_config>
<default_profile>default</default_profile><default_database>default</default_database><mark_cache_size>67108864</mark_cache_size><timezone>UTC</timezone></yandex>`,
);
writeFileSync(
  join(dir, 'users.xml'),
  `<?xml version="1.0"?><yandex><profiles><default/></profiles><users><default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default></users><quotas><default/></quotas></yandex>`,
);
const bin = ['/usr/sbin/clickhouse-server', '/usr/bin/clickhouse-server'].find((p) => {
  try {
    readFileSync(p, { flag: 'r' }).length;
    return true;
  } catch {
    return false;
  }
});
const server = spawn(bin ?? 'clickhouse-server', [`--config-file=${join(dir, 'config.xml')}`], { stdio: 'ignore' });
const url = `http://127.0.0.1:${httpPort}/`;
function query(sql) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    u.searchParams.set('query', sql);
    const req = http.request(u, { method: 'POST' }, (res) => {
      let t = '';
      res.on('data', (c) => (t += c));
      res.on('end', () => (res.statusCode === 200 ? resolve(t) : reject(new Error(`${sql}: ${t}`))));
    });
    req.on('error', reject);
    req.end();
  });
}
function serverCpuSeconds() {
  const f = readFileSync(`/proc/${server.pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, USER_HZ = 100
}

try {
  for (let i = 0; ; i++) {
    try {
      if ((await query('SELECT 1')).trim() === '1') break;
    } catch {
      if (i > 600) throw new Error('clickhouse-server did not start');
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const doc = readFileSync(join(ROOT, 'docs/outputs-clickhouse.md'), 'utf8');
  for (const marker of ['ddl:native', 'ddl:kuma']) {
    const sql = new RegExp(`<!-- ${marker} -->\\s*\`\`\`sql\\n([\\s\\S]*?)\`\`\``).exec(doc)[1];
    for (const s of sql.split(';').map((x) => x.replace(/--.*$/gm, '').trim()).filter(Boolean)) await query(s);
  }
  const version = (await query('SELECT version()')).trim();
  console.log(`clickhouse-server ${version}, ${events.length} KSC events, batches of ${args.batch}, node ${process.version}`);
  for (const [codec, table] of [['native', 'events'], ['kuma', 'kuma_events']]) {
    const enc = createEncoder({ codec });
    const records = events.map((e) => enc.encode(e));
    const bytes = records.reduce((s, r) => s + Buffer.byteLength(r), 0);
    const out = new ClickHouseOutput('bench', { ...loadFields(CLICKHOUSE_FIELDS, { url, database: 'cefd', table }), encoding: { codec } });
    await out.start();
    const cpu0 = process.cpuUsage();
    const srv0 = serverCpuSeconds();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < records.length; i += args.batch) {
      const r = await out.send({ records: records.slice(i, i + args.batch) });
      if (r.status !== 'delivered') throw new Error(`batch at ${i}: ${JSON.stringify(r)}`);
    }
    const wall = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpu = process.cpuUsage(cpu0);
    const own = (cpu.user + cpu.system) / 1e6;
    const srv = serverCpuSeconds() - srv0;
    await out.close();
    const rows = Number((await query(`SELECT count() FROM cefd.${table}`)).trim());
    if (rows !== records.length) throw new Error(`${table}: ${rows} rows for ${records.length} events`);
    const f = (x) => Math.round(x).toLocaleString('en-US');
    console.log(
      `${codec.padEnd(7)} ${f(records.length / wall)} events/s; ${f(records.length / own)} events per cefd CPU-second; ${f(records.length / (own + srv))} per CPU-second of cefd + server; ${Math.round(bytes / records.length)} bytes/event encoded; ${rows} rows`,
    );
  }
} finally {
  server.kill('SIGTERM');
  await new Promise((r) => server.once('exit', r));
  rmSync(dir, { recursive: true, force: true });
}
