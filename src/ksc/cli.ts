/**
 * `cefd ksc ...`: KSC connections, tenants, asset import, tasks and task runs, from the
 * command line. The commands work on the state store directly (SQLite in WAL mode with a
 * busy timeout, so they can run next to a daemon that uses the same state directory).
 *
 * Exit codes: 0 ok; 1 failure (KSC unreachable or refused, no such connection or asset, a
 * conflict, a task start refused); 64 usage (bad flags or values); 78 configuration (the
 * `--config` file does not load). Errors go to stderr as `error: <message> (<code>)`; with
 * `--json` they are also printed on stdout as `{"error": {"code", "message"}}`.
 *
 * Passwords never go on the command line (where `ps` shows them): `--password-stdin`,
 * `--password-file FILE` or `--password-env VAR`. No output ever contains one.
 */
import { Command, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { KscIntegration as KscIntegrationType, ConnectionView } from './index.js';
import type { KscCredentials, KscLogger } from './secrets.js';
import type { Asset, ConnectionTls, TaskRun } from './store.js';
import { EXIT } from '../errors.js';


/** A failure with its exit code and a stable code. */
class CliError extends Error {
  constructor(
    readonly exitCode: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const usage = (message: string): CliError => new CliError(EXIT.usage, 'usage', message);

interface Common {
  config?: string;
  stateDir?: string;
  json?: boolean;
  tenant?: string;
  verbose?: boolean;
}

function addCommon(cmd: Command, o: { json?: boolean; tenant?: boolean } = {}): Command {
  cmd.option('-c, --config <file>', 'YAML configuration file (for state_dir and ksc settings; default: the built-in configuration)');
  cmd.option('--state-dir <dir>', 'state directory (overrides state_dir of the configuration)');
  if (o.tenant !== false) cmd.option('--tenant <name>', 'tenant (default: "default")');
  if (o.json !== false) cmd.option('--json', 'print JSON instead of a table');
  cmd.option('-v, --verbose', 'log what the KSC client does (to stderr)');
  return cmd;
}

// -- output ------------------------------------------------------------------------------

let redactFn: (s: string) => string = (s) => s;

function out(text: string): void {
  process.stdout.write(redactFn(text.endsWith('\n') ? text : `${text}\n`));
}

function err(text: string): void {
  process.stderr.write(redactFn(text.endsWith('\n') ? text : `${text}\n`));
}

function printJson(v: unknown): void {
  out(JSON.stringify(v, null, 2));
}

/** A plain text table: columns padded to their widest cell, two spaces apart. */
function table(headers: string[], rows: (string | number | null | undefined)[][]): string {
  const cells = rows.map((r) => r.map((c) => (c === null || c === undefined || c === '' ? '-' : String(c).replace(/\s+/g, ' '))));
  const width = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => [...r[i]!].length)));
  const line = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c + ' '.repeat(width[i]! - [...c].length))).join('  ');
  return [line(headers), ...cells.map(line)].join('\n');
}

const time = (iso: string | null | undefined): string => (iso === null || iso === undefined ? '-' : iso.replace(/\.\d{3}Z$/, 'Z'));

// -- setup -------------------------------------------------------------------------------

function stderrLogger(verbose: boolean): KscLogger {
  const line = (level: string) => (obj: Record<string, unknown>, msg?: string) => {
    const fields = Object.entries(obj)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
      .join(' ');
    err(`cefd: ${level}: ${msg ?? ''}${fields !== '' ? ` (${fields})` : ''}`);
  };
  const quiet = () => {};
  return { debug: verbose ? line('debug') : quiet, info: verbose ? line('info') : quiet, warn: line('warning'), error: line('error') };
}

