/** `cefd --version` and the build-info metric name the version in package.json. */
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { afterEach, expect, test } from 'vitest';
import { CLI } from '../helpers/child.js';
import { scrape, startDaemon, type TestDaemon } from '../helpers/daemon.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
let d: TestDaemon | undefined;

afterEach(async () => {
  if (d !== undefined) {
    await d.stop();
    rmSync(d.dir, { recursive: true, force: true });
    d = undefined;
  }
});

test('cefd --version prints the package version', () => {
  const out = execFileSync(process.execPath, [CLI, '--version'], { encoding: 'utf8' });
  expect(out.trim()).toBe(pkg.version);
});

test('cefd_build_info{version, node_version} is 1', async () => {
  d = await startDaemon(`
state_dir: '{dir}'
listeners: [{ name: tcp, type: tcp, host: 127.0.0.1, port: 0 }]
outputs: [{ name: out, type: file, path: '{dir}/out.ndjson' }]
dead_letter: { path: '{dir}/dl.ndjson' }
metrics: { host: 127.0.0.1, port: 0 }
`);
  const m = await scrape(d.metricsPort());
  expect(m.get(`cefd_build_info{version="${pkg.version}",node_version="${process.versions.node}"}`)).toBe(1);
});
