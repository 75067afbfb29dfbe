// bench/data.mjs — the benchmark and fault-test input: bench/data/ksc-n<N>-s42.<log|oct>,
// generated once by gen-ksc.mjs (byte-identical to ../shared/bench-peer's for the same N).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

/** Path of the generated input for `n` events, framing `lf` or `octet` (generated if missing). */
export function dataFile(n, framing = 'lf') {
  const dir = join(here, 'data');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `ksc-n${n}-s42.${framing === 'octet' ? 'oct' : 'log'}`);
  if (!existsSync(file)) {
    const tmp = `${file}.${process.pid}.tmp`;
    execFileSync(process.execPath, [join(here, 'gen-ksc.mjs'), '--n', String(n), '--seed', '42', '--framing', framing, '--out', tmp], { stdio: ['ignore', 'ignore', 'inherit'] });
    renameSync(tmp, file);
  }
  return file;
}
