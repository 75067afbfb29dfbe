/**
 * The example configurations of docs/outputs-elasticsearch.md and docs/outputs-splunk.md
 * pass `cefd validate` (the CLI, the same code as `run`), with their secret and CA files
 * beside the configuration as the pages say.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect, test } from 'vitest';
import { CLI } from '../helpers/child.js';
import { makePki } from '../helpers/pki.js';
import { tempDir } from '../helpers/temp.js';

const run = promisify(execFile);

function example(page: string): string {
  const md = readFileSync(new URL(`../../docs/${page}`, import.meta.url), 'utf8');
  const yaml = /## Example\s+```yaml\n([\s\S]*?)```/.exec(md)?.[1];
  if (yaml === undefined) throw new Error(`${page}: no example`);
  return yaml;
}

async function validate(yaml: string, files: Record<string, string>): Promise<{ code: number; out: string }> {
  const dir = tempDir();
  const pki = makePki();
  for (const [name, content] of Object.entries(files)) {
    if (content === 'CA') copyFileSync(pki.caCert, join(dir, name));
    else writeFileSync(join(dir, name), content);
  }
  writeFileSync(join(dir, 'cefd.yaml'), yaml);
  try {
    const r = await run(process.execPath, [CLI, 'validate', '-c', join(dir, 'cefd.yaml'), '--print'], { cwd: dir });
    return { code: 0, out: r.stdout + r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, out: err.stdout + err.stderr };
  }
}

test('docs/outputs-elasticsearch.md: the example validates (secret redacted); without its key file it does not', async () => {
  const yaml = example('outputs-elasticsearch.md');
  const ok = await validate(yaml, { 'es-api-key': 'VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==\n', 'es-ca.pem': 'CA' });
  expect(ok.out).not.toContain('VnVhQ2ZHY0JDZGJr');
  expect(ok.code).toBe(0);
  expect(ok.out).toContain('elasticsearch');
  const missing = await validate(yaml, { 'es-ca.pem': 'CA' });
  expect(missing.code).toBe(78);
  expect(missing.out).toContain('api_key_file');
});

test('docs/outputs-splunk.md: the example validates (token redacted)', async () => {
  const ok = await validate(example('outputs-splunk.md'), { 'hec-token': '5f1c0b4e-8a2d-4c7e-9b1f-0e2d3c4b5a69\n', 'splunk-ca.pem': 'CA' });
  expect(ok.code).toBe(0);
  expect(ok.out).toContain('splunk_hec');
  expect(ok.out).not.toContain('5f1c0b4e-8a2d');
});
