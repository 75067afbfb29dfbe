/** The `http` output's options: the one place they are written (type inferred below). */
import { enumOf, fields, type ConfigOf } from '../../config/spec.js';
import { HTTP_TRANSPORT_FIELDS } from '../shared/http-transport.js';

export const HTTP_FIELDS = fields({
  ...HTTP_TRANSPORT_FIELDS,
  format: enumOf('Body: `ndjson` (application/x-ndjson) or `json_array` (application/json).', ['ndjson', 'json_array'], 'ndjson'),
});

export type HttpConfig = ConfigOf<typeof HTTP_FIELDS>;
export type HttpFormat = HttpConfig['format'];