/** Opens the integration as the options say, runs `f`, maps failures to exit codes. */
async function withKsc(o: Common, f: (k: KscIntegrationType) => Promise<number | void> | number | void): Promise<void> {
  let k: KscIntegrationType | undefined;
  try {
    const { loadConfig, ConfigError } = await import('../config/load.js');
    let settings: { stateDir: string; credentialsFile?: string; timeoutMs?: number; retries?: number; taskRunBlockingMs?: number; attributes?: { concurrency: number; budgetMs: number } };
    try {
      if (o.config === undefined && o.stateDir !== undefined) {
        settings = { stateDir: resolve(o.stateDir) };
      } else {
        const c = loadConfig(o.config);
        settings = {
          stateDir: o.stateDir !== undefined ? resolve(o.stateDir) : c.state_dir,
          ...(c.ksc.credentials_file !== undefined ? { credentialsFile: c.ksc.credentials_file } : {}),
          timeoutMs: c.ksc.request_timeout * 1000,
          retries: c.ksc.retries,
          taskRunBlockingMs: c.ksc.task_run_blocking * 1000,
          attributes: { concurrency: c.ksc.asset_attributes_concurrency, budgetMs: c.ksc.asset_attributes_budget * 1000 },
        };
      }
    } catch (e) {
      if (e instanceof ConfigError) throw new CliError(EXIT.config, 'config', `invalid configuration\n${e.message}`);
      throw e;
    }
    const { KscIntegration, redact } = await import('./index.js');
    (await import('../state-dir.js')).noteStateDirUse(settings.stateDir);
    redactFn = redact;
    try {
      k = KscIntegration.open({
        stateDir: settings.stateDir,
        ...(settings.credentialsFile !== undefined ? { credentialsFile: settings.credentialsFile } : {}),
        logger: stderrLogger(o.verbose === true),
        client: { ...(settings.timeoutMs !== undefined ? { timeoutMs: settings.timeoutMs } : {}), ...(settings.retries !== undefined ? { retries: settings.retries } : {}) },
        ...(settings.taskRunBlockingMs !== undefined ? { taskRunBlockingMs: settings.taskRunBlockingMs } : {}),
        ...(settings.attributes !== undefined ? { attributes: settings.attributes } : {}),
      });
    } catch (e) {
      throw new CliError(EXIT.failure, 'ksc_store_failed', `cannot open the KSC state store in ${settings.stateDir}: ${(e as Error).message}`);
    }
    const code = await f(k);
    process.exitCode = typeof code === 'number' ? code : EXIT.ok;
  } catch (e) {
    let code: string;
    let exit: number;
    if (e instanceof CliError) {
      code = e.code;
      exit = e.exitCode;
    } else if (typeof (e as { code?: unknown }).code === 'string' && (e as { code: string }).code.startsWith('ksc_')) {
      code = (e as { code: string }).code;
      exit = code === 'ksc_invalid_input' ? EXIT.usage : EXIT.failure;
    } else {
      code = 'error';
      exit = EXIT.failure;
    }
    const message = (e as Error).message;
    err(`error: ${message}${code !== 'usage' && code !== 'config' && code !== 'error' ? ` (${code})` : ''}`);
    if (o.json === true) printJson({ error: { code, message } });
    process.exitCode = exit;
  } finally {
    await k?.close().catch(() => undefined);
  }
}

// -- secrets from stdin, a file or the environment ----------------------------------------

interface PasswordOpts {
  user?: string;
  password?: string;
  passwordStdin?: boolean;
  passwordFile?: string;
  passwordEnv?: string;
}

function addPasswordOptions(cmd: Command): Command {
  return cmd
    .option('--user <name>', 'KSC user name (an internal user)')
    .option('--password-stdin', 'read the password from standard input')
    .option('--password-file <file>', 'read the password from a file (its first line)')
    .option('--password-env <var>', 'take the password from this environment variable')
    .addOption(new Option('--password <value>').hideHelp());
}

const stripEol = (s: string): string => s.replace(/\r?\n$/, '');

