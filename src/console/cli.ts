/**
 * `cefd console set-password` (the console password's scrypt hash in the state directory)
 * and `cefd tap` (the console's live tail on the command line, as `vector tap`: one JSON
 * event per line from a running daemon's admin listener).
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Command, CommanderError } from 'commander';
import { EXIT } from '../errors.js';
import { sseReader } from './sse.js';

async function configOf(file: string | undefined): Promise<import('../config/types.js').Config> {
  const { loadConfig, ConfigError } = await import('../config/load.js');
  try {
    return loadConfig(file);
  } catch (e) {
    if (e instanceof ConfigError) throw new CommanderError(EXIT.config, 'cefd.config', e.message);
    throw e;
  }
}

export function registerConsoleCommands(program: Command): void {
  const con = program.command('console').description('The web console (docs/console.md)');
  con
    .command('set-password')
    .description('Set the console sign-in password (read from standard input; its scrypt hash goes to <state_dir>/console-password, mode 0600)')
    .option('-c, --config <file>', 'YAML configuration file (for state_dir)')
    .option('--state-dir <dir>', 'state directory (overrides state_dir of the configuration)')
    .action(async (o: { config?: string; stateDir?: string }) => {
      const dir = o.stateDir !== undefined ? resolve(o.stateDir) : (await configOf(o.config)).state_dir;
      const password = readFileSync(0, 'utf8').replace(/\r?\n$/, '');
      const { setConsolePassword } = await import('./auth.js');
      const { makeStateDir, noteStateDirUse } = await import('../state-dir.js');
      try {
        noteStateDirUse(dir);
        makeStateDir(dir);
        const file = setConsolePassword(dir, password);
        process.stdout.write(`console password set (${file})\n`);
      } catch (e) {
        throw new CommanderError(EXIT.usage, 'cefd.usage', `error: ${(e as Error).message}`);
      }
    });

  program
    .command('tap')
    .description('Stream the live events of a running daemon (the console\'s live tail), one JSON event per line')
    .option('-c, --config <file>', 'YAML configuration file (admin listener address, token, TLS)')
    .option('--filter <expr>', 'only events that pass this filter (the route filter language)')
    .option('--url <url>', 'admin listener URL (default: from the configuration)')
    .option('--insecure', 'do not check the admin listener\'s TLS certificate')
    .action(async (o: { config?: string; filter?: string; url?: string; insecure?: boolean }) => {
      const c = await configOf(o.config);
      const a = c.ksc.admin;
      const token = a.bearer_token ?? process.env['CEFD_ADMIN_TOKEN'];
      if (token === undefined || token === '') throw new CommanderError(EXIT.usage, 'cefd.usage', 'error: no admin token (ksc.admin.bearer_token, or CEFD_ADMIN_TOKEN)');
      const tls = a.tls?.cert_file !== undefined;
      const base = o.url ?? `${tls ? 'https' : 'http'}://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`;
      const url = new URL('/console/api/events/stream', base);
      url.searchParams.set('full', 'true');
      if (o.filter !== undefined) url.searchParams.set('filter', o.filter);
      const mod = url.protocol === 'https:' ? await import('node:https') : await import('node:http');
      await new Promise<void>((done, fail) => {
        const req = mod.request(url, { headers: { Authorization: `Bearer ${token}`, Accept: 'text/event-stream' }, ...(o.insecure === true ? { rejectUnauthorized: false } : {}) }, (res) => {
          if (res.statusCode !== 200) {
            let body = '';
            res.setEncoding('utf8').on('data', (d: string) => (body += d));
            res.on('end', () => fail(new CommanderError(EXIT.failure, 'cefd.tap', `error: ${errorText(res.statusCode, body)}`)));
            return;
          }
          res.setEncoding('utf8');
          res.on(
            'data',
            sseReader((data, type) => {
              // The daemon skipped events this tap read too slowly to get (docs/console.md).
              if (type === 'dropped') process.stderr.write(`cefd tap: ${(JSON.parse(data) as { dropped: number }).dropped} events skipped: this tap read too slowly\n`);
              else process.stdout.write(data + '\n');
            }),
          );
          res.on('end', () => done());
        });
        req.on('error', (e) => fail(new CommanderError(EXIT.failure, 'cefd.tap', `error: cannot reach ${base}: ${e.message}`)));
        req.end();
        const stop = (): void => {
          req.destroy();
          done();
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
    });
}

/** An error answer in words: its JSON `error.message` (and code), else its text. */
export function errorText(status: number | undefined, body: string): string {
  try {
    const e = (JSON.parse(body) as { error?: { code?: unknown; message?: unknown } }).error;
    if (e !== undefined && typeof e.message === 'string') return typeof e.code === 'string' ? `${e.message} (${e.code}, HTTP ${status})` : `${e.message} (HTTP ${status})`;
  } catch {
    // not JSON: the text as it came
  }
  return `${status}: ${body.trim()}`;
}
