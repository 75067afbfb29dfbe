/**
 * A real rsyslogd (Debian's rsyslog package) as a syslog receiver for tests: its own config
 * in a temp folder, imtcp (plain, or TLS through rsyslog-openssl's `ossl` driver) and imudp
 * on 127.0.0.1 and a free port, omfile into a file of that folder, no system paths. Each
 * received message is one line: `PRI<TAB>HOSTNAME<TAB>APP-NAME<TAB>MSG`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { waitFor } from './daemon.js';
import { tempDir } from './temp.js';

export const RSYSLOGD = '/usr/sbin/rsyslogd';

export interface RsyslogTls {
  ca: string;
  cert: string;
  key: string;
  /** `anon` (no client certificate asked) or `x509/certvalid` (a client certificate signed by `ca` required). */
  authMode?: 'anon' | 'x509/certvalid';
}

export interface Rsyslog {
  dir: string;
  port: number;
  out: string;
  proc: ChildProcess;
  /** Lines received so far, split into fields. */
  lines(): { pri: string; hostname: string; app: string; msg: string }[];
  stop(signal?: NodeJS.Signals): Promise<void>;
  stderr(): string;
}

/** Starts rsyslogd on `port` (TCP and UDP) and waits until it accepts connections. */
export async function startRsyslog(port: number, opts: { tls?: RsyslogTls; dir?: string } = {}): Promise<Rsyslog> {
  const dir = opts.dir ?? tempDir('cefd-rsyslog-');
  const out = join(dir, 'received.log');
  const t = opts.tls;
  const conf = [
    `global(workDirectory="${dir}" maxMessageSize="256k"${t ? ` defaultNetstreamDriver="ossl" defaultNetstreamDriverCAFile="${t.ca}" defaultNetstreamDriverCertFile="${t.cert}" defaultNetstreamDriverKeyFile="${t.key}"` : ''})`,
    t
      ? `module(load="imtcp" streamDriver.name="ossl" streamDriver.mode="1" streamDriver.authMode="${t.authMode ?? 'anon'}")`
      : 'module(load="imtcp")',
    'module(load="imudp")',
    `input(type="imtcp" address="127.0.0.1" port="${port}")`,
    `input(type="imudp" address="127.0.0.1" port="${port}")`,
    'template(name="fields" type="string" string="%pri%\\t%hostname%\\t%app-name%\\t%msg%\\n")',
    `action(type="omfile" file="${out}" template="fields")`,
    '',
  ].join('\n');
  const confFile = join(dir, 'rsyslog.conf');
  writeFileSync(confFile, conf);
  const pidFile = join(dir, 'rsyslogd.pid');
  const proc = spawn(RSYSLOGD, ['-n', '-f', confFile, '-i', pidFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  const err: string[] = [];
  proc.stdout!.on('data', (c: Buffer) => err.push(c.toString()));
  proc.stderr!.on('data', (c: Buffer) => err.push(c.toString()));
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  let dead = false;
  void exited.then(() => (dead = true));
  const r: Rsyslog = {
    dir,
    port,
    out,
    proc,
    stderr: () => err.join(''),
    lines: () => {
      if (!existsSync(out)) return [];
      return readFileSync(out, 'utf8')
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => {
          const [pri, hostname, app, ...rest] = l.split('\t');
          // rsyslog keeps the space RFC 3164 puts after the tag in front of msg.
          return { pri: pri!, hostname: hostname!, app: app!, msg: rest.join('\t').replace(/^ /, '') };
        });
    },
    stop: async (signal = 'SIGTERM') => {
      if (!dead) proc.kill(signal);
      await exited;
    },
  };
  await waitFor(
    async () => {
      if (dead) throw new Error(`rsyslogd exited at start: ${err.join('')}`);
      return new Promise<boolean>((resolve) => {
        const s = net.connect({ host: '127.0.0.1', port }, () => {
          s.destroy();
          resolve(true);
        });
        s.on('error', () => resolve(false));
      });
    },
    15_000,
    'rsyslogd to listen',
  );
  return r;
}
