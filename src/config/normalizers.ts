/**
 * The config check that needs I/O and the normalizer runtime, kept out of load.ts so that
 * loading a config stays light.
 */
import { ConfigError, withLines, type ConfigProblem } from './load.js';
import type { Config } from './types.js';
import { ChainLoadError, loadChain } from '../pipeline/normalize.js';
import { tlsProblems } from '../sources/tcp/tls-material.js';
import { driverMissing } from '../sources/sql/drivers.js';
import { parseDbUrl } from '../sources/sql/url.js';

/**
 * The checks that need I/O: every TLS listener's files load and match, every normalizer
 * named in the config loads, every SQL source's driver is installed. Run by both
 * `cefd validate` and `cefd run`. Throws ConfigError.
 */
export async function checkNormalizers(c: Config, file: string | undefined): Promise<void> {
  // TLS certificate, key and CA files: read, parsed and matched as the listener will.
  const problems: ConfigProblem[] = tlsProblems(c);
  // The one chain loader the daemon and the decode workers use (normalize.ts).
  const chain = async (normalizers: readonly string[], key: string): Promise<void> => {
    try {
      await loadChain(normalizers, c.base_dir);
    } catch (e) {
      const failures = e instanceof ChainLoadError ? e.failures : [{ index: 0, message: (e as Error).message }];
      for (const f of failures) problems.push({ key: `${key}.normalizers[${f.index}]`, message: f.message });
    }
  };
  for (const [i, l] of c.listeners.entries()) await chain(l.normalizers, `listeners[${i}]`);
  // SQL sources: their normalizers load and their database driver is installed.
  for (const [i, q] of c.sql_sources.entries()) {
    await chain(q.normalizers, `sql_sources[${i}]`);
    const missing = await driverMissing(parseDbUrl(q.url).driver);
    if (missing !== null) problems.push({ key: `sql_sources[${i}].url`, message: missing });
  }
  if (problems.length > 0) throw new ConfigError(withLines(problems, file), file);
}
