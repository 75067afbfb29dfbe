/**
 * How the loader reads values (src/config/load.ts): file modes in octal, `${VAR}`
 * interpolation and its forms (src/config/interpolate.ts), `*_file` secrets
 * (src/config/read-file.ts) and the NATS connection's files, filters written as YAML
 * booleans or in blocks (positions: src/config/scalar-source.ts), "did you mean".
 */
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { ConfigError, loadConfigText } from '../../src/config/load.js';
import { checkNormalizers } from '../../src/config/normalizers.js';
import { natsOptions } from '../../src/nats/connection.js';
import type { NatsConnectionConfig } from '../../src/nats/config.js';
import { tempDir } from '../helpers/temp.js';

/** The problems of `text` loaded as `file`, `line: key: message` each ([] when it loads). */
function problems(text: string, file: string, env: Record<string, string> = {}): string[] {
  try {
    loadConfigText(text, file, env);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems.map((p) => `${p.line ?? '-'}: ${p.key}: ${p.message}`);
    throw e;
  }
  return [];
}

const fileOutput = (mode: string) => `outputs:\n  - { name: f, type: file, path: ./f.ndjson, mode: ${mode} }\n`;

test('a file mode is octal as for chmod: 0440 is 0o440 (YAML 1.2 reads it as decimal 440), a mode without the leading 0 is refused', () => {
  const file = join(tempDir('cefd-values-'), 'cefd.yaml');
  const mode = (m: string) => (loadConfigText(fileOutput(m), file, {}).outputs[0] as unknown as { mode: number }).mode;
  // Before: 0440 was the decimal 440 (0o670, within range), so the file was group-writable.
  expect(mode('0440')).toBe(0o440);
  expect(mode('0640')).toBe(0o640);
  expect(mode('0600')).toBe(0o600);
  expect(mode('0o640')).toBe(0o640);
  expect(mode('"0640"')).toBe(0o640);
  expect(mode("'0o600'")).toBe(0o600);
  expect(mode('0')).toBe(0);
  expect((loadConfigText('outputs: [{ name: f, type: file, path: ./f.ndjson }]\n', file, {}).outputs[0] as unknown as { mode: number }).mode).toBe(0o640);
  expect(loadConfigText('dead_letter: { mode: 0600 }\n', file, {}).dead_letter.mode).toBe(0o600);
  expect(loadConfigText('outputs: []\ndead_letter: { mode: "${MODE}" }\n', file, { MODE: '0440' }).dead_letter.mode).toBe(0o440);
  // %YAML 1.1 reads 0640 as octal itself: the same mode.
  expect((loadConfigText(`%YAML 1.1\n---\n${fileOutput('0640')}`, file, {}).outputs[0] as unknown as { mode: number }).mode).toBe(0o640);

  expect(problems(fileOutput('640'), file)).toEqual(['2: outputs[0].mode: a file mode is octal and needs its leading 0 (0640 or 0o640): as chmod writes it, 640 is 0640, got 640']);
  expect(problems(fileOutput('440'), file)).toEqual(['2: outputs[0].mode: a file mode is octal and needs its leading 0 (0640 or 0o640): as chmod writes it, 440 is 0440; read as a decimal number (as cefd did before 2026-12), 440 is 0670, got 440']);
  expect(problems(fileOutput('"640"'), file)).toEqual(['2: outputs[0].mode: a file mode is octal and needs its leading 0 (0640 or 0o640): as chmod writes it, 640 is 0640, got "640"']);
  // The decimal form earlier versions took (416 = 0o640): the message says which mode that was.
  expect(problems(fileOutput('416'), file)).toEqual(['2: outputs[0].mode: a file mode is octal and needs its leading 0 (0640 or 0o640): as chmod writes it, 416 is 0416; read as a decimal number (as cefd did before 2026-12), 416 is 0640, got 416']);
  expect(problems(fileOutput('384'), file)).toEqual(['2: outputs[0].mode: a file mode is octal and needs its leading 0 (0640 or 0o640): read as a decimal number (as cefd did before 2026-12), 384 is 0600, got 384']);
  expect(problems(fileOutput('0680'), file)).toEqual(['2: outputs[0].mode: expected an octal file mode such as 0640, got 0680']);
  expect(problems(fileOutput('01777'), file)).toEqual(['2: outputs[0].mode: must be at most 0777, got 01777']);
  expect(problems(fileOutput('rw-r-----'), file)).toEqual(['2: outputs[0].mode: expected an octal file mode such as 0640, got "rw-r-----"']);
});

