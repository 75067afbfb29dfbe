/** The example of docs/outputs-syslog.md passes `cefd validate` (the CLI, the same code as run). */
import { expect, test } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { CLI } from '../helpers/child.js';
import { makePki } from '../helpers/pki.js';
import { tempDir } from '../helpers/temp.js';

test('the example in docs/outputs-syslog.md validates, with its files present and a real pin', () => {
  const md = readFileSync(new URL('../../docs/outputs-syslog.md', import.meta.url), 'utf8');
  const yaml = /## Example[\s\S]*?```yaml\n([\s\S]*?)```/.exec(md)?.[1];
  expect(yaml).toBeDefined();
  const dir = tempDir();
  const pki = makePki();
  writeFileSync(join(dir, 'kuma-ca.pem'), readFileSync(pki.caCert));
  writeFileSync(join(dir, 'cefd-client.pem'), pki.clientCert);
  writeFileSync(join(dir, 'cefd-client.key'), pki.clientKey);
  const fp = new X509Certificate(readFileSync(pki.serverCert)).fingerprint256;
  const text = `state_dir: ${join(dir, 'state')}\n${yaml!.replaceAll('/etc/cefd/', `${dir}/`).replace('3A:9F:...:01', fp)}`;
  const file = join(dir, 'cefd.yaml');
  writeFileSync(file, text);
  const r = spawnSync(process.execPath, [CLI, 'validate', '--config', file, '--print'], { encoding: 'utf8' });
  expect(r.stderr + r.stdout).not.toMatch(/error/i);
  expect(r.status).toBe(0);
  // The effective configuration has the syslog output with cef as its encoding.
  const printed = JSON.parse(r.stdout.slice(0, r.stdout.lastIndexOf('\n}') + 2)) as { outputs: { type: string; transport: string; encoding: { codec: string }; pin_sha256: string[] }[] };
  expect(printed.outputs[0]).toMatchObject({ type: 'syslog', transport: 'tls', encoding: { codec: 'cef' }, pin_sha256: [fp] });
  // A broken pin is refused with the file and the key.
  writeFileSync(file, text.replace(fp, 'not-a-pin'));
  const bad = spawnSync(process.execPath, [CLI, 'validate', '--config', file], { encoding: 'utf8' });
  expect(bad.status).toBe(78);
  expect(bad.stderr + bad.stdout).toMatch(/cefd\.yaml.*outputs\[0\]\.pin_sha256: not a SHA-256 fingerprint/);
});