/** The password, if one of the sources was given; never from the command line itself. */
function readPassword(o: PasswordOpts): string | undefined {
  if (o.password !== undefined) throw usage('never give a password on the command line (ps shows it): use --password-stdin, --password-file or --password-env');
  const sources = [o.passwordStdin === true, o.passwordFile !== undefined, o.passwordEnv !== undefined].filter(Boolean).length;
  if (sources > 1) throw usage('give only one of --password-stdin, --password-file, --password-env');
  let p: string | undefined;
  if (o.passwordStdin === true) {
    try {
      p = stripEol(readFileSync(0, 'utf8'));
    } catch (e) {
      throw usage(`cannot read the password from standard input: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  } else if (o.passwordFile !== undefined) {
    try {
      p = stripEol(readFileSync(o.passwordFile, 'utf8').split('\n')[0]!);
    } catch (e) {
      throw usage(`cannot read the password file ${o.passwordFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  } else if (o.passwordEnv !== undefined) {
    p = process.env[o.passwordEnv];
    if (p === undefined) throw usage(`the environment variable ${o.passwordEnv} is not set`);
  }
  if (p !== undefined && p === '') throw usage('the password is empty');
  return p;
}

// -- TLS options -------------------------------------------------------------------------

interface TlsOpts {
  pin?: string;
  caFile?: string;
  insecure?: boolean;
  systemCa?: boolean;
}

function addTlsOptions(cmd: Command, edit: boolean): Command {
  cmd
    .option('--pin <sha256>', 'SHA-256 fingerprint of the KSC server certificate (recommended for a self-signed KSC)')
    .option('--ca-file <file>', 'PEM file of the CA (or certificate) to verify the KSC server against')
    .option('--insecure', 'accept any server certificate (not for production; logged as a warning)');
  if (edit) cmd.option('--system-ca', 'verify against the system CAs (drops --pin, --ca-file, --insecure)');
  return cmd;
}

function tlsOf(o: TlsOpts): ConnectionTls | undefined {
  const n = [o.pin !== undefined, o.caFile !== undefined, o.insecure === true, o.systemCa === true].filter(Boolean).length;
  if (n > 1) throw usage('give only one of --pin, --ca-file, --insecure' + (o.systemCa !== undefined ? ', --system-ca' : ''));
  if (o.pin !== undefined) return { pinSha256: o.pin };
  if (o.caFile !== undefined) return { caFile: resolve(o.caFile) };
  if (o.insecure === true) return { insecure: true };
  if (o.systemCa === true) return {};
  return undefined;
}

// -- views -------------------------------------------------------------------------------

function tlsText(t: ConnectionTls): string {
  if (t.pinSha256 !== undefined) return `pin ${t.pinSha256.slice(0, 16)}…`;
  if (t.caFile !== undefined) return `ca ${t.caFile}`;
  if (t.insecure === true) return 'INSECURE';
  return 'system CAs';
}

function connectionsTable(list: ConnectionView[]): string {
  return table(
    ['ID', 'TENANT', 'NAME', 'URL', 'STATE', 'TLS', 'SECRET', 'LAST IMPORT'],
    list.map((c) => [
      c.id,
      c.tenant,
      c.name,
      c.url,
      c.disabled ? 'disabled' : 'enabled',
      tlsText(c.tls),
      c.secret.set ? c.secret.source : 'missing',
      c.lastSync === null ? 'never' : `${time(c.lastSync.at)} ${c.lastSync.ok ? `ok (${c.lastSync.hosts ?? 0} hosts)` : 'failed'}`,
    ]),
  );
}

function assetsTable(list: Asset[]): string {
  return table(
    ['ID', 'TENANT', 'NAME', 'FQDN', 'IP', 'PLATFORM', 'GROUP', 'AGENT', 'LAST VISIBLE', 'PRODUCTS', 'STATUS'],
    list.map((a) => [
      a.id,
      a.tenant,
      a.displayName,
      a.fqdn,
      a.ips.join(','),
      a.platform,
      a.group.name,
      a.nagent ? 'yes' : 'no',
      time(a.lastVisible),
      a.products.map((p) => `${p.product} ${p.version}`).join(', '),
      a.status,
    ]),
  );
}

function runsTable(list: TaskRun[]): string {
  return table(
    ['RUN', 'TASK', 'ASSET', 'HOST', 'STATE', 'KSC STATE', 'ORIGIN', 'RULE', 'REQUESTED', 'STARTED', 'FINISHED', 'ERROR'],
    list.map((r) => [r.id, r.taskName, r.assetId, r.hostName, r.state, r.kscStateName, r.origin, r.rule, time(r.requestedAt), time(r.startedAt), time(r.finishedAt), r.error]),
  );
}

// -- commands ----------------------------------------------------------------------------

type ConnAddOpts = Common & PasswordOpts & TlsOpts & { name?: string; url?: string; disabled?: boolean };
type ConnEditOpts = Common & PasswordOpts & TlsOpts & { name?: string; url?: string };

function connectionCommands(ksc: Command): void {
  const conns = ksc.command('connections').description('KSC connections of a tenant (stored in the state directory; secrets in a 0600 file)');

  addCommon(conns.command('list').description('List KSC connections (all tenants unless --tenant)')).action(async (o: Common) =>
    withKsc(o, (k) => {
      const list = k.listConnections(o.tenant !== undefined ? { tenant: o.tenant } : {});
      if (o.json) printJson({ connections: list });
      else out(list.length === 0 ? 'no KSC connections' : connectionsTable(list));
    }),
  );

  addCommon(addTlsOptions(addPasswordOptions(conns.command('add').description('Add a KSC connection'))
    .requiredOption('--name <name>', 'connection name, unique in the tenant (1-128 characters)')
    .requiredOption('--url <host:port>', 'KSC Administration Server: hostname:port or IPv4:port (port 13299 by default)')
    .option('--disabled', 'add it disabled'), false)).action(async (o: ConnAddOpts) =>
    withKsc(o, (k) => {
      const password = readPassword(o);
      if (password !== undefined && (o.user === undefined || o.user.trim() === '')) throw usage('--user is required with a password');
      if (password === undefined && o.user !== undefined) throw usage('--user needs a password: --password-stdin, --password-file or --password-env');
      const tls = tlsOf(o);
      const secret: KscCredentials | undefined = password !== undefined ? { user: o.user!, password } : undefined;
      const c = k.addConnection({
        ...(o.tenant !== undefined ? { tenant: o.tenant } : {}),
        name: o.name!,
        url: o.url!,
        ...(o.disabled === true ? { disabled: true } : {}),
        ...(tls !== undefined ? { tls } : {}),
        ...(secret !== undefined ? { secret } : {}),
      });
      if (o.json) printJson({ connection: c });
      else {
        out(`added KSC connection ${c.tenant}/${c.name} (id ${c.id}, ${c.url}, ${tlsText(c.tls)})`);
        if (tls === undefined) err('cefd: warning: no --pin or --ca-file: the server certificate is checked against the system CAs, which refuse a self-signed KSC');
      }
    }),
  );

  addCommon(addTlsOptions(addPasswordOptions(conns.command('edit').description('Change a KSC connection (by id, or by name in --tenant)').argument('<connection>', 'connection id or name'))
    .option('--name <name>', 'new name')
    .option('--url <host:port>', 'new URL'), true)).action(async (ref: string, o: ConnEditOpts) =>
    withKsc(o, (k) => {
      const cur = k.getConnection(ref, o.tenant);
      const password = readPassword(o);
      let secret: KscCredentials | undefined;
      if (password !== undefined || o.user !== undefined) {
        const old = k.secrets.get({ id: cur.id, tenant: cur.tenant, name: cur.name, url: cur.url });
        const user = o.user ?? old?.user;
        const pass = password ?? old?.password;
        if (user === undefined || pass === undefined) throw usage('give both --user and a password (the connection has no secret yet)');
        secret = { ...(old ?? {}), user, password: pass };
      }
      const tls = tlsOf(o);
      if (o.name === undefined && o.url === undefined && tls === undefined && secret === undefined) throw usage('nothing to change: give --name, --url, --user, a password option or a TLS option');
      const c = k.editConnection(cur.id, {
        ...(o.name !== undefined ? { name: o.name } : {}),
        ...(o.url !== undefined ? { url: o.url } : {}),
        ...(tls !== undefined ? { tls } : {}),
        ...(secret !== undefined ? { secret } : {}),
      });
      if (o.json) printJson({ connection: c });
      else out(`changed KSC connection ${c.tenant}/${c.name} (id ${c.id})`);
    }),
  );

  addCommon(conns.command('delete').description('Delete a KSC connection with its assets, task cache, task runs and secret').argument('<connection>', 'connection id or name')).action(
    async (ref: string, o: Common) =>
      withKsc(o, (k) => {
        const c = k.getConnection(ref, o.tenant);
        k.deleteConnection(c.id);
        if (o.json) printJson({ deleted: { id: c.id, tenant: c.tenant, name: c.name } });
        else out(`deleted KSC connection ${c.tenant}/${c.name} (id ${c.id})`);
      }),
  );

  for (const [verb, disabled] of [
    ['enable', false],
    ['disable', true],
  ] as const) {
    addCommon(conns.command(verb).description(`${verb === 'enable' ? 'Enable' : 'Disable'} a KSC connection`).argument('<connection>', 'connection id or name')).action(
      async (ref: string, o: Common) =>
        withKsc(o, (k) => {
          const c = k.setConnectionDisabled(ref, disabled, o.tenant);
          if (o.json) printJson({ connection: c });
          else out(`${disabled ? 'disabled' : 'enabled'} KSC connection ${c.tenant}/${c.name}`);
        }),
    );
  }

  addCommon(conns.command('test').description('Log in to KSC with a connection and check it answers').argument('<connection>', 'connection id or name')).action(
    async (ref: string, o: Common) =>
      withKsc(o, async (k) => {
        const c = k.getConnection(ref, o.tenant);
        const r = await k.testConnection(c.id);
        if (o.json) printJson({ result: r });
        else out(r.ok ? `${c.tenant}/${c.name}: OK` : `${c.tenant}/${c.name}: FAILED (${r.code}): ${r.error}`);
        return r.ok ? EXIT.ok : EXIT.failure;
      }),
  );
}

function tenantCommands(ksc: Command): void {
  const tenants = ksc.command('tenants').description('Tenants and their KSC integration switch');
  addCommon(tenants.command('list').description('List tenants'), { tenant: false }).action(async (o: Common) =>
    withKsc(o, (k) => {
      const list = k.listTenants();
      if (o.json) printJson({ tenants: list });
      else out(table(['TENANT', 'INTEGRATION'], list.map((t) => [t.name, t.integrationEnabled ? 'on' : 'off'])));
    }),
  );
  addCommon(
    tenants
      .command('create')
      .description('Create a tenant (1-64 letters, digits, ".", "_", "-")')
      .argument('<tenant>', 'tenant name')
      .option('--disabled', 'with its KSC integration off'),
    { tenant: false },
  ).action(async (name: string, o: Common & { disabled?: boolean }) =>
    withKsc(o, (k) => {
      const t = k.createTenant(name, { integrationEnabled: o.disabled !== true });
      if (o.json) printJson({ tenant: t });
      else out(`created tenant ${t.name} (KSC integration ${t.integrationEnabled ? 'on' : 'off'})`);
    }),
  );
  addCommon(
    tenants
      .command('delete')
      .description('Delete a tenant; refused while it has connections unless --force')
      .argument('<tenant>', 'tenant name')
      .option('--force', 'delete its connections too, with their assets, task cache, task runs and secrets'),
    { tenant: false },
  ).action(async (name: string, o: Common & { force?: boolean }) =>
    withKsc(o, (k) => {
      const r = k.deleteTenant(name, { force: o.force === true });
      if (o.json) printJson({ deleted: r });
      else out(`deleted tenant ${r.tenant}${r.connections > 0 ? ` with ${r.connections} KSC connections, ${r.assets} assets and ${r.taskRuns} task runs` : ''}`);
    }),
  );
  for (const [verb, on] of [
    ['enable', true],
    ['disable', false],
  ] as const) {
    addCommon(tenants.command(verb).description(`Switch a tenant's KSC integration ${on ? 'on' : 'off'}`).argument('<tenant>', 'tenant name'), { tenant: false }).action(
      async (name: string, o: Common) =>
        withKsc(o, (k) => {
          const t = k.setIntegrationEnabled(name, on);
          if (o.json) printJson({ tenant: t });
          else out(`KSC integration of tenant ${t.name}: ${t.integrationEnabled ? 'on' : 'off'}`);
        }),
    );
  }
}

function assetCommands(ksc: Command): void {
  const assets = ksc.command('assets').description('Assets imported from KSC');

  addCommon(
    assets
      .command('sync')
      .description('Import assets now from every enabled connection (or --connection)')
      .option('--connection <connection>', 'only this connection (id or name)')
      .option('--attributes', 'import the attributes of the imported devices instead (installed software, patches, vulnerabilities, owners)'),
  ).action(
    async (o: Common & { connection?: string; attributes?: boolean }) =>
      withKsc(o, async (k) => {
        if (o.attributes === true) {
          const results = await k.syncAttributes({ ...(o.tenant !== undefined ? { tenant: o.tenant } : {}), ...(o.connection !== undefined ? { connection: o.connection } : {}) });
          if (o.json) printJson({ results });
          else if (results.length === 0) out('no enabled KSC connection to import from');
          else {
            for (const r of results) {
              const rest = `${r.imported} devices imported, ${r.failed} failed${r.remaining > 0 ? `, ${r.remaining} not reached (the next run starts with them)` : ''}`;
              out(r.ok ? `${r.tenant}/${r.connection}: ok, ${rest}${r.budgetExhausted ? ' (time budget spent)' : ''} in ${r.durationMs} ms` : `${r.tenant}/${r.connection}: FAILED: ${r.error} (${rest})`);
            }
          }
          return results.every((r) => r.ok) ? EXIT.ok : EXIT.failure;
        }
        const results = await k.syncAssets({ ...(o.tenant !== undefined ? { tenant: o.tenant } : {}), ...(o.connection !== undefined ? { connection: o.connection } : {}) });
        if (o.json) printJson({ results });
        else if (results.length === 0) out('no enabled KSC connection to import from');
        else {
          for (const r of results) {
            out(
              r.ok
                ? `${r.tenant}/${r.connection}: ok, ${r.hosts} hosts (${r.created} new, ${r.updated} updated, ${r.merged > 0 ? `${r.merged} merged, ` : ''}${r.archived} archived, ${r.removed} removed${r.productErrors > 0 ? `, products unreadable for ${r.productErrors}` : ''}${r.skippedNoAgent > 0 ? `, ${r.skippedNoAgent} skipped: Network Agent never connected` : ''}) in ${r.durationMs} ms`
                : `${r.tenant}/${r.connection}: FAILED: ${r.error}`,
            );
          }
        }
        return results.every((r) => r.ok) ? EXIT.ok : EXIT.failure;
      }),
  );

  addCommon(
    assets
      .command('list')
      .description('List assets')
      .option('--connection <connection>', 'only assets of this connection (id or name)')
      .option('--archived', 'include archived assets'),
  ).action(async (o: Common & { connection?: string; archived?: boolean }) =>
    withKsc(o, (k) => {
      const connectionId = o.connection !== undefined ? k.getConnection(o.connection, o.tenant).id : undefined;
      const list = k.listAssets({ ...(o.tenant !== undefined ? { tenant: o.tenant } : {}), ...(connectionId !== undefined ? { connectionId } : {}), ...(o.archived === true ? { includeArchived: true } : {}) });
      if (o.json) printJson({ assets: list });
      else out(list.length === 0 ? 'no assets' : assetsTable(list));
    }),
  );

  addCommon(
    assets
      .command('show')
      .description('Show one asset with its software and vulnerabilities')
      .argument('<asset>', 'cefd asset id')
      .addOption(new Option('--format <format>', 'output format').choices(['text', 'json']).default('text')),
    { tenant: false },
  ).action(async (id: string, o: Common & { format?: string }) =>
    withKsc(o, (k) => {
      const d = k.getAssetDetail(id);
      if (d === undefined) throw new CliError(EXIT.failure, 'ksc_not_found', `no asset ${id}`);
      if (o.json === true || o.format === 'json') {
        printJson(d);
        return;
      }
      const a = d.asset;
      const p = a.protection;
      const hw = a.hardware;
      const rows: [string, string][] = [
        ['id', a.id],
        ['tenant', a.tenant],
        ['connection', a.connectionId],
        ['KSC host id', a.kscHostId],
        ['name', a.displayName ?? '-'],
        ['FQDN', a.fqdn ?? '-'],
        ['domain', a.domain ?? '-'],
        ['IP addresses', a.ips.join(', ') || '-'],
        ['MAC addresses', a.macs.join(', ') || '-'],
        ['OS', `${a.os ?? '-'} (${a.platform}${hw.osVersion !== undefined ? `, ${hw.osVersion}` : ''}${hw.osBuild ? ` build ${hw.osBuild}` : ''})`],
        ['hardware', [hw.computerType !== undefined ? `computer type ${hw.computerType}` : '', hw.platformType !== undefined ? `platform type ${hw.platformType}` : '', hw.server === true ? 'server' : ''].filter(Boolean).join(', ') || '-'],
        ['group', `${a.group.name ?? '-'} (${a.group.id ?? '-'})`],
        ['Network Agent', `${a.nagent ? 'yes' : 'no'}${p.nagentVersion !== undefined ? ` ${p.nagentVersion}` : ''}, connected ${time(a.nagentConnectedAt)}`],
        ['protection', `${p.status ?? '-'}${p.rtpInstalled !== undefined ? `, real-time protection ${p.rtpInstalled ? 'installed' : 'not installed'}` : ''}${p.avVersion !== undefined ? `, ${p.avVersion}` : ''}`],
        ['AV bases', time(p.avBasesAt)],
        ['last visible', time(a.lastVisible)],
        ['products', a.products.map((x) => `${x.displayName ?? x.product} ${x.version}`).join('; ') || '-'],
        ['owners', a.owners.map((x) => x.name).join(', ') || '-'],
        ['status', `${a.status}${a.archivedAt !== null ? ` since ${time(a.archivedAt)}` : ''}`],
        ['imported', `${time(a.firstImportedAt)} first, ${time(a.lastImportedAt)} last`],
        ['attributes', `${a.attributes.importedAt === null ? 'never imported' : `imported ${time(a.attributes.importedAt)}`}${a.attributes.error !== null ? `; last attempt ${time(a.attributes.triedAt)} failed: ${a.attributes.error}` : ''}`],
      ];
      const parts = [rows.map(([kk, v]) => `${kk.padEnd(14)} ${v}`).join('\n')];
      parts.push(`\nsoftware (${d.software.length})`);
      if (d.software.length > 0) parts.push(table(['NAME', 'VERSION', 'PUBLISHER', 'INSTALLED'], d.software.map((x) => [x.name, x.version, x.publisher, x.installDate])));
      if (d.patches.length > 0) parts.push(`\npatches (${d.patches.length})`, table(['NAME', 'VERSION', 'PUBLISHER', 'INSTALLED'], d.patches.map((x) => [x.name, x.version, x.publisher, x.installDate])));
      parts.push(`\nvulnerabilities (${d.vulnerabilities.length})`);
      if (d.vulnerabilities.length > 0) {
        parts.push(table(['ID', 'SEVERITY', 'PRODUCT', 'DETECTED', 'IGNORED', 'URL'], d.vulnerabilities.map((v) => [v.id, v.severity, v.product, time(v.detectedAt), v.ignored ? 'yes' : 'no', v.url])));
      }
      if (a.platform !== 'windows') parts.push('(KSC has software and vulnerability information for Windows devices only)');
      out(parts.join('\n'));
    }),
  );
}

function taskCommands(ksc: Command): void {
  const tasks = ksc.command('tasks').description('KSC tasks (display name beginning with "KUMA"), task starts and task runs');

  addCommon(tasks.command('list').description('List the KUMA* tasks of a connection').requiredOption('--connection <connection>', 'connection id or name').option('--refresh', 'ask KSC instead of the cache')).action(
    async (o: Common & { connection: string; refresh?: boolean }) =>
      withKsc(o, async (k) => {
        const list = await k.listTasks(o.connection, { ...(o.tenant !== undefined ? { tenant: o.tenant } : {}), ...(o.refresh === true ? { refresh: true } : {}) });
        if (o.json) printJson({ tasks: list });
        else out(list.length === 0 ? 'no KUMA* tasks on this connection' : table(['TASK ID', 'NAME', 'TYPE', 'PRODUCT', 'PLATFORM', 'GROUP ID'], list.map((t) => [t.taskId, t.displayName, t.taskType, t.product, t.platform, t.groupId])));
      }),
  );

  const collect = (v: string, prev: string[]): string[] => [...prev, v];
  addCommon(
    tasks
      .command('start')
      .description('Start the first task of the list that applies to the asset (KSC runs it on the whole scope of the task)')
      .requiredOption('--asset <id>', 'cefd asset id')
      .requiredOption('--task <name>', 'task display name or #<task id>; repeat for a list in order of preference', collect, [])
      .option('--force', 'start even if the task is already running for the asset'),
    { tenant: false },
  ).action(async (o: Common & { asset: string; task: string[]; force?: boolean }) =>
    withKsc(o, async (k) => {
      const r = await k.startTask({ assetId: o.asset, tasks: o.task, origin: 'manual', skipIfRunning: o.force !== true });
      if (o.json) printJson({ run: r.run, task: r.task, candidates: r.candidates, wholeScope: r.wholeScope });
      else {
        out(`started KSC task "${r.task.displayName}" (task ${r.task.taskId}) for asset ${r.run.hostName ?? r.run.assetId}: run ${r.run.id}`);
        for (const c of r.candidates) out(`  ${c.applicable ? '*' : '-'} ${c.requested}: ${c.reason}`);
        out('note: KSC runs the task on every device of its scope (Tasks.RunTask), not only on this asset');
      }
    }),
  );

  addCommon(
    tasks
      .command('status')
      .description('Task runs and their status (newest first)')
      .option('--asset <id>', 'only runs of this asset')
      .option('--connection <connection>', 'only runs of this connection (id or name)')
      .option('--active', 'only requested or running runs')
      .option('--limit <n>', 'at most this many runs (default 100)'),
  ).action(async (o: Common & { asset?: string; connection?: string; active?: boolean; limit?: string }) =>
    withKsc(o, (k) => {
      let limit: number | undefined;
      if (o.limit !== undefined) {
        limit = Number(o.limit);
        if (!Number.isSafeInteger(limit) || limit < 1) throw usage(`--limit must be a positive integer, got ${o.limit}`);
      }
      const connectionId = o.connection !== undefined ? k.getConnection(o.connection, o.tenant).id : undefined;
      const runs = k.taskStatus({
        ...(o.tenant !== undefined ? { tenant: o.tenant } : {}),
        ...(o.asset !== undefined ? { assetId: o.asset } : {}),
        ...(connectionId !== undefined ? { connectionId } : {}),
        ...(o.active === true ? { activeOnly: true } : {}),
        ...(limit !== undefined ? { limit } : {}),
      });
      if (o.json) printJson({ runs });
      else out(runs.length === 0 ? 'no task runs' : runsTable(runs));
    }),
  );
}

export function registerKscCommands(program: Command): void {
  const ksc = program
    .command('ksc')
    .description('Kaspersky Security Center integration: connections, tenants, assets, tasks')
    .addHelpText('after', '\nExit codes: 0 ok, 1 failure, 64 usage, 78 configuration.');
  connectionCommands(ksc);
  tenantCommands(ksc);
  assetCommands(ksc);
  taskCommands(ksc);
}
