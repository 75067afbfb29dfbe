/**
 * The README's generated tables stay in step with the code: the error and warning codes
 * (src/errors.ts) and the configuration options (src/config/schema.ts). Run with
 * UPDATE_DOCS=1 to rewrite them.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { expect, test } from 'vitest';
import { codesDoc, configDoc } from '../src/config/doc.js';
import { CODES } from '../src/errors.js';

const README = new URL('../README.md', import.meta.url);

function section(text: string, name: string): { start: number; end: number } {
  const begin = `<!-- BEGIN ${name} (generated: UPDATE_DOCS=1 npx vitest run test/docs.test.ts) -->\n`;
  const start = text.indexOf(begin);
  const end = text.indexOf(`<!-- END ${name} -->`);
  if (start === -1 || end === -1) throw new Error(`README.md has no ${name} section markers`);
  return { start: start + begin.length, end };
}

for (const [name, render] of [
  ['codes', codesDoc],
  ['config', configDoc],
] as const) {
  test(`README's ${name} table matches the code`, () => {
    let text = readFileSync(README, 'utf8');
    const { start, end } = section(text, name);
    if (process.env['UPDATE_DOCS'] === '1') {
      text = text.slice(0, start) + render() + text.slice(end);
      writeFileSync(README, text);
    }
    expect(readFileSync(README, 'utf8').slice(start, start + render().length)).toBe(render());
  });
}

test('every code is in the README', () => {
  const text = readFileSync(README, 'utf8');
  for (const code of Object.keys(CODES)) expect(text).toContain(`\`${code}\``);
});
