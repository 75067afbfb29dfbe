/**
 * A real nats-server (Debian's /usr/sbin/nats-server, 2.9) for tests: JetStream on, its
 * store in a temp folder, bound to 127.0.0.1 on a free port, an optional config file for
 * authorization and TLS. `stop()` ends it (SIGTERM, or SIGKILL with `kill`), `start()`
 * brings it back on the same port and store. Every server made here is killed when the
 * test file ends (`stopAllNats`, called from the files' afterAll, whatever else failed
 * there); a server that does not start is killed at once. Its folder (tempDir) is removed
 * after that, once no server writes to it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePortRange } from './child.js';
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

/** A nats-server with JetStream (unless `jetstream: false`); `conf` is extra nats-server config text (authorization, tls, http). */
export async function natsServer(conf = '', opts: { jetstream?: boolean } = {}): Promise<NatsServer> {
  const dir = tempDir('cefd-nats-');
  // Below the ephemeral ports: tests stop and start the server again on this port, which an
  // outgoing connection could otherwise take meanwhile (child.ts freePortRange).
  const port = await freePortRange(1);
  const confFile = join(dir, 'nats.conf');
  writeFileSync(confFile, `${conf}\n`);
  const s: NatsServer = {
    port,
    url: `nats://127.0.0.1:${port}`,
    dir,
    proc: null,
    log: [],
    async start() {
      const js = opts.jetstream === false ? [] : ['-js', '-sd', join(dir, 'store')];
      const p = spawn(NATS_SERVER, ['-c', confFile, ...js, '-p', String(port), '-a', '127.0.0.1'], { stdio: ['ignore', 'pipe', 'pipe'] });
      s.proc = p;
      running.add(s);
      const at = s.log.length;
      p.stdout!.on('data', (c: Buffer) => s.log.push(c.toString()));
      p.stderr!.on('data', (c: Buffer) => s.log.push(c.toString()));
      let exited = false;
      p.on('exit', () => (exited = true));
      await waitFor(() => exited || s.log.slice(at).join('').includes('Server is ready'), 60_000, 'nats-server ready');
      if (exited) throw new Error(`nats-server exited: ${s.log.slice(at).join('')}`);
    },
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      const p = s.proc;
      s.proc = null;
      running.delete(s);
      // A process ended by a signal has a signalCode and no exitCode: its 'exit' is past.
      if (p === null || p.exitCode !== null || p.signalCode !== null) return;
      const gone = new Promise((r) => p.once('exit', r));
      p.kill(signal);
      await gone;
    },
  };
  try {
    await s.start();
  } catch (e) {
    await s.stop('SIGKILL');
    throw e;
  }
  return s;
}

/** Kills every server still running (afterAll); one that cannot be stopped does not keep the others running. */
export async function stopAllNats(): Promise<void> {
  const results = await Promise.allSettled([...running].map((s) => s.stop('SIGKILL')));
  const failed = results.find((r) => r.status === 'rejected');
  if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
}
