/**
 * The options of a NATS connection (servers, credentials from files, TLS, timeouts), shared
 * by the `nats` output and the `nats` source; no client code here, so loading a config does
 * not load the NATS client (src/nats/connection.ts has it).
 */
import { bool, dur, fields, list, pathSpec, str, type ConfigOf, type FieldProblem } from '../config/spec.js';
import { fileProblem, MAX_PEM_FILE_BYTES, MAX_SECRET_FILE_BYTES, readBoundedFile, readSecretFile } from '../config/read-file.js';

export const NATS_CONNECTION_FIELDS = fields({
  servers: list('NATS server URLs (`nats://host:4222`, `tls://host:4222`); the client picks one and fails over to the others.', str('server URL'), { required: true }),
  creds_file: pathSpec('A NATS `.creds` file (user JWT and NKey seed), for servers run in operator mode.'),
  nkey_seed_file: pathSpec('A file holding an NKey seed (`SU...`): the client signs the server\'s nonce with it.'),
  token_file: pathSpec('A file holding the server\'s authorization token.'),
  user: str('User name (with password_file).'),
  password_file: pathSpec('A file holding the password of `user`.'),
  tls_required: bool('Require TLS (also implied by a `tls://` server URL or a `ca_file`).', false),
  ca_file: pathSpec('PEM CA bundle to verify the server certificate against (default: the system CAs).'),
  cert_file: pathSpec('PEM client certificate, for servers that verify clients (with key_file).'),
  key_file: pathSpec('PEM private key of cert_file.'),
  connect_timeout: dur('Deadline of one connection attempt.', '5s', 0.001),
  reconnect_wait: dur('Wait between connection attempts (the first connect backs off up to 16 times this).', '1s', 0.001),
});

export type NatsConnectionConfig = ConfigOf<typeof NATS_CONNECTION_FIELDS>;

/** Checks the schema kinds cannot express (keys relative to the plugin's object). */
export function checkNatsConnection(c: NatsConnectionConfig): FieldProblem[] {
  const out: FieldProblem[] = [];
  if (c.servers.length === 0) out.push({ key: 'servers', message: 'name at least one NATS server' });
  for (const [i, s] of c.servers.entries()) {
    if (!/^(nats|tls):\/\/[^/\s]+$/.test(s) && !/^[^:/\s]+:\d+$/.test(s)) out.push({ key: `servers[${i}]`, message: `expected nats://host:port, tls://host:port or host:port, got ${JSON.stringify(s)}` });
  }
  if ((c.cert_file === undefined) !== (c.key_file === undefined)) out.push({ key: c.cert_file === undefined ? 'cert_file' : 'key_file', message: 'cert_file and key_file go together' });
  if ((c.user === undefined) !== (c.password_file === undefined)) out.push({ key: c.user === undefined ? 'user' : 'password_file', message: 'user and password_file go together' });
  const schemes = [c.creds_file, c.nkey_seed_file, c.token_file, c.user].filter((x) => x !== undefined).length;
  if (schemes > 1) out.push({ key: 'creds_file', message: 'set one of creds_file, nkey_seed_file, token_file or user' });
  return out;
}

/**
 * The connection's files (credentials, CA, client certificate), read as natsOptions
 * (src/nats/connection.ts) reads them when connecting: one that cannot be read is a problem
 * of `validate` and of a reload (src/config/normalizers.ts runs this with the other checks
 * that read files), not a connect loop that warns forever. Keys relative to the plugin's object.
 */
export function natsFileProblems(c: NatsConnectionConfig): FieldProblem[] {
  const out: FieldProblem[] = [];
  const files: [keyof NatsConnectionConfig, (p: string) => unknown][] = [
    ['creds_file', (p) => readBoundedFile(p, MAX_SECRET_FILE_BYTES)],
    ['nkey_seed_file', readSecretFile],
    ['token_file', readSecretFile],
    ['password_file', readSecretFile],
    ['ca_file', (p) => readBoundedFile(p, MAX_PEM_FILE_BYTES)],
    ['cert_file', (p) => readBoundedFile(p, MAX_PEM_FILE_BYTES)],
    ['key_file', (p) => readBoundedFile(p, MAX_PEM_FILE_BYTES)],
  ];
  for (const [key, read] of files) {
    const file = c[key];
    if (typeof file !== 'string') continue;
    try {
      read(file);
    } catch (e) {
      out.push({ key, message: fileProblem(file, e) });
    }
  }
  return out;
}
