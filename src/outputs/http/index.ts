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
  check: (c) => {
    const out = checkHttpTransport(c);
    // A JSON array of CEF lines would not be JSON: the records are spliced in as they are.
    if (c.format === 'json_array' && c.encoding.codec === 'cef') out.push({ key: 'format', message: 'json_array needs JSON records: use encoding native, ecs or kuma, or format ndjson' });
    return out;
  },
  create: (c) => new HttpOutput(c.name, c),
});
