/** The `splunk_hec` output plugin (registered in src/outputs/registry.ts). */
import type { FieldProblem } from '../../config/spec.js';
import { defineOutput } from '../plugin.js';
import { checkHttpTransport } from '../shared/http-transport.js';
import { SPLUNK_HEC_FIELDS, type SplunkHecConfig } from './config.js';
import { SplunkHecOutput } from './splunk-hec.js';

function check(c: SplunkHecConfig): FieldProblem[] {
  const out = checkHttpTransport({ ...c, api_key_header: 'X-API-Key' });
  if (c.token === undefined || c.token.trim() === '') out.push({ key: 'token', message: 'is required (or token_file)' });
  if (c.channel !== undefined && !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(c.channel)) out.push({ key: 'channel', message: 'must be a GUID (8-4-4-4-12 hex digits)' });
  return out;
}

export const splunkHecOutput = defineOutput({
  type: 'splunk_hec',
  doc: 'Splunk HTTP Event Collector (`/services/collector/event`, token auth).',
  fields: SPLUNK_HEC_FIELDS,
  diskBuffer: true,
  check,
  create: (c) => new SplunkHecOutput(c.name, c),
});
