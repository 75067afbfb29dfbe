/** The extensions a configuration asks for. */
import type { Config } from '../config/types.js';
import type { DaemonExtension } from './extension.js';
import { KscExtension } from '../ksc/extension.js';

/**
 * The KSC integration is always created: it does nothing while `ksc.enabled` is false, so a
 * reload can switch it on or off.
 */
export async function createExtensions(config: Config): Promise<DaemonExtension[]> {
  return [new KscExtension(config)];
}
