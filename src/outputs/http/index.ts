/** The `http` output plugin (registered in src/outputs/registry.ts). */
import { defineOutput } from '../plugin.js';
import { checkHttpTransport } from '../shared/http-transport.js';
import { HTTP_FIELDS } from './config.js';
import { HttpOutput } from './http.js';

export const httpOutput = defineOutput({
  type: 'http',
  doc: 'HTTP POST of batches.',
  fields: HTTP_FIELDS,
  diskBuffer: true,
  check: checkHttpTransport,
  create: (c) => new HttpOutput(c.name, c),
});
