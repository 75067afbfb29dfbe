/** The `file` output plugin (registered in src/outputs/registry.ts). */
import { defineOutput } from '../plugin.js';
import { FILE_FIELDS } from './config.js';
import { FileOutput } from './file.js';

export const fileOutput = defineOutput({
  type: 'file',
  doc: 'NDJSON file with rotation.',
  fields: FILE_FIELDS,
  diskBuffer: true,
  // Node timers take at most 2^31-1 ms.
  check: (c) => (c.fsync_interval * 1000 > 2 ** 31 - 1 ? [{ key: 'fsync_interval', message: 'must be at most 24 days' }] : []),
  create: (c) => new FileOutput(c.name, c),
});
