/** An in-process daemon with its extensions (the KSC integration), and admin API calls. */
import { spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfigText } from '../../src/config/load.js';
import { Daemon } from '../../src/daemon.js';
import { createExtensions } from '../../src/extensions/index.js';
import { KscExtension } from '../../src/ksc/extension.js';
import { Telemetry } from '../../src/telemetry/telemetry.js';
import { LogCapture, tempDir } from './daemon.js';

export interface KscTestDaemon {
  daemon: Daemon;
  dir: string;
  logs: LogCapture;
  ksc: KscExtension;
  port(listener: string): number;
  adminPort(): number;
  metricsPort(): number;
  stop(): Promise<number>;
}

/** Starts a daemon from YAML (`{dir}` is the temp folder) with the extensions `cefd run` creates. */
export async function startKscDaemon(yaml: string, opts: { dir?: string; env?: Record<string, string> } = {}): Promise<KscTestDaemon> {
  const dir = opts.dir ?? tempDir('cefd-ksc-daemon-');
  // Metrics on a free port unless the test says otherwise: the default (9141) may be taken
  // by another process on the machine.
  const text = /^metrics:/m.test(yaml) ? yaml : `${yaml}\nmetrics: { enabled: true, host: 127.0.0.1, port: 0 }\n`;
  const config = loadConfigText(text.replaceAll('{dir}', dir), join(dir, 'cefd.yaml'), { ...process.env, ...opts.env });
  const logs = new LogCapture();
  const telemetry = new Telemetry({ level: 'debug', destination: logs, processMetrics: false, repeatIntervalMs: 0 });
  const extensions = await createExtensions(config);
  const ksc = extensions.find((x): x is KscExtension => x instanceof KscExtension);
  if (ksc === undefined) throw new Error('createExtensions made no KSC extension');
  const daemon = new Daemon(config, telemetry, join(dir, 'cefd.yaml'), extensions);
  try {
    await daemon.start();
  } catch (e) {
    await daemon.stop().catch(() => 0);
    if (opts.dir === undefined) rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    daemon,
    dir,
    logs,
    ksc,
    port: (name) => {
      const p = daemon.ports()[name];
      if (p === undefined) throw new Error(`no listener ${name}`);
      return p;
    },
    adminPort: () => {
      const p = ksc.adminPort();
      if (p === undefined) throw new Error('the admin API does not listen');
      return p;
    },
    metricsPort: () => daemon.metricsPort()!,
    stop: () => daemon.stop(),
  };
}

export interface ApiAnswer {
  status: number;
  headers: Headers;
  text: string;
  json: Record<string, unknown> | undefined;
}

/** One admin API call. `token: null` sends no Authorization header. */
export async function api(port: number, method: string, path: string, o: { body?: unknown; token?: string | null; headers?: Record<string, string> } = {}): Promise<ApiAnswer> {
  const headers: Record<string, string> = { ...o.headers };
  if (o.token !== null) headers['authorization'] = `Bearer ${o.token ?? ADMIN_TOKEN}`;
  let body: string | undefined;
  if (o.body !== undefined) {
    body = typeof o.body === 'string' ? o.body : JSON.stringify(o.body);
    headers['content-type'] ??= 'application/json';
  }
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { method, headers, ...(body !== undefined ? { body } : {}) });
  const text = await res.text();
  let json: Record<string, unknown> | undefined;
  try {
    json = text === '' ? undefined : (JSON.parse(text) as Record<string, unknown>);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

/** At least 32 characters, as `ksc.admin.bearer_token` must have (src/ksc/config/check.ts). */
export const ADMIN_TOKEN = 'admin-token-for-tests-0123456789abcdef';

/** The start of a daemon's YAML for startKscDaemon: one TCP listener on a free port, a file output, the dead letter. */
export const DAEMON_BASE_YAML = `state_dir: {dir}/state
listeners:
  - { name: tcp, type: tcp, host: 127.0.0.1, port: 0 }
outputs:
  - { name: events, type: file, path: {dir}/events.ndjson }
dead_letter: { path: {dir}/dead-letter.ndjson }
`;

// -- the built CLI as a child process ---------------------------------------------------


export const CLI = fileURLToPath(new URL('../../dist/src/cli.js', import.meta.url));

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node dist/src/cli.js ...args` (asynchronously: an in-process emulator must keep answering). */
export function runCli(args: string[], o: { input?: string; env?: Record<string, string | undefined>; cwd?: string } = {}): Promise<CliResult> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build first (npx tsc -p tsconfig.json; npm test does it)`);
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [CLI, ...args], { cwd: o.cwd, env: { ...process.env, ...o.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stdout, stderr }));
    p.stdin.end(o.input ?? '');
  });
}
