/** `cefd run` as a child process: start from YAML, wait until ready, signal, read its output. */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from './daemon.js';

export const CLI = fileURLToPath(new URL('../../dist/src/cli.js', import.meta.url));

/** One `cefd ...` command (validate, ksc ...) run to its end in `cwd`: exit code and output. */
export function runCli(args: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { cwd }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : (err as { code?: number }).code ?? 1, stdout, stderr });
    });
  });
}

/** A KSC task-state line (RFC 5424 + CEF) numbered `i`, as the NATS fault tests send them. */
export const kscLine = (i: number): string =>
  `<14>1 2026-11-28T10:00:00.000Z ksc01 - - - - CEF:0|KasperskyLab|SecurityCenter|14.2|KLPRCI_TaskState|Running|1|rt=${1795860000000 + i} cs3=Nightly scan cs3Label=TaskName cnt=${i} msg=Task started on WS-${i % 4000}\n`;

/** A KSC task-state line carrying connection `c` and sequence `i` (cs4 and cnt): order checks per connection. */
export const connLine = (c: number, i: number): string =>
  `<14>1 2026-11-28T10:00:00.000Z ksc01 - - - - CEF:0|KasperskyLab|SecurityCenter|14.2|KLPRCI_TaskState|Running|1|rt=${1795860000000 + i} cs3=Nightly scan cs3Label=TaskName cs4=${c} cs4Label=Conn cn1=1 cn1Label=TaskNewState cnt=${i} msg=Task started on WS-${i % 4000}\n`;

/** Connection and sequence of an event made from connLine (cs4 with its label is the custom field `cs4:Conn`: docs/event-format.md). */
export function seqOf(rec: Record<string, unknown>): { conn: number; seq: number } {
  const cef = rec['cef'] as { custom: Record<string, string>; typed: Record<string, number> };
  return { conn: Number(cef.custom['cs4:Conn']), seq: cef.typed['baseEventCount']! };
}

/** Sends kscLine(from) .. kscLine(to - 1) over one TCP connection, 500 lines a write, honouring backpressure. */
export async function sendKscLines(port: number, from: number, to: number): Promise<void> {
  const sock = net.connect(port, '127.0.0.1');
  await new Promise((r) => sock.once('connect', r));
  for (let i = from; i < to; i += 500) {
    let chunk = '';
    for (let k = i; k < Math.min(to, i + 500); k++) chunk += kscLine(k);
    if (!sock.write(chunk)) await new Promise((r) => sock.once('drain', r));
  }
  await new Promise<void>((r) => sock.end(() => r()));
}

/**
 * A port that can be bound on 127.0.0.1, for a cefd listener a test may stop and start
 * again: below the kernel's ephemeral range (freePortRange), so that neither an outgoing
 * connection nor a server listening on port 0 (a test's endpoint, a helper server) takes it
 * between a stop and the restart. Not the same port twice in one test process.
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const p = await freePortRange(1);
    if (handedOut.has(p)) continue;
    handedOut.add(p);
    return p;
  }
  throw new Error('no free port found below the ephemeral range');
}
const handedOut = new Set<number>();

/**
 * A base port B such that B .. B+n-1 can all be bound on 127.0.0.1, taken below the
 * kernel's ephemeral range (/proc/sys/net/ipv4/ip_local_port_range): there no outgoing
 * connection, of the test or of anything else, takes one of them later. A layout that binds
 * fixed ports and restarts its parts (test/faults/cluster.test.ts) needs them free
 * throughout: a base inside the ephemeral range failed now and then when a connection of
 * the layout itself got one of its ports before the part that listens on it started.
 */
export async function freePortRange(n: number): Promise<number> {
  let ephemeralLow = 32768;
  try {
    ephemeralLow = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'latin1').trim().split(/\s+/)[0]) || ephemeralLow;
  } catch {
    // Not Linux: the usual default.
  }
  const min = 10000;
  const max = ephemeralLow - n;
  if (max <= min) throw new Error(`no room for ${n} ports below the ephemeral range (${ephemeralLow})`);
  for (let attempt = 0; attempt < 100; attempt++) {
    const base = min + Math.floor(Math.random() * (max - min));
    let free = true;
    for (let p = base; p < base + n && free; p++) free = await canListen(p);
    if (free) return base;
  }
  throw new Error(`no ${n} consecutive free ports found between ${min} and ${ephemeralLow}`);
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
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
    // A timeout says what cefd printed (the end of it), so a failure in CI can be read.
    until: (text, timeoutMs = 30_000) =>
      waitFor(() => out.join('').includes(text), timeoutMs, `"${text}" in cefd's output`).catch((e: Error) => {
        throw new Error(`${e.message} (exit code ${proc.exitCode ?? 'none yet'}); the output ends with:\n${out.join('').slice(-3000)}`);
      }),
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
