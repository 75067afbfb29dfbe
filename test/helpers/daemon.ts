/** Starting a daemon in-process on ephemeral ports, and talking to it. */
import dgram from 'node:dgram';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import { Writable } from 'node:stream';
import { loadConfig, loadConfigText } from '../../src/config/load.js';
import { Daemon } from '../../src/daemon.js';
import { Telemetry } from '../../src/telemetry/telemetry.js';

import { tempDir } from './temp.js';

export { tempDir };

/** Log lines captured from a daemon. */
export class LogCapture extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    for (const l of chunk.toString('utf8').split('\n')) if (l.trim() !== '') this.lines.push(l);
    cb();
  }
  parsed(): Record<string, unknown>[] {
    return this.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  }
}

export interface TestDaemon {
  daemon: Daemon;
  dir: string;
  logs: LogCapture;
  port(listener: string): number;
  metricsPort(): number;
  stop(): Promise<number>;
}

/** Starts a daemon from YAML (use `{dir}` for the temp folder). Metrics on an ephemeral port. */
export async function startDaemon(yaml: string, opts: { dir?: string; env?: Record<string, string> } = {}): Promise<TestDaemon> {
  const dir = opts.dir ?? tempDir();
  const text = yaml.replaceAll('{dir}', dir);
  const config = loadConfigText(text, join(dir, 'cefd.yaml'), { ...process.env, ...opts.env });
  const logs = new LogCapture();
  const telemetry = new Telemetry({ level: 'debug', destination: logs, processMetrics: false, repeatIntervalMs: 0 });
  const daemon = new Daemon(config, telemetry);
  await daemon.start();
  return {
    daemon,
    dir,
    logs,
    port: (name) => {
      const p = daemon.ports()[name];
      if (p === undefined) throw new Error(`no listener ${name}`);
      return p;
    },
    metricsPort: () => daemon.metricsPort()!,
    stop: () => daemon.stop(),
  };
}

/**
 * Starts a daemon in-process from `<dir>/cefd.yaml` (written from `yaml`), so that its
 * reload() reads that file again, as SIGHUP does. Metrics as the YAML says. Push-and-stop:
 * it is added to `started`, which the caller's afterEach stops.
 */
export async function startFromFile(dir: string, yaml: string, started: Daemon[]): Promise<{ d: Daemon; file: string; logs: LogCapture }> {
  const file = join(dir, 'cefd.yaml');
  writeFileSync(file, yaml);
  const logs = new LogCapture();
  const d = new Daemon(loadConfig(file), new Telemetry({ level: 'debug', destination: logs, processMetrics: false, repeatIntervalMs: 0 }), file);
  started.push(d);
  await d.start();
  return { d, file, logs };
}

/** Writes chunks to a TCP (or TLS) socket, each chunk in its own write, then ends it. */
export async function sendTcp(port: number, chunks: (string | Buffer)[], opts: { tls?: tls.ConnectionOptions; end?: boolean; gapMs?: number } = {}): Promise<void> {
  const sock = opts.tls
    ? tls.connect({ host: '127.0.0.1', port, ...opts.tls })
    : net.connect({ host: '127.0.0.1', port });
  await new Promise<void>((resolve, reject) => {
    sock.once(opts.tls ? 'secureConnect' : 'connect', () => resolve());
    sock.once('error', reject);
  });
  for (const c of chunks) {
    if (!sock.write(c)) await new Promise((r) => sock.once('drain', r));
    if (opts.gapMs !== undefined) await new Promise((r) => setTimeout(r, opts.gapMs));
  }
  if (opts.end !== false) {
    await new Promise<void>((resolve) => {
      sock.end(() => resolve());
    });
    await new Promise<void>((resolve) => {
      if (sock.destroyed) resolve();
      else sock.once('close', () => resolve());
      sock.resume();
    });
  }
}

export async function sendUdp(port: number, datagrams: (string | Buffer)[]): Promise<void> {
  const s = dgram.createSocket('udp4');
  for (const d of datagrams) {
    await new Promise<void>((resolve, reject) => s.send(d, port, '127.0.0.1', (e) => (e ? reject(e) : resolve())));
  }
  s.close();
}

/** The records of an NDJSON file; `tolerateTornTail` ignores a last line without its newline. */
export function readNdjson(file: string, opts: { tolerateTornTail?: boolean } = {}): Record<string, unknown>[] {
  if (!existsSync(file)) return [];
  const lines = readFileSync(file, 'utf8').split('\n');
  const last = lines.pop();
  if (last !== undefined && last !== '' && !opts.tolerateTornTail) lines.push(last);
  return lines.filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Waits until `check` returns true (polling), or throws after `timeoutMs`. */
export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 30_000, what = 'condition'): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    if (await check()) return;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export async function waitLines(file: string, n: number, timeoutMs = 30_000): Promise<Record<string, unknown>[]> {
  await waitFor(() => readNdjson(file, { tolerateTornTail: true }).length >= n, timeoutMs, `${n} lines in ${file}`);
  return readNdjson(file);
}

/** Scrapes /metrics and returns `name{labels}` → value. */
export async function scrape(port: number, token?: string): Promise<Map<string, number>> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`, token ? { headers: { authorization: `Bearer ${token}` } } : {});
  const text = await res.text();
  const m = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const i = line.lastIndexOf(' ');
    m.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return m;
}
