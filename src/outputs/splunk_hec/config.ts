/** The `splunk_hec` output's options: the one place they are written (type inferred below). */
import { fields, pathSpec, size, str, type ConfigOf } from '../../config/spec.js';
import { HTTP_TRANSPORT_FIELDS } from '../shared/http-transport.js';

// HEC authenticates with `Authorization: Splunk <token>` only: the transport's other schemes are left out.
const {
  url: _url,
  bearer_token: _b,
  bearer_token_file: _bf,
  basic_auth_user: _u,
  basic_auth_password: _p,
  basic_auth_password_file: _pf,
  api_key: _k,
  api_key_file: _kf,
  api_key_header: _kh,
  ...TRANSPORT
} = HTTP_TRANSPORT_FIELDS;

export const SPLUNK_HEC_FIELDS = fields({
  url: str('Base URL of the HTTP Event Collector (`https://splunk.example:8088`); cefd POSTs to `<url>/services/collector/event`.', { required: true }),
  token: str('HEC token, sent as `Authorization: Splunk <token>`; or token_file.', { secret: true }),
  token_file: pathSpec('File holding the HEC token.'),
  sourcetype: str('`sourcetype` of every event.', { default: 'cefd' }),
  source: str('`source` of every event (default: none, HEC uses the token\'s).'),
  index: str('`index` of every event (default: none, HEC uses the token\'s default index).'),
  host: str('`host` of every event. Default: the event\'s own host (`syslog.hostname`, ECS `observer.hostname`, KUMA `DeviceHostName`), else none.'),
  channel: str('Sends `X-Splunk-Request-Channel` (a GUID): HEC requires one when the token has indexer acknowledgement on (cefd does not poll acknowledgements; see docs/outputs-splunk.md).'),
  max_request_bytes: size('Largest request body before compression; a batch above it goes in several requests (HEC refuses a body above its `max_content_length` with 413: the batch is then split in halves).', '1MiB', 1024),
  ...TRANSPORT,
});

export type SplunkHecConfig = ConfigOf<typeof SPLUNK_HEC_FIELDS>;
