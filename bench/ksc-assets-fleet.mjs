#!/usr/bin/env node
/**
 * KSC asset import at fleet size, against the test emulator (docs/ksc-assets.md, "Fleet size"):
 * N Windows devices, each with S installed programs, P patches and V vulnerabilities. Runs the
 * hourly import, then the attribute import, and prints their times, the peak memory of this
 * process (the emulator runs in a child process, so its memory is not counted) and the size
 * of the SQLite store.
 *
 *   npm run build && node bench/ksc-assets-fleet.mjs [devices=50000] [software=300] [vulns=3] [patches=10] [--hourly-only]
 *
 * The emulator (TypeScript, test/helpers/ksc-emulator) is bundled with esbuild into a
 * temporary folder, which is removed at the end.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
// --hourly-only: stop after the hourly import (its time and peak memory), skipping the attribute imports.
const hourlyOnly = argv.includes('--hourly-only');
const [devices = 50_000, software = 300, vulns = 3, patches = 10] = argv.filter((a) => !a.startsWith('--')).map(Number);
const tmp = mkdtempSync(join(tmpdir(), 'cefd-ksc-fleet-'));


const runner = `
import { KscEmulator, defaultModel, NAGENT, KES_WIN } from ${JSON.stringify(join(root, 'test/helpers/ksc-emulator/index.ts'))};
const [N, S, V, P] = process.argv.slice(2).map(Number);
const model = defaultModel();
model.hosts = [];
const pad = (n, w) => String(n).padStart(w, '0');
for (let i = 0; i < N; i++) {
  const hex = pad(i.toString(16), 12);
  model.hosts.push({
    id: 'f1ee7000-0000-4000-8000-' + hex, displayName: 'WS-' + pad(i, 6), fqdn: 'ws-' + pad(i, 6) + '.corp.example', domain: 'CORP',
    ip: '10.' + ((i >> 16) & 255) + '.' + ((i >> 8) & 255) + '.' + (i & 255), os: 'Microsoft Windows 10 Pro', groupId: 1,
    lastVisible: new Date(), nagent: true, nagentConnected: new Date(), products: [NAGENT, KES_WIN],
    macs: ['02:00:' + hex.slice(4).match(/../g).join(':')], statusId: i % 3, avBases: new Date('2024-05-01T04:00:00Z'),
  });
}
// 3000 distinct programs in the catalog; each device has S consecutive ones from its own offset.
const CATALOG = 3000;
model.inventory = (h) => {
  const i = parseInt(h.id.slice(-12), 16);
  const base = (i * 37) % CATALOG;
  const sw = [];
  for (let k = 0; k < S; k++) {
    const j = (base + k) % CATALOG;
    sw.push({ name: 'Application ' + j + ' (x64)', version: (j % 9) + '.' + (j % 17) + '.' + (j % 101), publisher: 'Publisher ' + (j % 150) + ' Ltd.', installDate: '2023' + pad(1 + (j % 12), 2) + pad(1 + (j % 28), 2) });
  }
  const pt = [];
  for (let k = 0; k < P; k++) pt.push({ name: 'Security Update for Windows (KB50' + pad((base + k) % 500, 5) + ')', version: '1', publisher: 'Microsoft Corporation', installDate: '20240410' });
  const vu = [];
  for (let k = 0; k < V; k++) {
    const j = (base + k * 7) % 500;
    vu.push({ id: 'KLA' + (10000 + j), severity: j % 4, product: 'Application ' + j + ' (x64)', productVersion: '1.0', url: 'https://threats.kaspersky.com/en/vulnerability/KLA' + (10000 + j) + '/', detected: new Date('2024-04-20T10:00:00Z'), ignored: j % 10 === 0 });
  }
  return { software: sw, patches: pt, vulnerabilities: vu };
};
const emu = await new KscEmulator({ model }).listen();
process.stdout.write(JSON.stringify({ url: emu.url, pin: emu.cert.fingerprint256 }) + '\\n');
process.stdin.resume();
process.stdin.on('end', () => emu.close().then(() => process.exit(0)));
`;

const { build } = await import('esbuild');
writeFileSync(join(tmp, 'runner.ts'), runner);
await build({ entryPoints: [join(tmp, 'runner.ts')], bundle: true, platform: 'node', format: 'esm', target: 'node20', outfile: join(tmp, 'runner.mjs'), logLevel: 'error' });

const child = spawn(process.execPath, ['--max-old-space-size=4096', join(tmp, 'runner.mjs'), String(devices), String(software), String(vulns), String(patches)], { stdio: ['pipe', 'pipe', 'inherit'] });
const first = await new Promise((resolve) => createInterface({ input: child.stdout }).once('line', resolve));
const { url, pin } = JSON.parse(first);

const { KscIntegration } = await import(join(root, 'dist/src/ksc/index.js'));
const state = join(tmp, 'state');
let peakRss = 0;
let peakHeap = 0;
const sample = () => {
  const m = process.memoryUsage();
  peakRss = Math.max(peakRss, m.rss);
  peakHeap = Math.max(peakHeap, m.heapUsed);
};
const timer = setInterval(sample, 200);
const k = KscIntegration.open({ stateDir: state, env: {}, client: { timeoutMs: 120_000, retries: 2 }, attributes: { concurrency: 2, budgetMs: 24 * 3_600_000 } });
k.addConnection({ name: 'fleet', url, tls: { pinSha256: pin }, secret: { user: 'kuma', password: 'S3cret-KSC-pass!w0rd' } });

const mb = (b) => (b / 1048576).toFixed(0) + ' MiB';
const size = () => ['ksc.sqlite', 'ksc.sqlite-wal'].map((f) => join(state, f)).filter(existsSync).reduce((a, f) => a + statSync(f).size, 0);

let t = Date.now();
const [basic] = await k.syncAssets();
const basicMs = Date.now() - t;
sample();
const basicRss = peakRss;
console.log(`hourly import: ${basic.hosts} devices in ${(basicMs / 1000).toFixed(1)} s (ok=${basic.ok}), peak RSS ${mb(basicRss)}, peak heap ${mb(peakHeap)}`);
if (hourlyOnly) {
  clearInterval(timer);
  await k.close();
  child.stdin.end();
  await new Promise((r) => child.once('exit', r));
  rmSync(tmp, { recursive: true, force: true });
  process.exit(0);
}
t = Date.now();
const [attrs] = await k.syncAttributes();
const attrMs = Date.now() - t;
sample();
console.log(`attribute import: ${attrs.imported} devices (${attrs.failed} failed) in ${(attrMs / 1000).toFixed(1)} s (ok=${attrs.ok}), peak RSS ${mb(peakRss)}, peak heap ${mb(peakHeap)}`);
k.store.db.pragma('wal_checkpoint(TRUNCATE)');
const counts = k.store.db.prepare('SELECT (SELECT COUNT(*) FROM asset_software) AS sw, (SELECT COUNT(*) FROM software) AS cat, (SELECT COUNT(*) FROM asset_vulns) AS v').get();
console.log(`store: ${mb(size())} (${counts.sw} device-software rows, ${counts.cat} distinct programs, ${counts.v} device-vulnerability rows)`);
// A second attribute run replaces every device's rows: the store does not grow.
t = Date.now();
const [again] = await k.syncAttributes();
k.store.db.pragma('wal_checkpoint(TRUNCATE)');
console.log(`second attribute import: ${again.imported} devices in ${((Date.now() - t) / 1000).toFixed(1)} s, store ${mb(size())}, peak RSS ${mb(peakRss)}`);
clearInterval(timer);
await k.close();
child.stdin.end();
await new Promise((r) => child.once('exit', r));
rmSync(tmp, { recursive: true, force: true });