test('${VAR-default}, ${VAR:?message} and ${VAR?message} work as in the shell; other ${...} forms are problems, not literal text', () => {
  const file = join(tempDir('cefd-values-'), 'cefd.yaml');
  const url = (u: string, env: Record<string, string>) => {
    const c = loadConfigText(`outputs: [{ name: h, type: http, url: "${u}" }]\n`, file, env);
    return (c.outputs[0] as unknown as { url: string }).url;
  };
  // Before: kept as written ("http://${SIEM_HOST-siem.example}:8080/in"), and validate said OK.
  expect(url('http://${SIEM_HOST-siem.example}:8080/in', {})).toBe('http://siem.example:8080/in');
  expect(url('http://${SIEM_HOST-siem.example}:8080/in', { SIEM_HOST: 'siem2' })).toBe('http://siem2:8080/in');
  expect(url('http://${SIEM_HOST:-siem.example}:8080/in', { SIEM_HOST: '' })).toBe('http://siem.example:8080/in');
  expect(url('http://${SIEM_HOST:?set SIEM_HOST}:8080/in', { SIEM_HOST: 'siem3' })).toBe('http://siem3:8080/in');
  expect(url('http://${SIEM_HOST?set it}x${SUFFIX?}:8080/in', { SIEM_HOST: 'siem4', SUFFIX: '' })).toBe('http://siem4x:8080/in');
  expect(url('http://siem/$${literal}/$HOME/$1', {})).toBe('http://siem/${literal}/$HOME/$1');
  expect(url('http://siem/$$${literal}', {})).toBe('http://siem/$${literal}');

  const bad = (u: string, env: Record<string, string> = {}) => problems(`outputs: [{ name: h, type: http, url: "${u}" }]\n`, file, env);
  expect(bad('http://${SIEM_HOST:?set it in /etc/default/cefd}/')).toEqual(['1: outputs[0].url: environment variable SIEM_HOST is not set: set it in /etc/default/cefd']);
  expect(bad('http://${SIEM_HOST:?set it}/', { SIEM_HOST: '' })).toEqual(['1: outputs[0].url: environment variable SIEM_HOST is empty: set it']);
  expect(bad('http://${SIEM_HOST?}/')).toEqual(['1: outputs[0].url: environment variable SIEM_HOST is not set']);
  const forms = 'write ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, ${VAR?message}, or $${ for a literal ${';
  expect(bad('http://${SIEM_HOST:+x}/')).toEqual([`1: outputs[0].url: interpolation \${SIEM_HOST:+x} is not a supported form: ${forms}`]);
  expect(bad('http://${SIEM_HOST/a/b}/')).toEqual([`1: outputs[0].url: interpolation \${SIEM_HOST/a/b} is not a supported form: ${forms}`]);
  expect(bad('http://${1}/')).toEqual([`1: outputs[0].url: interpolation \${1} is not a supported form: ${forms}`]);
  expect(bad('http://${A:-${B}}/')).toEqual([`1: outputs[0].url: interpolation \${A:-\${B} nests another \${...}, which is not supported: ${forms}`]);
  expect(bad('http://${SIEM_HOST')).toEqual([`1: outputs[0].url: interpolation \${SIEM_HOST has no closing }: ${forms}`]);
  // A `${` that starts no shell form is text: a filter for Log4Shell probes, a password.
  expect(url('http://siem/${jndi:ldap}/${ x}/${}/', {})).toBe('http://siem/${jndi:ldap}/${ x}/${}/');
  expect(loadConfigText('outputs: [{ name: h, type: http, url: "http://x/", filter: \'message contains "${jndi:ldap"\' }]\n', file, {}).outputs[0]!.filter).toBe('message contains "${jndi:ldap"');
  // A secret's problem does not quote what follows the variable's name.
  expect(problems('outputs: [{ name: h, type: http, url: "http://x/", bearer_token: "${TOKEN:+hunter2hunter2}" }]\n', file)).toEqual([
    `1: outputs[0].bearer_token: interpolation \${TOKEN... is not a supported form: ${forms}`,
  ]);
});

