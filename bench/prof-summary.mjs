#!/usr/bin/env node
// bench/prof-summary.mjs — where the time goes in .cpuprofile files (node --cpu-prof):
// per file (one per thread), the functions with the most self time.
//
//   node bench/e2e.mjs --n 200000 --runs 1 --only 1conn-disk --cpu-prof /tmp/prof
//   node bench/prof-summary.mjs /tmp/prof [--top 15]
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

let top = 15;
const paths = [];
for (let i = 2; i < process.argv.length; i++) {
  if (process.argv[i] === '--top') top = Number(process.argv[++i]);
  else paths.push(process.argv[i]);
}
const files = paths.flatMap((p) => (statSync(p).isDirectory() ? readdirSync(p).filter((f) => f.endsWith('.cpuprofile')).sort().map((f) => join(p, f)) : [p]));
if (files.length === 0) {
  console.error('usage: prof-summary.mjs DIR|FILE.cpuprofile... [--top N]');
  process.exit(2);
}
for (const file of files) {
  const p = JSON.parse(readFileSync(file, 'utf8'));
  const selfUs = new Map();
  for (let i = 0; i < p.samples.length; i++) selfUs.set(p.samples[i], (selfUs.get(p.samples[i]) ?? 0) + (p.timeDeltas[i] ?? 0));
  const byName = new Map();
  let total = 0;
  for (const n of p.nodes) {
    const t = selfUs.get(n.id) ?? 0;
    total += t;
    const cf = n.callFrame;
    const where = cf.url ? ` ${cf.url.replace(/^.*\/(dist\/|node:)/, '$1')}:${cf.lineNumber + 1}` : '';
    const key = `${cf.functionName || '(anonymous)'}${where}`;
    byName.set(key, (byName.get(key) ?? 0) + t);
  }
  const idle = byName.get('(idle)') ?? 0;
  console.log(`\n${file}: ${(total / 1e6).toFixed(2)} s sampled, ${((total - idle) / 1e6).toFixed(2)} s busy\n`);
  console.log('| self ms | % of busy | function |\n|---:|---:|---|');
  for (const [k, v] of [...byName].filter(([k]) => k !== '(idle)').sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`| ${(v / 1000).toFixed(0)} | ${((100 * v) / (total - idle)).toFixed(1)} | ${k.replace(/\|/g, '\\|')} |`);
  }
}
