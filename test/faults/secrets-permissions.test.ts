/**
 * Secrets and permissions, black-box: `cefd validate` and `cefd run` as child processes,
 * modes read from the files they leave. A URL's userinfo and token-like query values never
 * reach `validate --print` or an error; state_dir is 0700 and its files 0600 whoever
 * creates them, an existing wider tree is tightened with a warning; a metrics port that a
 * listener binds too is a configuration error (78), not a failed start.
 */
import { chmodSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { tempDir, waitFor } from '../helpers/daemon.js';
import { freePort, runCefd, runCli, type ChildDaemon } from '../helpers/child.js';

const dirs: string[] = [];
const children: ChildDaemon[] = [];
afterEach(async () => {
  for (const c of children.splice(0)) {
    c.proc.kill('SIGKILL');
    await c.exit;
  }
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function dir(): string {
  const d = tempDir();
  dirs.push(d);
  return d;
}


const mode = (p: string): number => statSync(p).mode & 0o777;

function filesUnder(d: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(d, { withFileTypes: true })) {
    const p = join(d, e.name);
    if (e.isDirectory()) out.push(p, ...filesUnder(p));
    else out.push(p);
  }
  return out;
}

describe('secrets', () => {
  test('validate --print redacts URL userinfo and token-like query parameters', async () => {
    const d = dir();
    writeFileSync(
      join(d, 'cefd.yaml'),
      `outputs:\n  - { name: siem, type: http, url: "https://ingest:S3cretPassw0rd@siem.example:8443/bulk?api_key=K3yK3yK3y&index=cef&token=T0kenT0ken" }\n`,
    );
    const r = await runCli(['validate', '--config', 'cefd.yaml', '--print'], d);
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain('S3cretPassw0rd');
    expect(r.stdout).not.toContain('K3yK3yK3y');
    expect(r.stdout).not.toContain('T0kenT0ken');
    expect(r.stdout).not.toContain('ingest:');
    // What is not secret stays readable.
    expect(r.stdout).toContain('https://(redacted)@siem.example:8443/bulk?api_key=(redacted)&index=cef&token=(redacted)');
  });

  test('a configuration error about a URL does not show its password', async () => {
    const d = dir();
    writeFileSync(join(d, 'cefd.yaml'), `outputs:\n  - { name: siem, type: http, url: "ftp://ingest:S3cretPassw0rd@siem.example/x" }\n`);
    const r = await runCli(['validate', '--config', 'cefd.yaml'], d);
    expect(r.code).toBe(78);
    expect(r.stderr).toContain('outputs[0].url');
    expect(r.stderr).not.toContain('S3cretPassw0rd');
  });

  test('a metrics port that a listener binds too: validate exits 78 and its error list ends with a newline', async () => {
    const d = dir();
    const port = await freePort();
    writeFileSync(
      join(d, 'cefd.yaml'),
      `listeners: [ { name: tcp, type: tcp, host: 127.0.0.1, port: ${port} } ]\nmetrics: { host: 127.0.0.1, port: ${port} }\n`,
    );
    const r = await runCli(['validate', '--config', 'cefd.yaml'], d);
    expect(r.code).toBe(78);
    expect(r.stderr).toContain(`metrics.port: port ${port} of the metrics endpoint is also bound by listener tcp`);
    expect(r.stderr.endsWith('\n')).toBe(true);
    // run refuses it the same way (78: systemd does not restart it in a loop).
    const run = await runCli(['run', '--config', 'cefd.yaml'], d);
    expect(run.code).toBe(78);
  });
});

describe('permissions', () => {
  function config(port: number, metrics: number): string {
    return `state_dir: ./state
listeners: [ { name: tcp, type: tcp, host: 127.0.0.1, port: ${port} } ]
outputs: [ { name: out, type: file, path: ./events.ndjson } ]
dead_letter: { path: ./dead.ndjson }
metrics: { host: 127.0.0.1, port: ${metrics} }
`;
  }

  test('the daemon creates state_dir 0700, the KSC store and disk buffers 0600', async () => {
    const d = dir();
    const c = runCefd(d, config(await freePort(), await freePort()));
    children.push(c);
    await c.until('cefd started');
    const state = join(d, 'state');
    await waitFor(() => filesUnder(state).some((p) => p.endsWith('ksc.sqlite')), 30_000, 'the KSC store');
    c.proc.kill('SIGTERM');
    expect(await c.exit).toBe(0);
    expect(mode(state)).toBe(0o700);
    const all = filesUnder(state);
    expect(all.filter((p) => p.includes('buffers')).length).toBeGreaterThan(2);
    for (const p of all) {
      if (statSync(p).isDirectory()) expect([p, mode(p)]).toEqual([p, 0o700]);
      else expect([p, mode(p)]).toEqual([p, 0o600]);
    }
  });

  test('an existing state_dir readable by others is tightened at start, with a warning', async () => {
    const d = dir();
    const state = join(d, 'state');
    mkdirSync(join(state, 'buffers', 'out'), { recursive: true });
    chmodSync(state, 0o755);
    chmodSync(join(state, 'buffers'), 0o755);
    writeFileSync(join(state, 'ksc.sqlite'), '');
    chmodSync(join(state, 'ksc.sqlite'), 0o644);
    writeFileSync(join(state, 'ksc-secrets.json'), '{}');
    chmodSync(join(state, 'ksc-secrets.json'), 0o666);
    const c = runCefd(d, config(await freePort(), await freePort()));
    children.push(c);
    await c.until('cefd started');
    c.proc.kill('SIGTERM');
    expect(await c.exit).toBe(0);
    expect(mode(state)).toBe(0o700);
    expect(mode(join(state, 'buffers'))).toBe(0o700);
    expect(mode(join(state, 'ksc.sqlite'))).toBe(0o600);
    expect(mode(join(state, 'ksc-secrets.json'))).toBe(0o600);
    expect(c.text()).toContain(`${join(state, 'ksc.sqlite')} was readable by other users (mode 644); tightened to 600`);
  });

  test('the CLI creates the KSC store 0600 in a 0700 state_dir', async () => {
    const d = dir();
    const r = await runCli(['ksc', 'connections', 'list', '--state-dir', './st'], d);
    expect(r.code).toBe(0);
    expect(mode(join(d, 'st'))).toBe(0o700);
    expect(mode(join(d, 'st', 'ksc.sqlite'))).toBe(0o600);
  });
});
