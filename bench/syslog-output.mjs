#!/usr/bin/env node
// bench/syslog-output.mjs — throughput of the syslog output into a real rsyslogd (Debian's),
// on the KSC workload of gen-ksc.mjs encoded as CEF (the output's default encoding).
//
//   npm run build && node bench/syslog-output.mjs [--n 200000] [--batch 1000] [--transport tcp|tls|udp]
//
// rsyslogd runs with its own config in a temp folder (imtcp/imudp on 127.0.0.1, omfile with
// a one-line template). The events are decoded, normalized and CEF-encoded before the clock
// starts; what is timed is SyslogOutput.send() of every batch (header, framing, socket
// writes) until rsyslogd has written the last line. Prints events/s (wall clock, until
// rsyslog's file holds every line) and events per CPU-second of this process (user+system).
// For tls a throwaway CA and server certificate are made with openssl.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dataFile } from './data.mjs';

const args = { n: 200000, batch: 1000, transport: 'tcp' };
for (let i = 2; i < process.argv.length; i += 2) {
  const k = process.argv[i].replace(/^--/, '');
  if (!(k in args)) throw new Error(`unknown option --${k}`);
  args[k] = k === 'transport' ? process.argv[i + 1] : Number(process.argv[i + 1]);
}

const { Framer } = await import('../dist/src/codecs/framing/framer.js');
const { decodeFrame } = await import('../dist/src/codecs/decode.js');
const { normalizeEvent, loadNormalizer } = await import('../dist/src/pipeline/normalize.js');
const { createEncoder } = await import('../dist/src/codecs/encoders/registry.js');
const { loadFields } = await import('../dist/src/config/load.js');
const { SYSLOG_FIELDS } = await import('../dist/src/outputs/syslog/config.js');
const { SyslogOutput } = await import('../dist/src/outputs/syslog/syslog.js');

const chain = [await loadNormalizer({ name: 'ksc' })];
const enc = createEncoder({ codec: 'cef' });
const records = [];
const framer = new Framer({
  frame(buf, _mode, truncated) {
    const r = decodeFrame(buf, truncated, Date.now());
    if (!r.ok) return;
    normalizeEvent(r.event, chain);
    records.push(enc.encode(r.event));
  },
  discarded() {},
  notice() {},
});
framer.push(readFileSync(dataFile(args.n)));
framer.end();

const dir = mkdtempSync(join(tmpdir(), 'cefd-bench-syslog-'));
const port = await new Promise((resolve) => {
  const s = net.createServer();
  s.listen(0, '127.0.0.1', () => {
    const p = s.address().port;
    s.close(() => resolve(p));
  });
});
let tlsGlobal = '';
let tlsModule = '';
let ca;
if (args.transport === 'tls') {
  const o = (a) => execFileSync('openssl', a, { cwd: dir, stdio: 'pipe' });
  o(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=bench-ca', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign']);
  o(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 's.key', '-out', 's.csr', '-subj', '/CN=bench']);
  writeFileSync(join(dir, 's.ext'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  o(['x509', '-req', '-in', 's.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 's.crt', '-days', '2', '-extfile', 's.ext']);
  ca = join(dir, 'ca.crt');
  tlsGlobal = ` defaultNetstreamDriver="ossl" defaultNetstreamDriverCAFile="${ca}" defaultNetstreamDriverCertFile="${join(dir, 's.crt')}" defaultNetstreamDriverKeyFile="${join(dir, 's.key')}"`;
  tlsModule = ' streamDriver.name="ossl" streamDriver.mode="1" streamDriver.authMode="anon"';
}
const out = join(dir, 'received.log');
writeFileSync(
  join(dir, 'rsyslog.conf'),
  [
    `global(workDirectory="${dir}" maxMessageSize="64k"${tlsGlobal})`,
    `module(load="imtcp"${tlsModule})`,
    'module(load="imudp")',
    `input(type="imtcp" address="127.0.0.1" port="${port}")`,
    `input(type="imudp" address="127.0.0.1" port="${port}")`,
    'template(name="m" type="string" string="%msg%\\n")',
    `action(type="omfile" file="${out}" template="m")`,
    '',
  ].join('\n'),
);
const rs = spawn('/usr/sbin/rsyslogd', ['-n', '-f', join(dir, 'rsyslog.conf'), '-i', join(dir, 'pid')], { stdio: 'inherit' });
for (;;) {
  const ok = await new Promise((r) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => (s.destroy(), r(true)));
    s.on('error', () => r(false));
  });
  if (ok) break;
  await new Promise((r) => setTimeout(r, 50));
}

const lines = () => {
  try {
    const b = readFileSync(out);
    let n = 0;
    for (let i = b.indexOf(10); i !== -1; i = b.indexOf(10, i + 1)) n++;
    return n;
  } catch {
    return 0;
  }
};

const o = new SyslogOutput('bench', loadFields(SYSLOG_FIELDS, { transport: args.transport, host: '127.0.0.1', port, hostname: 'bench', ...(ca ? { ca_file: ca } : {}) }));
await o.start();
const bytes = records.reduce((n, r) => n + Buffer.byteLength(r), 0);
const cpu0 = process.cpuUsage();
const t0 = process.hrtime.bigint();
for (let i = 0; i < records.length; i += args.batch) {
  const r = await o.send({ records: records.slice(i, i + args.batch) });
  if (r.status !== 'delivered') throw new Error(`batch ${i}: ${JSON.stringify(r)}`);
  // UDP cannot be paused by the receiver: pace it so rsyslog's socket buffer does not overflow.
  if (args.transport === 'udp') await new Promise((r) => setImmediate(r));
}
const cpu = process.cpuUsage(cpu0);
const sendSec = Number(process.hrtime.bigint() - t0) / 1e9;
const deadline = Date.now() + 120_000;
let got = lines();
let changed = Date.now();
while (got < records.length && Date.now() < deadline) {
  await new Promise((r) => setTimeout(r, 20));
  const now = lines();
  if (now !== got) changed = Date.now();
  // UDP: what has not arrived 2 s after the last line was dropped.
  else if (args.transport === 'udp' && Date.now() - changed > 2000) break;
  got = now;
}
const wallSec = Number(process.hrtime.bigint() - t0) / 1e9;
await o.close();
const cpuSec = (cpu.user + cpu.system) / 1e6;
console.log(
  `syslog ${args.transport}, ${records.length} KSC events as CEF (${Math.round(bytes / records.length)} bytes each), batches of ${args.batch}: ` +
    `${got} written by rsyslogd in ${wallSec.toFixed(2)} s = ${Math.round(got / wallSec).toLocaleString('en-US')} events/s; ` +
    `send() took ${sendSec.toFixed(2)} s and ${cpuSec.toFixed(2)} CPU-s = ${Math.round(records.length / cpuSec).toLocaleString('en-US')} events per CPU-second of cefd` +
    (got < records.length ? ` (${records.length - got} not written: UDP drops)` : ''),
);
rs.kill('SIGTERM');
await new Promise((r) => rs.once('exit', r));
rmSync(dir, { recursive: true, force: true });
