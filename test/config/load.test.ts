/**
 * loadConfigText: options read from files (`*_file` for secret options) and relative
 * paths (files cefd reads resolve against the config file's folder, files it writes
 * against the working folder).
 */
import { execFileSync, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { tempDir } from '../helpers/temp.js';
import { join, resolve } from 'node:path';
import { expect, test } from 'vitest';
import { ConfigError, loadConfig, loadConfigText, redactConfig } from '../../src/config/load.js';

function problemsOf(text: string, file: string): string[] {
  try {
    loadConfigText(text, file, {});
  } catch (e) {
    if (e instanceof ConfigError) return e.problems.map((p) => `${p.key}: ${p.message}`);
    throw e;
  }
  return [];
}


/** The config errors of a text loaded as `file`, one line each ([] when it loads). */
function configErrors(text: string, file: string): string[] {
  try {
    loadConfigText(text, file, {});
  } catch (e) {
    if (e instanceof ConfigError) return e.message.split('\n');
    throw e;
  }
  return [];
}

test('a secret option read from its _file (the whitespace at its ends dropped); both set, or an unreadable file, is a problem naming the key', () => {
  const dir = tempDir('cefd-config-');
  const file = join(dir, 'cefd.yaml');
  writeFileSync(join(dir, 'token'), 'tok-123-0123456789abcdef0123456789\n');
  const c = loadConfigText('outputs:\n  - { name: siem, type: http, url: "https://siem.example/", bearer_token_file: ./token }\nmetrics: { bearer_token_file: token }\n', file, {});
  const out = c.outputs[0] as unknown as Record<string, unknown>;
  expect(out['bearer_token']).toBe('tok-123-0123456789abcdef0123456789');
  expect((c.metrics as unknown as Record<string, unknown>)['bearer_token']).toBe('tok-123-0123456789abcdef0123456789');

  expect(problemsOf('outputs:\n  - { name: siem, type: http, url: "https://x/", bearer_token: abc, bearer_token_file: ./token }\n', file)).toContain(
    'outputs[0].bearer_token: set either bearer_token or bearer_token_file, not both',
  );
  expect(problemsOf('metrics: { bearer_token_file: ./missing }\n', file)).toContain('metrics.bearer_token_file: cannot read ./missing: ENOENT');
});

test('an http output with format json_array takes JSON records only (a CEF line is not a JSON value)', () => {
  const file = join(tempDir('cefd-config-'), 'cefd.yaml');
  const http = (extra: string) => `outputs:\n  - { name: h, type: http, url: "https://x/", format: json_array${extra} }\n`;
  expect(problemsOf(http(', encoding: { codec: cef }'), file)).toContain('outputs[0].format: json_array needs JSON records: use encoding native, ecs or kuma, or format ndjson');
  for (const ok of ['', ', encoding: { codec: ecs }', ', encoding: { codec: kuma }']) expect(problemsOf(http(ok), file)).toEqual([]);
  expect(problemsOf('outputs:\n  - { name: h, type: http, url: "https://x/", encoding: { codec: cef } }\n', file)).toEqual([]);
});

test('paths cefd reads resolve against the config folder, paths it writes against the working folder', () => {
  const dir = tempDir('cefd-config-');
  writeFileSync(join(dir, 'ca.pem'), '');
  const c = loadConfigText('state_dir: ./state\noutputs:\n  - { name: f, type: file, path: out/events.ndjson }\n  - { name: h, type: http, url: "https://x/", ca_file: ca.pem }\n', join(dir, 'cefd.yaml'), {});
  expect(c.state_dir).toBe(resolve(process.cwd(), 'state'));
  expect((c.outputs[0] as unknown as Record<string, unknown>)['path']).toBe(resolve(process.cwd(), 'out/events.ndjson'));
  expect((c.outputs[1] as unknown as Record<string, unknown>)['ca_file']).toBe(join(dir, 'ca.pem'));
});

test('metrics.bearer_token: at least 32 characters while the endpoint is on, with the line of the token (or of its file)', () => {
  const dir = tempDir('cefd-config-');
  const file = join(dir, 'cefd.yaml');
  const format = (text: string): string[] => configErrors(text, file);
  expect(format('state_dir: ./state\nmetrics:\n  port: 9141\n  bearer_token: short-token-of-31-characters-xx\n')).toEqual([
    `${file}:4: metrics.bearer_token: has 31 characters: use at least 32, random (e.g. \`openssl rand -hex 32\`)`,
  ]);
  expect(format('metrics: { bearer_token: 0123456789abcdef0123456789abcdef }\n')).toEqual([]);
  expect(format('metrics: { enabled: false, bearer_token: short }\n')).toEqual([]);
  writeFileSync(join(dir, 'metrics-token'), 'too-short\n');
  expect(format('outputs: []\nmetrics: { bearer_token_file: ./metrics-token }\n')).toEqual([
    `${file}:2: metrics.bearer_token: has 9 characters: use at least 32, random (e.g. \`openssl rand -hex 32\`)`,
  ]);
});

test('ksc.admin.bearer_token: at least 32 characters when the admin API is on, with the line of the token (or of its file)', () => {
  const dir = tempDir('cefd-config-');
  const file = join(dir, 'cefd.yaml');
  const admin = (token: string, enabled = true) => `state_dir: ./state\nksc:\n  admin:\n    enabled: ${enabled}\n    bearer_token: ${token}\n`;
  const format = (text: string): string[] => configErrors(text, file);
  expect(format(admin('short-token-of-31-characters-xx'))).toEqual([
    `${file}:5: ksc.admin.bearer_token: has 31 characters: use at least 32, random (e.g. \`openssl rand -hex 32\`)`,
  ]);
  expect(format(admin('0123456789abcdef0123456789abcdef'))).toEqual([]);
  // The API off: the token is not used, so not checked.
  expect(format(admin('short', false))).toEqual([]);
  // From a file: the problem points at bearer_token_file's line.
  writeFileSync(join(dir, 'admin-token'), 'too-short\n');
  expect(format('ksc:\n  admin: { enabled: true, bearer_token_file: ./admin-token }\n')).toEqual([
    `${file}:2: ksc.admin.bearer_token: has 9 characters: use at least 32, random (e.g. \`openssl rand -hex 32\`)`,
  ]);
  writeFileSync(join(dir, 'admin-token'), `${'f'.repeat(64)}\n`);
  expect(format('ksc:\n  admin: { enabled: true, bearer_token_file: ./admin-token }\n')).toEqual([]);
});

test('a secret _file that cannot be read is one problem at its line, not also "required"; a missing option names its section\'s line', () => {
  const dir = tempDir('cefd-config-');
  const file = join(dir, 'cefd.yaml');
  const format = (text: string): string[] => configErrors(text, file);
  // The file is named but missing: the reader is told that, once, at the _file key's line
  // (before: a second line said the token "is required ... or set bearer_token_file").
  expect(format('state_dir: ./state\nksc:\n  admin:\n    enabled: true\n    bearer_token_file: ./admin-token\n')).toEqual([
    `${file}:5: ksc.admin.bearer_token_file: cannot read ./admin-token: ENOENT`,
  ]);
  expect(format('outputs:\n  - name: hec\n    type: splunk_hec\n    url: https://splunk.example:8088\n    token_file: ./hec-token\n')).toEqual([
    `${file}:5: outputs[0].token_file: cannot read ./hec-token: ENOENT`,
  ]);
  // Neither the token nor its file: "required", at the line of the section that needs it.
  expect(format('state_dir: ./state\nksc:\n  admin: { enabled: true, port: 9142 }\n')).toEqual([
    `${file}:3: ksc.admin.bearer_token: is required when ksc.admin.enabled is true (or set ksc.admin.bearer_token_file)`,
  ]);
});

test('${VAR}: an unset variable and an empty one are problems that say which', () => {
  const file = join(tempDir('cefd-config-'), 'cefd.yaml');
  const problems = (env: Record<string, string>) => {
    try {
      loadConfigText('outputs:\n  - { name: h, type: http, url: "${SIEM_URL}" }\n', file, env);
    } catch (e) {
      if (e instanceof ConfigError) return e.problems.map((p) => `${p.key}: ${p.message}`);
      throw e;
    }
    return [];
  };
  expect(problems({})).toContain('outputs[0].url: environment variable SIEM_URL is not set');
  expect(problems({ SIEM_URL: '' })).toContain('outputs[0].url: environment variable SIEM_URL is empty');
  expect(problems({ SIEM_URL: 'https://siem.example/' })).toEqual([]);
});

test('the checks that read files (TLS material, normalizer modules) name the line of the option too', async () => {
  const { checkNormalizers } = await import('../../src/config/normalizers.js');
  const dir = tempDir('cefd-config-');
  const file = join(dir, 'cefd.yaml');
  const text = 'listeners:\n  - name: ksc-tls\n    type: tls\n    port: 6514\n    tls:\n      cert_file: ./missing.crt\n      key_file: ./missing.key\n  - { name: t, type: tcp, normalizers: [ksc, ./missing.mjs] }\n';
  writeFileSync(file, text);
  const c = loadConfigText(text, file, {});
  const err = await checkNormalizers(c, file).then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(ConfigError);
  const lines = (err as ConfigError).message.split('\n');
  expect(lines.some((l) => l.startsWith(`${file}:6: listeners[0].tls.cert_file: `))).toBe(true);
  expect(lines.some((l) => l.startsWith(`${file}:8: listeners[1].normalizers[1]: `))).toBe(true);
});

test('YAML that parses but does not convert (an unresolved alias, an alias bomb, a merge of a non-mapping) is a problem, at its line when one can be told', () => {
  const file = join(tempDir('cefd-config-'), 'cefd.yaml');
  // Before: the yaml library's error escaped loadConfigText (a stack trace and exit 1).
  expect(configErrors('state_dir: *x\n', file)).toEqual([`${file}:1: YAML: an alias (*name) refers to no anchor (&name) set before it`]);
  expect(configErrors('x: &a [1]\ny: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nz: [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n', file)).toEqual([
    `${file}: YAML: aliases expand to too many values (more than 100; an alias bomb?)`,
  ]);
  expect(configErrors('%YAML 1.1\n---\nmetrics:\n  <<: 1\n', file)).toEqual([`${file}:4: YAML: a merge key (<<) takes a mapping, an alias of one, or a list of those`]);
  // Aliases and merges that resolve still load.
  expect(configErrors('%YAML 1.1\n---\nbase: &m { port: 9141 }\n', file)).toEqual([`${file}:3: base: unknown key`]);
  expect(configErrors('%YAML 1.1\n---\nmetrics:\n  <<: { port: 9150 }\nstate_dir: &s ./state\ndead_letter: { path: *s }\n', file)).toEqual([]);
});

test('a YAML syntax error has its line and column, and does not quote the text of the file (it may be a secret)', () => {
  const file = join(tempDir('cefd-config-'), 'cefd.yaml');
  expect(configErrors('state_dir: a\nmetrics: {}\nstate_dir: b\n', file)).toEqual([`${file}:3: YAML: Map keys must be unique (column 1)`]);
  const errors = configErrors('  state_dir: ./x\nmetrics:\n  bearer_token: hunter2hunter2hunter2hunter2hunter2\n', file);
  expect(errors.length).toBeGreaterThan(0);
  for (const e of errors) {
    expect(e).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+: YAML: .* \\(column \\d+\\)$`));
    expect(e).not.toContain('hunter2');
  }
  expect(errors).toContain(`${file}:3: YAML: Unexpected scalar token in YAML stream (column 17)`);
  expect(configErrors('state_dir: "a\\qhunter2"\n', file)).toEqual([`${file}:1: YAML: Invalid escape sequence (column 14)`]);
});

/** `sh -c 'printf ... > fifo'`: a writer that blocks until the FIFO is read (killed after the test). */
function fifoWriter(fifo: string, text: string): { stop: () => void } {
  execFileSync('mkfifo', [fifo]);
  const child = spawn('sh', ['-c', 'printf %s "$1" > "$2"', 'sh', text, fifo], { stdio: 'ignore' });
  return { stop: () => void child.kill('SIGKILL') };
}

test('a secret _file or the config file is read only when it is a regular file within its bound (64 KiB, 4 MiB): a FIFO or a bigger file is one problem', () => {
  const dir = tempDir('cefd-config-');
  const file = join(dir, 'cefd.yaml');
  const token = '0123456789abcdef0123456789abcdef';
  writeFileSync(join(dir, 'big-token'), `${token}${'x'.repeat(64 * 1024 - token.length + 1)}`);
  expect(configErrors('metrics:\n  bearer_token_file: ./big-token\n', file)).toEqual([`${file}:2: metrics.bearer_token_file: cannot read ./big-token: larger than 64 KiB`]);
  writeFileSync(join(dir, 'big-token'), `${token}${'x'.repeat(64 * 1024 - token.length)}`);
  expect(configErrors('metrics:\n  bearer_token_file: ./big-token\n', file)).toEqual([]);
  // A FIFO would block the read until a writer came (before: forever with none; here the
  // writer would have been read from); /dev/zero would be read until memory ran out.
  const writer = fifoWriter(join(dir, 'token-fifo'), token);
  try {
    expect(configErrors('metrics:\n  bearer_token_file: ./token-fifo\n', file)).toEqual([`${file}:2: metrics.bearer_token_file: cannot read ./token-fifo: not a regular file`]);
  } finally {
    writer.stop();
  }

  writeFileSync(file, `# ${'x'.repeat(4 * 1024 * 1024)}\nstate_dir: ./state\n`);
  expect(() => loadConfig(file, { env: {} })).toThrow(`${file}: cannot read the config file: larger than 4 MiB`);
  const config = join(dir, 'config-fifo');
  const configWriter = fifoWriter(config, 'state_dir: ./state\n');
  try {
    expect(() => loadConfig(config, { env: {} })).toThrow(`${config}: cannot read the config file: not a regular file`);
  } finally {
    configWriter.stop();
  }
});

test('durations that set a Node timer are at most 24 days (a longer timer fires at once)', () => {
  const file = join(tempDir('cefd-config-'), 'cefd.yaml');
  expect(configErrors('listeners: [{name: t, type: tcp, host: 127.0.0.1, port: 25143, frame_timeout: 30d, idle_timeout: 25d}]\n', file)).toEqual([
    `${file}:1: listeners[0].idle_timeout: must be at most 24 days, got "25d"`,
    `${file}:1: listeners[0].frame_timeout: must be at most 24 days, got "30d"`,
  ]);
  expect(configErrors('listeners:\n  - { name: t, type: tls, port: 6514, tls: { cert_file: c, key_file: k, handshake_timeout: 30d } }\n', file)).toEqual([
    `${file}:2: listeners[0].tls.handshake_timeout: must be at most 24 days, got "30d"`,
  ]);
  expect(
    configErrors('shutdown_timeout: 25d\noutputs:\n  - { name: s, type: stdout, buffer: { fsync_interval: 30d }, retry: { initial_backoff: 25d, max_backoff: 30d } }\ndead_letter: { fsync_interval: 30d, buffer: { fsync_interval: 25d } }\n', file),
  ).toEqual([
    `${file}:1: shutdown_timeout: must be at most 24 days, got "25d"`,
    `${file}:3: outputs[0].buffer.fsync_interval: must be at most 24 days, got "30d"`,
    `${file}:3: outputs[0].retry.initial_backoff: must be at most 24 days, got "25d"`,
    `${file}:3: outputs[0].retry.max_backoff: must be at most 24 days, got "30d"`,
    `${file}:4: dead_letter.buffer.fsync_interval: must be at most 24 days, got "25d"`,
    `${file}:4: dead_letter.fsync_interval: must be at most 24 days, got "30d"`,
  ]);
  expect(configErrors('listeners: [{name: t, type: tcp, frame_timeout: 24d, idle_timeout: 0}]\nshutdown_timeout: 24d\n', file)).toEqual([]);
});

test('a required option of a section left out, and a secret set twice, are reported at a line of the file', () => {
  const dir = tempDir('cefd-config-');
  const file = join(dir, 'cefd.yaml');
  // The listener has no tls section: at the listener's line.
  expect(configErrors('listeners:\n  - name: t\n    type: tls\n    port: 6514\n', file)).toEqual([
    `${file}:2: listeners[0].tls.cert_file: is required`,
    `${file}:2: listeners[0].tls.key_file: is required`,
  ]);
  writeFileSync(join(dir, 'token'), '0123456789abcdef0123456789abcdef\n');
  expect(configErrors('metrics:\n  bearer_token: 0123456789abcdef0123456789abcdef\n  bearer_token_file: ./token\n', file)).toEqual([
    `${file}:2: metrics.bearer_token: set either bearer_token or bearer_token_file, not both`,
  ]);
});

test('a number JSON cannot write (1e309, .nan) is shown as written in the file, not as null', () => {
  const file = join(tempDir('cefd-config-'), 'cefd.yaml');
  expect(configErrors('decode_workers: 1e309\nshutdown_timeout: .nan\n', file)).toEqual([
    `${file}:1: decode_workers: expected an integer, got 1e309`,
    `${file}:2: shutdown_timeout: expected a duration such as 10s, 500ms, 5m or a number of seconds, got .nan`,
  ]);
});

test('validate --print (redactConfig) redacts the passwords of URLs in lists too', () => {
  const file = join(tempDir('cefd-config-'), 'cefd.yaml');
  const c = loadConfigText('outputs: [{name: n, type: nats, subject: s, servers: ["nats://user:PwMark9@nats1:4222", "nats://nats2:4222"]}]\n', file, {});
  const printed = JSON.stringify(redactConfig(c));
  expect(printed).not.toContain('PwMark9');
  expect(printed).toContain('"servers":["nats://(redacted)@nats1:4222","nats://nats2:4222"]');
});

test('every duration that sets a Node timer stops at 24 days, in every plugin and section (nats, sql, ksc, http outputs)', () => {
  const cases: [string, string][] = [
    ['listeners[0].fetch_wait', 'listeners: [{ name: n, type: nats, servers: ["nats://127.0.0.1:4222"], stream: s, fetch_wait: 30d }]'],
    ['outputs[0].ack_timeout', 'outputs: [{ name: n, type: nats, servers: ["nats://127.0.0.1:4222"], subject: s, ack_timeout: 30d }]'],
    ['outputs[0].max_retry_after', 'outputs: [{ name: n, type: http, url: "http://127.0.0.1:1/", max_retry_after: 30d }]'],
    ['ksc.asset_sync_interval', 'ksc: { asset_sync_interval: 30d }'],
    ['ksc.request_timeout', 'ksc: { request_timeout: 25d }'],
  ];
  for (const [key, yaml] of cases) {
    let err: unknown;
    try {
      loadConfigText(yaml, 'c.yaml', {});
    } catch (e) {
      err = e;
    }
    expect(err, key).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems.map((p) => `${p.key}: ${p.message}`), key).toContain(`${key}: must be at most 24 days, got "${yaml.match(/: (\d+d)/)![1]}"`);
  }
  // 24 days is still a valid value.
  expect(() => loadConfigText('ksc: { asset_sync_interval: 24d }', 'c.yaml', {})).not.toThrow();
  // Durations only compared with clocks have no such limit (a monthly refresh, a month-long sign-in).
  for (const yaml of ['ksc: { asset_attributes_interval: 30d, task_run_timeout: 60d, task_run_blocking: 30d, asset_attributes_budget: 30d }', 'ksc: { admin: { console: { session_ttl: 30d, quiet_after: 30d } } }']) {
    expect(() => loadConfigText(yaml, 'c.yaml', {}), yaml).not.toThrow();
  }
});

test('two file outputs, or a file output and the dead-letter file, on one path (after resolving): a problem at the later one', () => {
  const file = join(tempDir(), 'cefd.yaml');
  expect(
    problemsOf(
      `outputs:
  - { name: e1, type: file, path: ./same.ndjson }
  - { name: e2, type: file, path: same.ndjson }
  - { name: e3, type: file, path: ./dead.ndjson }
  - { name: e4, type: file, path: ./other.ndjson }
dead_letter: { path: ./dead.ndjson }
`,
      file,
    ),
  ).toEqual([`outputs[1].path: ${resolve('same.ndjson')} is already written by output e1: give each file output its own file`, `outputs[2].path: ${resolve('dead.ndjson')} is already written by the dead-letter file (dead_letter.path): give each file output its own file`]);
});
