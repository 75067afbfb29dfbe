/** `cefd run` as a child process: start from YAML, wait until ready, signal, read its output. */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from './daemon.js';

export const CLI = fileURLToPath(new URL('../../dist/src/cli.js', import.meta.url));

export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const p = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return p;
}

export interface ChildDaemon {
  proc: ChildProcess;
  out: string[];
  exit: Promise<number | null>;
  /** Resolves when the output shows `text`. */
  until(text: string, timeoutMs?: number): Promise<void>;
  text(): string;
}

/** Starts `cefd run --config <dir>/cefd.yaml` in `dir` (writes the YAML there). */
export function runCefd(dir: string, yaml: string, opts: { prlimit?: string[] } = {}): ChildDaemon {
  const file = join(dir, 'cefd.yaml');
  writeFileSync(file, yaml);
  const args = [CLI, 'run', '--config', file];
  const proc = opts.prlimit
    ? spawn('prlimit', [...opts.prlimit, '--', process.execPath, ...args], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(process.execPath, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  const out: string[] = [];
  proc.stdout!.on('data', (c: Buffer) => out.push(c.toString()));
  proc.stderr!.on('data', (c: Buffer) => out.push(c.toString()));
  const exit = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  return {
    proc,
    out,
    exit,
    text: () => out.join(''),
    until: (text, timeoutMs = 20_000) => waitFor(() => out.join('').includes(text), timeoutMs, `"${text}" in cefd's output`),
  };
}

/** Peak resident set size (VmHWM) of a process, in bytes. */
export async function peakRss(pid: number): Promise<number> {
  const { readFile } = await import('node:fs/promises');
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const m = /VmHWM:\s+(\d+) kB/.exec(status);
  return m === null ? 0 : Number(m[1]) * 1024;
}

/** Results of the fault tests, printed as the table of docs/reliability.md. */
export interface FaultResult {
  test: string;
  sent: string;
  arrived: string;
  lost: string;
  why: string;
}

export function printReport(rows: FaultResult[]): void {
  const lines = ['| fault | sent | arrived | lost | why |', '|---|---|---|---|---|', ...rows.map((r) => `| ${r.test} | ${r.sent} | ${r.arrived} | ${r.lost} | ${r.why} |`)];
  console.log(`\nReliability report\n${lines.join('\n')}\n`);
}
