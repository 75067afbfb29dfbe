/** The extensions a configuration asks for. */
import type { Config } from './config/types.js';
import type { DaemonExtension } from './extension.js';

export async function createExtensions(config: Config): Promise<DaemonExtension[]> {
  void config;
  return [];
}
