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
import { natsFileProblems, type NatsConnectionConfig } from '../nats/config.js';

/**
 * The checks that need I/O: every TLS listener's files load and match, every NATS
 * connection's credential and PEM files read, every normalizer named in the config loads,
 * every SQL source's driver is installed. Run by both `cefd validate` and `cefd run` (and
 * a reload). Throws ConfigError.
 */
export async function checkNormalizers(c: Config, file: string | undefined): Promise<void> {
  // TLS certificate, key and CA files: read, parsed and matched as the listener will.
  const problems: ConfigProblem[] = tlsProblems(c);
  // NATS listeners' and outputs' credential, CA and client certificate files.
  for (const [i, l] of c.listeners.entries()) if (l.type === 'nats') for (const p of natsFileProblems(l as unknown as NatsConnectionConfig)) problems.push({ key: `listeners[${i}].${p.key}`, message: p.message });
  for (const [i, o] of c.outputs.entries()) if (o.type === 'nats') for (const p of natsFileProblems(o as unknown as NatsConnectionConfig)) problems.push({ key: `outputs[${i}].${p.key}`, message: p.message });
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
