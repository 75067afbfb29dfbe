/**
 * The output registry is the one list of output types: the schema's `outputs[]` variants,
 * the generated docs and the plugin checks come from it; docs/adding-an-output.md's example
 * validates.
 */
import { readFileSync } from 'node:fs';
import { expect, test } from 'vitest';
import { loadConfigText } from '../../src/config/load.js';
import { SCHEMA, type ListSpec, type VariantSpec } from '../../src/config/schema.js';
import { configDoc } from '../../src/config/doc.js';
import { OUTPUT_PLUGINS } from '../../src/outputs/registry.js';
import { createOutput } from '../../src/outputs/index.js';

const outputsVariant = () => ((SCHEMA.fields['outputs'] as ListSpec).item as VariantSpec);

test('the schema has one outputs[] variant per registered plugin, with its fields', () => {
  const v = outputsVariant();
  expect(Object.keys(v.variants)).toEqual(OUTPUT_PLUGINS.map((p) => p.type));
  for (const p of OUTPUT_PLUGINS) expect(v.variants[p.type]!.fields).toBe(p.fields);
  const doc = configDoc();
  for (const p of OUTPUT_PLUGINS) {
    for (const f of Object.keys(p.fields)) expect(doc).toContain(`| \`outputs[type=${p.type}].${f}\``);
  }
});

test('the example in docs/adding-an-output.md validates and builds its output', () => {
  const md = readFileSync(new URL('../../docs/adding-an-output.md', import.meta.url), 'utf8');
  const yaml = /## Example[\s\S]*?```yaml\n([\s\S]*?)```/.exec(md)?.[1];
  expect(yaml).toBeDefined();
  const c = loadConfigText(yaml!, 'example.yaml', {});
  const o = c.outputs[0]!;
  expect(o.type).toBe('http');
  expect(o.encoding).toEqual({ codec: 'native', only_fields: [], except_fields: ['raw'] });
  expect(o.buffer.max_size).toBe(1024 ** 3);
  expect(o.retry.max_backoff).toBe(60);
  if (o.type !== 'http') throw new Error('not http');
  expect(o.compress).toBe(true);
  expect(o.timeout).toBe(10);
  expect(o.max_retry_after).toBe(300);
  expect(createOutput(o).type).toBe('http');
});

test('plugin checks run at load and name the file and the output\'s key', () => {
  const bad = (text: string) => {
    try {
      loadConfigText(text, 'c.yaml', {});
    } catch (e) {
      return (e as Error).message;
    }
    return 'no error';
  };
  expect(bad('outputs:\n  - { name: h, type: http, url: "ftp://x/" }\n')).toMatch(/c\.yaml:2: outputs\[0\]\.url: expected an http:\/\/ or https:\/\/ URL/);
  expect(bad('outputs:\n  - { name: h, type: http, url: "https://x/", cert_file: /c.pem }\n')).toMatch(/outputs\[0\]\.key_file: cert_file and key_file go together/);
  expect(bad('outputs:\n  - { name: h, type: http, url: "https://x/", bearer_token: abcd, basic_auth_user: u, basic_auth_password: p }\n')).toMatch(/outputs\[0\]\.bearer_token: set either bearer_token or basic_auth_user/);
  expect(bad('outputs:\n  - { name: h, type: http, url: "https://x/", basic_auth_user: u }\n')).toMatch(/outputs\[0\]\.basic_auth_password: basic_auth_user and basic_auth_password go together/);
  expect(bad('outputs:\n  - { name: s, type: stdout, buffer: { type: disk } }\n')).toMatch(/outputs\[0\]\.buffer\.type: a stdout output cannot have a disk buffer/);
  expect(bad('outputs:\n  - { name: f, type: file, path: /tmp/x, fsync_interval: 30d }\n')).toMatch(/outputs\[0\]\.fsync_interval: must be at most 24 days/);
  expect(bad('outputs:\n  - { name: f, type: file, path: /tmp/x, encoding: { codec: ecs9 } }\n')).toMatch(/outputs\[0\]\.encoding\.codec: expected one of native/);
  expect(bad('outputs:\n  - { name: f, type: nope }\n')).toMatch(/outputs\[0\]\.type: expected one of file, stdout, http/);
});