test('an unset or empty variable is one problem, not also a value of the wrong type', () => {
  const file = join(tempDir('cefd-values-'), 'cefd.yaml');
  // Before: a second line said "metrics.port: expected an integer, got \"\"".
  expect(problems('metrics: { port: "${MPORT}" }\n', file)).toEqual(['1: metrics.port: environment variable MPORT is not set']);
  expect(problems('metrics: { port: "${MPORT}" }\n', file, { MPORT: '' })).toEqual(['1: metrics.port: environment variable MPORT is empty']);
  expect(problems('shutdown_timeout: "${T}"\nlogging: { level: "${LEVEL}" }\n', file)).toEqual([
    '1: shutdown_timeout: environment variable T is not set',
    '2: logging.level: environment variable LEVEL is not set',
  ]);
  expect(problems('metrics: { port: "${MPORT:-9150}" }\n', file)).toEqual([]);
});

test('every *_file secret has the whitespace at its ends removed (a blank line after the token, a trailing space); a file of only whitespace is a problem', () => {
  const dir = tempDir('cefd-values-');
  const file = join(dir, 'cefd.yaml');
  const token = 'a'.repeat(40);
  // Before: only one trailing newline was dropped, and the token kept "\n" (every scrape got 401).
  writeFileSync(join(dir, 'tok2'), `${token}\n\n`);
  writeFileSync(join(dir, 'tok3'), `${token} \r\n`);
  writeFileSync(join(dir, 'pw'), `  s3cret-password\n\n`);
  const c = loadConfigText(
    'metrics: { bearer_token_file: tok2 }\nksc: { admin: { enabled: true, bearer_token_file: tok3 } }\noutputs: [{ name: ch, type: clickhouse, url: "http://127.0.0.1:8123/", table: t, user: u, password_file: pw }]\n',
    file,
    {},
  );
  expect(c.metrics.bearer_token).toBe(token);
  expect(c.ksc.admin.bearer_token).toBe(token);
  expect((c.outputs[0] as unknown as { password: string }).password).toBe('s3cret-password');
  writeFileSync(join(dir, 'blank'), ' \n\n');
  expect(problems('metrics: { bearer_token_file: blank }\n', file)).toEqual(['1: metrics.bearer_token_file: blank is empty (or holds only whitespace)']);
});

