/**
 * A real clickhouse-server (Debian's package, 18.16 on Debian 12) for the tests: its own
 * config.xml and users.xml in a temp folder, its own data, tmp and log folders there, HTTP
 * and native ports chosen free on 127.0.0.1, ready once `/ping` answers `Ok.`. It runs as
 * whoever runs the tests (root in CI: ClickHouse 18.16 does not refuse root). Stopped with
 * SIGTERM (then SIGKILL) and its folder removed when the test file ends (tempDir).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { freePort } from './child.js';
import { tempDir } from './temp.js';

/** Where Debian puts the server binary (clickhouse-server package); PATH is searched last. */
export function clickhouseBinary(): string {
  for (const p of ['/usr/sbin/clickhouse-server', '/usr/bin/clickhouse-server']) if (existsSync(p)) return p;
  return 'clickhouse-server';
}

export interface ClickHouseUser {
  name: string;
  password: string;
}

export interface ClickHouse {
  dir: string;
  httpPort: number;
  url: string;
  /** With `tls`: the HTTPS port and URL (https://127.0.0.1:<port>/). */
  httpsPort: number;
  httpsUrl: string;
  proc: ChildProcess | null;
  /** Runs one query as `default` (no password); the response text. Throws on a non-200. */
  query(sql: string, body?: string): Promise<string>;
  /** Starts the server again on the same ports and data (after stop/kill). */
  start(): Promise<void>;
  /** SIGTERM, waits for the exit. */
  stop(): Promise<void>;
  /** SIGSTOP / SIGCONT: a server that accepts connections but answers nothing. */
  pause(): void;
  resume(): void;
}

export interface ClickHouseOptions {
  /** Extra users with a plain-text password (the `default` user has none). */
  users?: ClickHouseUser[];
  /** Also serve HTTPS (on `httpsPort`) with this PEM certificate and key. */
  tls?: { certFile: string; keyFile: string };
}

/** POSTs `sql` (and `body` after it) to the HTTP interface; resolves with status and text. */
export function chRequest(url: string, sql: string, body = '', headers: Record<string, string> = {}): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    u.searchParams.set('query', sql);
    const req = http.request(u, { method: 'POST', headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/ping', timeout: 1000 }, (res) => {
      let t = '';
      res.on('data', (c: Buffer) => (t += c.toString()));
      res.on('end', () => resolve(res.statusCode === 200 && t.startsWith('Ok.')));
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => {
      req.destroy();
      resolve(false);
    });
  });
}

function configXml(dir: string, httpPort: number, tcpPort: number, https?: { port: number; certFile: string; keyFile: string }): string {
  const tls =
    https === undefined
      ? ''
      : `  <https_port>${https.port}</https_port>
  <openSSL><server>
    <certificateFile>${https.certFile}</certificateFile>
    <privateKeyFile>${https.keyFile}</privateKeyFile>
    <verificationMode>none</verificationMode>
    <loadDefaultCAFile>false</loadDefaultCAFile>
    <cacheSessions>true</cacheSessions>
    <disableProtocols>sslv2,sslv3</disableProtocols>
    <preferServerCiphers>true</preferServerCiphers>
  </server></openSSL>
`;
  return `<?xml version="1.0"?>
<yandex>
  <logger>
    <level>warning</level>
    <log>${dir}/log/server.log</log>
    <errorlog>${dir}/log/server.err.log</errorlog>
    <size>10M</size>
    <count>1</count>
  </logger>
  <http_port>${httpPort}</http_port>
  <tcp_port>${tcpPort}</tcp_port>
  <listen_host>127.0.0.1</listen_host>
${tls}  <max_connections>256</max_connections>
  <keep_alive_timeout>3</keep_alive_timeout>
  <max_concurrent_queries>50</max_concurrent_queries>
  <uncompressed_cache_size>8589934592</uncompressed_cache_size>
  <mark_cache_size>67108864</mark_cache_size>
  <path>${dir}/data/</path>
  <tmp_path>${dir}/tmp/</tmp_path>
  <user_files_path>${dir}/user_files/</user_files_path>
  <format_schema_path>${dir}/format_schemas/</format_schema_path>
  <users_config>${dir}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mlock_executable>false</mlock_executable>
  <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
  <max_session_timeout>3600</max_session_timeout>
  <default_session_timeout>60</default_session_timeout>
</yandex>
`;
}

function usersXml(users: ClickHouseUser[]): string {
  const user = (name: string, password: string) => `    <${name}>
      <password>${password}</password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </${name}>`;
  return `<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>
  <users>
${[user('default', ''), ...users.map((u) => user(u.name, u.password))].join('\n')}
  </users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
`;
}

/** Starts a clickhouse-server of its own; stop() it in afterAll (its folder goes with tempDir). */
export async function startClickHouse(opts: ClickHouseOptions = {}): Promise<ClickHouse> {
  const dir = tempDir('cefd-clickhouse-');
  for (const d of ['data', 'tmp', 'log', 'user_files', 'format_schemas']) mkdirSync(join(dir, d), { recursive: true });
  const httpPort = await freePort();
  const tcpPort = await freePort();
  const httpsPort = opts.tls === undefined ? 0 : await freePort();
  writeFileSync(join(dir, 'config.xml'), configXml(dir, httpPort, tcpPort, opts.tls === undefined ? undefined : { port: httpsPort, ...opts.tls }));
  writeFileSync(join(dir, 'users.xml'), usersXml(opts.users ?? []));
  const url = `http://127.0.0.1:${httpPort}/`;
  let exited: Promise<void> = Promise.resolve();
  let stderr = '';

  const ch: ClickHouse = {
    dir,
    httpPort,
    url,
    httpsPort,
    httpsUrl: `https://127.0.0.1:${httpsPort}/`,
    proc: null,
    async query(sql, body = '') {
      const r = await chRequest(url, sql, body);
      if (r.status !== 200) throw new Error(`clickhouse: ${sql}: HTTP ${r.status}: ${r.text}`);
      return r.text;
    },
    async start() {
      const proc = spawn(clickhouseBinary(), [`--config-file=${join(dir, 'config.xml')}`], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
      ch.proc = proc;
      proc.stderr!.on('data', (c: Buffer) => {
        if (stderr.length < 8192) stderr += c.toString();
      });
      let gone = false;
      exited = new Promise<void>((r) =>
        proc.on('exit', () => {
          gone = true;
          r();
        }),
      );
      proc.on('error', (err) => {
        stderr += String(err);
      });
      const deadline = Date.now() + 60_000;
      while (!(await ping(httpPort))) {
        if (gone) throw new Error(`clickhouse-server exited at start: ${stderr}`);
        if (Date.now() > deadline) throw new Error(`clickhouse-server did not answer /ping within 60 s: ${stderr}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    async stop() {
      const p = ch.proc;
      if (p === null) return;
      ch.proc = null;
      if (p.exitCode !== null || p.signalCode !== null) return;
      p.kill('SIGCONT');
      p.kill('SIGTERM');
      const t = setTimeout(() => p.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(t);
    },
    pause() {
      ch.proc?.kill('SIGSTOP');
    },
    resume() {
      ch.proc?.kill('SIGCONT');
    },
  };
  try {
    await ch.start();
  } catch (e) {
    // Not returned, so no afterAll can stop it: a server that did not answer is stopped here.
    await ch.stop();
    throw e;
  }
  return ch;
}
