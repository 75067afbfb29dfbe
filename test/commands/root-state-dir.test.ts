/**
 * CLI commands run as root (`sudo cefd ksc ...`, `sudo cefd console set-password`) on the
 * service's state folder: what they create there belongs to the folder's owner afterwards,
 * or the daemon, running as that user, could not open its own store, secrets and password
 * file (src/state-dir.ts giveStateDirsToOwner). CI runs as root; the folder is given to
 * `nobody` (65534) as the package gives /var/lib/cefd to `cefd`.
 */
import { chownSync, lstatSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { runCli } from '../helpers/ksc-daemon.js';
import { tempDir } from '../helpers/daemon.js';

const NOBODY = 65534;
let dir: string | undefined;
afterEach(() => {
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

/** Every entry under `d` with its owner's uid. */
function owners(d: string): [string, number][] {
  const out: [string, number][] = [];
  for (const n of readdirSync(d)) {
    const p = join(d, n);
    const st = lstatSync(p);
    out.push([n, st.uid]);
    if (st.isDirectory()) for (const [c, u] of owners(p)) out.push([`${n}/${c}`, u]);
  }
  return out;
}

test('run as root on a state folder another user owns: the KSC store, its secrets and the console password file go to that user', async () => {
  dir = tempDir();
  const state = join(dir, 'state');
  mkdirSync(state, { mode: 0o700 });
  chownSync(state, NOBODY, NOBODY);
  const pin = Array.from({ length: 32 }, () => 'AB').join(':');
  const add = await runCli(['ksc', 'connections', 'add', '--state-dir', state, '--name', 'main', '--url', 'ksc.invalid:13299', '--pin', pin, '--user', 'kuma', '--password-stdin'], { input: 'S3cret-KSC-pass!w0rd\n' });
  expect(add.code, add.stderr).toBe(0);
  const pw = await runCli(['console', 'set-password', '--state-dir', state], { input: 'a-long-console-password-123\n' });
  expect(pw.code, pw.stderr).toBe(0);
  const files = owners(state);
  expect(files.map(([n]) => n)).toEqual(expect.arrayContaining(['ksc.sqlite', 'ksc-secrets.json', 'console-password']));
  expect(files.filter(([, uid]) => uid !== NOBODY)).toEqual([]);
});