test('the NATS connection\'s credential, CA and client certificate files are checked by validate like other _file options, and read trimmed', async () => {
  const dir = tempDir('cefd-values-');
  const file = join(dir, 'cefd.yaml');
  mkdirSync(join(dir, 'a-folder'));
  // What `cefd validate` (and run, and a reload) checks: the loader, then the checks that read files.
  const validate = async (text: string): Promise<string[]> => {
    writeFileSync(file, text);
    try {
      await checkNormalizers(loadConfigText(text, file, {}), file);
    } catch (e) {
      if (e instanceof ConfigError) return e.problems.map((p) => `${p.line ?? '-'}: ${p.key}: ${p.message}`);
      throw e;
    }
    return [];
  };
  const nats = (extra: string) => `listeners:\n  - name: n\n    type: nats\n    servers: ["nats://127.0.0.1:4222"]\n    stream: S\n    consumer: C\n    ${extra}\n`;
  // Before: validate said OK; run warned "not connected: ENOENT" forever.
  expect(await validate(nats('token_file: /nonexistent/tok'))).toEqual(['7: listeners[0].token_file: cannot read /nonexistent/tok: ENOENT']);
  expect(await validate(nats('creds_file: ./a-folder'))).toEqual([`7: listeners[0].creds_file: cannot read ${join(dir, 'a-folder')}: not a regular file`]);
  expect(await validate(nats('user: u\n    password_file: missing-pw'))).toEqual([`8: listeners[0].password_file: cannot read ${join(dir, 'missing-pw')}: ENOENT`]);
  expect(await validate('outputs: [{ name: o, type: nats, servers: ["tls://127.0.0.1:4222"], subject: s, ca_file: ca.pem, cert_file: c.pem, key_file: k.pem, nkey_seed_file: seed }]\n')).toEqual([
    `1: outputs[0].nkey_seed_file: cannot read ${join(dir, 'seed')}: ENOENT`,
    `1: outputs[0].ca_file: cannot read ${join(dir, 'ca.pem')}: ENOENT`,
    `1: outputs[0].cert_file: cannot read ${join(dir, 'c.pem')}: ENOENT`,
    `1: outputs[0].key_file: cannot read ${join(dir, 'k.pem')}: ENOENT`,
  ]);
  writeFileSync(join(dir, 'tok'), '\n');
  expect(await validate(nats('token_file: tok'))).toEqual([`7: listeners[0].token_file: ${join(dir, 'tok')} is empty (or holds only whitespace)`]);
  writeFileSync(join(dir, 'tok'), 'nats-token \n\n');
  expect(await validate(nats('token_file: tok'))).toEqual([]);
  // The connection reads the file the same way (src/nats/connection.ts).
  const opts = natsOptions(loadConfigText(nats('token_file: tok'), file, {}).listeners[0] as unknown as NatsConnectionConfig, 'test');
  expect((opts.authenticator as (nonce?: string) => unknown)('')).toMatchObject({ auth_token: 'nats-token' });
});

test('filter: true and filter: false unquoted are the filters true and false', () => {
  const file = join(tempDir('cefd-values-'), 'cefd.yaml');
  // Before: "expected a filter expression (a string), got true".
  const c = loadConfigText('outputs:\n  - { name: a, type: stdout, filter: true }\n  - { name: b, type: stdout, filter: false }\n', file, {});
  expect(c.outputs.map((o) => o.filter)).toEqual(['true', 'false']);
  expect(problems('outputs:\n  - { name: a, type: stdout, filter: 7 }\n', file)).toEqual(['2: outputs[0].filter: expected a filter expression (a string), got 7']);
});

