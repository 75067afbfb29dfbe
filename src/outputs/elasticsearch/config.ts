/** The `elasticsearch` output's options: the one place they are written (type inferred below). */
import { ENCODER_NAMES } from '../../codecs/encoders/registry.js';
import { enumOf, fields, list, obj, size, str, type ConfigOf } from '../../config/spec.js';
import { EXCEPT_FIELDS_DOC, ONLY_FIELDS_DOC } from '../plugin.js';
import { HTTP_TRANSPORT_FIELDS } from '../shared/http-transport.js';

// Elasticsearch takes an API key only as `Authorization: ApiKey <key>`: no header name to choose.
const { api_key_header: _unused, api_key: _apiKey, url: _url, ...TRANSPORT } = HTTP_TRANSPORT_FIELDS;

export const ELASTICSEARCH_FIELDS = fields({
  url: str('Base URL of the cluster (`https://es.example:9200`, or a proxy path ending in the cluster root); cefd POSTs to `<url>/_bulk`.', { required: true }),
  flavor: enumOf('`elasticsearch` (7.x, 8.x) or `opensearch` (1.x, 2.x): which error names mean "rejected for load" and whether API keys exist.', ['elasticsearch', 'opensearch'], 'elasticsearch'),
  index: str('Index to write to; `%Y`, `%m`, `%d`, `%H` are replaced by the event time (UTC) of each event (`cefd-%Y.%m.%d`). Set this or `data_stream`.'),
  data_stream: str('Data stream to write to (`logs-kaspersky.ksc-default`); the cluster needs a matching index template. Set this or `index`.'),
  pipeline: str('Ingest pipeline to run on every event (`?pipeline=`).'),
  max_request_bytes: size('Largest `_bulk` body before compression; a batch above it goes in several requests (the cluster refuses bodies above its `http.max_content_length`, 100mb by default, with 413: the batch is then split in halves).', '10MiB', 1024),
  ...TRANSPORT,
  api_key: str('Elasticsearch API key (the base64 `encoded` value of the create API key answer), sent as `Authorization: ApiKey <key>`; or api_key_file. Not with `flavor: opensearch`.', { secret: true }),
  encoding: obj('How events become the documents this output indexes (src/codecs/encoders); `ecs` by default. The records must be JSON objects (not `cef`).', {
    codec: enumOf('Encoder: `ecs` (Elastic Common Schema), `native` (cefd\'s event) or `kuma`.', ENCODER_NAMES, 'ecs'),
    only_fields: list(ONLY_FIELDS_DOC, str('dotted field path'), { default: [] }),
    except_fields: list(EXCEPT_FIELDS_DOC, str('dotted field path'), { default: [] }),
  }),
});

export type ElasticsearchConfig = ConfigOf<typeof ELASTICSEARCH_FIELDS>;
