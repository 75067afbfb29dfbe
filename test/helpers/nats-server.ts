/**
 * A real nats-server (Debian's /usr/sbin/nats-server, 2.9) for tests: JetStream on, its
 * store in a temp folder, bound to 127.0.0.1 on a free port, an optional config file for
 * authorization and TLS. `stop()` ends it (SIGTERM, or SIGKILL with `kill`), `start()`
 * brings it back on the same port and store. Every server made here is killed when the
 * test file ends (`stopAllNats`, called from the files' afterAll).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from './child.js';
import { waitFor } from './daemon.js';
import { tempDir } from './temp.js';

export const NATS_SERVER = process.env['NATS_SERVER'] ?? '/usr/sbin/nats-server';

export interface NatsServer {
  port: number;
  url: string;
  dir: string;
  proc: ChildProcess | null;
  log: string[];
  start(): Promise<void>;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

const running = new Set<NatsServer>();

/** A nats-server with JetStream; `conf` is extra nats-server config text (authorization, tls). */
export async function natsServer(conf = ''): Promise<NatsServer> {
  const dir = tempDir('cefd-nats-');
  const port = await freePort();
  const confFile = join(dir, 'nats.conf');
  writeFileSync(confFile, `${conf}\n`);
  const s: NatsServer = {
    port,
    url: `nats://127.0.0.1:${port}`,
    dir,
    proc: null,
    log: [],
    async start() {
      const p = spawn(NATS_SERVER, ['-c', confFile, '-js', '-sd', join(dir, 'store'), '-p', String(port), '-a', '127.0.0.1'], { stdio: ['ignore', 'pipe', 'pipe'] });
      s.proc = p;
      running.add(s);
      const at = s.log.length;
      p.stdout!.on('data', (c: Buffer) => s.log.push(c.toString()));
      p.stderr!.on('data', (c: Buffer) => s.log.push(c.toString()));
      let exited = false;
      p.on('exit', () => (exited = true));
      await waitFor(() => exited || s.log.slice(at).join('').includes('Server is ready'), 20_000, 'nats-server ready');
      if (exited) throw new Error(`nats-server exited: ${s.log.slice(at).join('')}`);
    },
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      const p = s.proc;
      s.proc = null;
      running.delete(s);
      if (p === null || p.exitCode !== null) return;
      const gone = new Promise((r) => p.once('exit', r));
      p.kill(signal);
      await gone;
    },
  };
  await s.start();
  return s;
}

/** Kills every server still running (afterAll). */
export async function stopAllNats(): Promise<void> {
  await Promise.all([...running].map((s) => s.stop('SIGKILL')));
}
