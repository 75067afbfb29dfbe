/**
 * Exit codes of the commands (docs/cli.md), as a child process (dist/src/cli.js; `npm test`
 * builds it): a configuration the yaml library parses but cannot convert is a configuration
 * error (78, `file:line: ...`), not a crash with a stack trace (1); a bad value of a
 * `cefd parse` option is one of its usage errors (2).
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { CLI } from '../helpers/child.js';
import { tempDir } from '../helpers/temp.js';

function cefd(args: string[], cwd: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('validate and run: an unresolved alias or an alias bomb is a configuration error, exit 78, with the file (and line)', () => {
  const dir = tempDir();
  const file = join(dir, 'alias.yaml');
  writeFileSync(file, 'state_dir: *x\n');
  for (const cmd of ['validate', 'run']) {
    const r = cefd([cmd, '--config', file], dir);
    expect(r.status).toBe(78);
    expect(r.stderr).toContain(`${file}:1: YAML: an alias (*name) refers to no anchor (&name) set before it`);
    expect(r.stderr).not.toContain('    at ');
  }
  writeFileSync(file, 'x: &a [1]\ny: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nz: [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n');
  const r = cefd(['validate', '--config', file], dir);
  expect(r.status).toBe(78);
  expect(r.stderr).toBe(`${file}: YAML: aliases expand to too many values (more than 100; an alias bomb?)\n`);
});

test('parse: --max-frame-bytes 0 is a usage error of parse, exit 2', () => {
  const dir = tempDir();
  const input = join(dir, 'one.log');
  writeFileSync(input, '<14>1 2026-11-28T10:00:00.000Z h - - - - CEF:0|V|P|1|1|n|1|\n');
  const r = cefd(['parse', '--max-frame-bytes', '0', input], dir);
  expect(r.status).toBe(2);
  expect(r.stderr).toContain('--max-frame-bytes must be a positive integer, got 0');
  expect(r.stdout).toBe('');
});