test('a filter\'s syntax error points at the line and column of the file, in >- and | blocks and in plain or quoted filters', () => {
  const file = join(tempDir('cefd-values-'), 'cefd.yaml');
  const seven = "expected a value (a \"string\", a number, true, false or null) after '>=', found 'seven' (quote text: \"...\")";
  const head = 'outputs:\n  - name: o\n    type: stdout\n';
  // Before: line 4 (the key's), "at column 59" of the folded text.
  expect(problems(`${head}    filter: >-\n      cef.deviceProduct == "SecurityCenter"\n      and cef.severity >= seven\n`, file)).toEqual([`6: outputs[0].filter: bad filter: ${seven} at column 27`]);
  expect(problems(`${head}    filter: |\n      cef.deviceProduct == "SecurityCenter"\n        and cef.severity >= seven\n`, file)).toEqual([`6: outputs[0].filter: bad filter: ${seven} at column 29`]);
  // Blank lines and a comment on the header line.
  expect(problems(`${head}    filter: >- # route\n\n      cef.deviceProduct == "SecurityCenter"\n\n      and cef.severity >= seven\n`, file)).toEqual([`8: outputs[0].filter: bad filter: ${seven} at column 27`]);
  // An explicit indentation indicator.
  expect(problems(`${head}    filter: >2-\n        a == 1\n      and b >= seven\n`, file)).toEqual([`6: outputs[0].filter: bad filter: ${seven.replace("'>='", "'>='")} at column 16`]);
  // A plain scalar over two lines, a quoted one.
  expect(problems(`${head}    filter: cef.deviceProduct == "SecurityCenter"\n      and cef.severity >= seven\n`, file)).toEqual([`5: outputs[0].filter: bad filter: ${seven} at column 27`]);
  expect(problems(`${head}    filter: 'cef.severity >= seven'\n`, file)).toEqual([`4: outputs[0].filter: bad filter: ${seven} at column 30`]);
  expect(problems(`outputs: [{ name: o, type: stdout, filter: 'a == 1 AND b == 2' }]\n`, file)).toEqual([
    "1: outputs[0].filter: bad filter: unexpected 'AND', expected 'and', 'or' or the end of the filter (keywords are lowercase: 'and') at column 52",
  ]);
  // The end of the text: after its last character.
  expect(problems(`${head}    filter: >-\n      a ==\n`, file)).toEqual([
    "5: outputs[0].filter: bad filter: expected a value (a \"string\", a number, true, false or null) after '==', found end of input at column 11",
  ]);
  // The '(' an expected ')' would close: at its place in the file too.
  expect(problems(`${head}    filter: >-\n      a == 1 and\n      (b == 2\n      c == 3)\n`, file)).toEqual([
    "7: outputs[0].filter: bad filter: expected ')' to close the '(' at line 6, column 7, found 'c' at column 7",
  ]);
  expect(problems(`${head}    filter: '(b == 2 c == 3)'\n`, file)).toEqual(["4: outputs[0].filter: bad filter: expected ')' to close the '(' at column 14, found 'c' at column 22"]);
  // An escape in a double-quoted filter: the position in the filter's text, said so.
  expect(problems(`${head}    filter: "cef.name == \\"x\\" and cef.severity >= seven"\n`, file)).toEqual([`4: outputs[0].filter: bad filter: ${seven} at column 37 of the filter's text`]);
});

test('"did you mean" names the nearest key, and an unknown type or enum value gets one too', () => {
  const file = join(tempDir('cefd-values-'), 'cefd.yaml');
  // Before: the first key within distance 2 (host) rather than the nearest (port).
  expect(problems('metrics: { posrt: 21002 }\n', file)).toEqual(['1: metrics.posrt: unknown key (did you mean port?)']);
  // Equally near (host and port are 2 from pots): the first in the schema's order.
  expect(problems('metrics: { pots: 21002 }\n', file)).toEqual(['1: metrics.pots: unknown key (did you mean host?)']);
  expect(problems('metrics: { zzzzzz: 1 }\n', file)).toEqual(['1: metrics.zzzzzz: unknown key']);
  const types = 'expected one of';
  const [t] = problems('outputs: [{ name: o, type: fiel, path: x }]\n', file);
  expect(t).toMatch(new RegExp(`^1: outputs\\[0\\]\\.type: ${types} file, .*, got "fiel" \\(did you mean file\\?\\)$`));
  const [l] = problems('listeners: [{ name: l, type: tpc }]\n', file);
  expect(l).toMatch(/^1: listeners\[0\]\.type: expected one of .*, got "tpc" \(did you mean tcp\?\)$/);
  expect(problems('logging: { level: wran }\n', file)).toEqual(['1: logging.level: expected one of trace, debug, info, warn, error, fatal, silent, got "wran" (did you mean warn?)']);
  expect(problems('logging: { level: INFO }\n', file)).toEqual(['1: logging.level: expected one of trace, debug, info, warn, error, fatal, silent, got "INFO" (did you mean info?)']);
});
