/** The `elasticsearch` output plugin (registered in src/outputs/registry.ts). */
import type { FieldProblem } from '../../config/spec.js';
import { dropsField, RECORD_FIELDS } from '../../codecs/encoders/registry.js';
import { defineOutput } from '../plugin.js';
import { checkHttpTransport } from '../shared/http-transport.js';
import { ELASTICSEARCH_FIELDS, type ElasticsearchConfig } from './config.js';
import { ElasticsearchOutput, indexName } from './elasticsearch.js';

function check(c: ElasticsearchConfig): FieldProblem[] {
  const out = checkHttpTransport({ ...c, api_key_header: 'X-API-Key' });
  if ((c.index === undefined) === (c.data_stream === undefined)) out.push({ key: 'index', message: 'set either index or data_stream (one of them)' });
  if (c.data_stream !== undefined && c.data_stream.includes('%')) out.push({ key: 'data_stream', message: 'a data stream name has no date pattern (the data stream rolls over by itself)' });
  const raw = c.data_stream ?? c.index;
  const name = raw === undefined ? undefined : indexName(raw, 0);
  if (name !== undefined && (name !== name.toLowerCase() || /[\\/*?"<>| ,#]/.test(name) || /^[-_+]/.test(name))) {
    out.push({ key: c.data_stream !== undefined ? 'data_stream' : 'index', message: 'must be lower case, not start with - _ +, and hold none of \\ / * ? " < > | , # or spaces' });
  }
  if (c.encoding.codec === 'cef') out.push({ key: 'encoding.codec', message: 'documents must be JSON objects: use ecs, native or kuma' });
  if (c.data_stream !== undefined && c.encoding.codec !== 'ecs') out.push({ key: 'encoding.codec', message: 'data streams need @timestamp in every document: use ecs' });
  // The id and time are read from the record (src/outputs/shared/record-meta.ts), and the
  // field options trim the record: their paths are the encoding's (`event.id` in ECS).
  const at = RECORD_FIELDS[c.encoding.codec];
  // The event's id becomes `_id`: an encoding that drops it loses exactly-once delivery.
  if (at !== undefined && dropsField(c.encoding, at.id)) {
    out.push({ key: 'encoding', message: `keep the event's id, \`${at.id}\` in ${c.encoding.codec} (add it to only_fields, or remove it from except_fields): it is the document _id that makes retries write each event once` });
  }
  // The event's time is the document's @timestamp (every data stream document needs one)
  // and dates the index name: a replay without it lands in the index of the day it is
  // sent, where its 409 is not found, and the event is written twice.
  if (at !== undefined && dropsField(c.encoding, at.time) && (c.data_stream !== undefined || (c.index ?? '').includes('%'))) {
    out.push({ key: 'encoding', message: `keep the event's time, \`${at.time}\` in ${c.encoding.codec} (add it to only_fields, or remove it from except_fields): ${c.data_stream !== undefined ? 'a data stream refuses a document without @timestamp' : 'it dates the index name, so a retry finds the first copy'}` });
  }
  if (c.api_key !== undefined && c.flavor === 'opensearch') out.push({ key: 'api_key', message: 'OpenSearch has no API keys: use basic_auth_user or bearer_token' });
  if (c.api_key !== undefined && (c.bearer_token !== undefined || c.basic_auth_user !== undefined)) out.push({ key: 'api_key', message: 'set one of api_key, bearer_token, basic_auth_user (all use the Authorization header)' });
  return out;
}

export const elasticsearchOutput = defineOutput({
  type: 'elasticsearch',
  doc: 'Elasticsearch or OpenSearch `_bulk` (create by event id: retries never duplicate).',
  fields: ELASTICSEARCH_FIELDS,
  diskBuffer: true,
  check,
  create: (c) => new ElasticsearchOutput(c.name, c),
});
