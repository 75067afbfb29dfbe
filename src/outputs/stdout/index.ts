/** The `stdout` output plugin (registered in src/outputs/registry.ts). */
import { fields } from '../../config/spec.js';
import { defineOutput } from '../plugin.js';
import { StdoutOutput } from './stdout.js';

export const stdoutOutput = defineOutput({
  type: 'stdout',
  doc: 'NDJSON on standard output.',
  fields: fields({}),
  // A disk buffer for a terminal stream would replay stale lines into the next run.
  diskBuffer: false,
  check: (c) => (c.buffer.type === 'disk' ? [{ key: 'buffer.type', message: 'a stdout output cannot have a disk buffer' }] : []),
  create: (c) => new StdoutOutput(c.name),
});
