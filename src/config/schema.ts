import { KSC_FIELDS } from '../ksc/config/schema.js';
import { SQL_SOURCES_SPEC } from '../sources/sql/config.js';
import { MODERN_TLS12_CIPHERS } from '../sources/tcp/tls-ciphers.js';

/**
 * The configuration schema: every option, described once. The loader (load.ts) validates
 * a YAML file against this table, `cefd config-doc` prints it as the option table
 * of docs/configuration.md, and test/docs.test.ts keeps the two in step. Keys are snake_case.
 */

export type Spec = ScalarSpec | ObjectSpec | ListSpec | VariantSpec | MapSpec;

export interface BaseSpec {
  /** One sentence for the option table (docs/configuration.md). */
  doc: string;
  /** Marks a secret: never logged, never printed (`validate` redacts it). */
  secret?: boolean;
}

export interface ScalarSpec extends BaseSpec {
  kind: 'string' | 'int' | 'number' | 'bool' | 'duration' | 'size' | 'enum' | 'cidr' | 'port' | 'zone' | 'path' | 'filter';
  default?: unknown;
  required?: boolean;
  /** For enum. */
  values?: readonly string[];
  /**
   * For paths: a file cefd writes (state, outputs) resolves against the working folder;
   * a file it reads (certificates, tokens, modules) against the config file's folder.
   */
  writes?: boolean;
  min?: number;
  max?: number;
}

export interface ObjectSpec extends BaseSpec {
  kind: 'object';
  fields: Record<string, Spec>;
}

export interface ListSpec extends BaseSpec {
  kind: 'list';
  item: Spec;
  default?: unknown[];
  /** A list of objects whose `name` field must be unique. */
  uniqueNames?: boolean;
}

/** Free-form `name: value` pairs (HTTP headers). */
export interface MapSpec extends BaseSpec {
  kind: 'map';
  value: ScalarSpec;
}

/** A list item (or object) selected by its `type` field. */
export interface VariantSpec extends BaseSpec {
  kind: 'variant';
  /** Fields every variant has. */
  common: Record<string, Spec>;
  variants: Record<string, { doc: string; fields: Record<string, Spec> }>;
}

const s = (doc: string, extra: Partial<ScalarSpec> = {}): ScalarSpec => ({ kind: 'string', doc, ...extra });
const int = (doc: string, def: number, min = 0, max = Number.MAX_SAFE_INTEGER): ScalarSpec => ({ kind: 'int', doc, default: def, min, max });
const bool = (doc: string, def: boolean): ScalarSpec => ({ kind: 'bool', doc, default: def });
const dur = (doc: string, def: string, min = 0): ScalarSpec => ({ kind: 'duration', doc, default: def, min });
const size = (doc: string, def: string, min = 1): ScalarSpec => ({ kind: 'size', doc, default: def, min });
const path = (doc: string, extra: Partial<ScalarSpec> = {}): ScalarSpec => ({ kind: 'path', doc, ...extra });

const TLS_SERVER: ObjectSpec = {
  kind: 'object',
  doc: 'TLS settings of a `tls` listener.',
  fields: {
    cert_file: path('PEM certificate (chain) the listener presents.', { required: true }),
    key_file: path('PEM private key of the certificate.', { required: true, secret: false }),
    key_passphrase: s('Passphrase of the private key, if it is encrypted.', { secret: true }),
    key_passphrase_file: path('File holding the key passphrase.'),
    ca_file: path('PEM CA bundle to verify client certificates against (needed for `client_auth: required` unless fingerprints are pinned).'),
    client_auth: { kind: 'enum', doc: 'Client certificates: `none`, `optional` (verified when presented) or `required`.', values: ['none', 'optional', 'required'], default: 'none' },
    client_fingerprints: {
      kind: 'list',
      doc: 'Allowed client certificate SHA-256 fingerprints (hex, colons optional). When set, a client must present one of these certificates (KSC presents a self-signed one); the CA check is then not needed.',
      item: s('SHA-256 fingerprint'),
      default: [],
    },
    allow_insecure_pinned_certificates: bool('Accept a pinned client certificate even when it has expired or its key is below today\'s minimums (RSA/DSA under 2048 bits, EC under P-256). Off: such a certificate is refused like any other. On: logged as a warning at start and for every such connection (see docs/security.md).', false),
    min_version: { kind: 'enum', doc: 'Lowest TLS version accepted.', values: ['TLSv1.2', 'TLSv1.3'], default: 'TLSv1.2' },
    ciphers: s('TLS 1.2 cipher suites (OpenSSL list syntax). The default allows only forward-secret AEAD suites (ECDHE with AES-GCM or ChaCha20-Poly1305); TLS 1.3 suites are not affected.', { default: MODERN_TLS12_CIPHERS }),
    handshake_timeout: dur('Time a client has to finish the TLS handshake.', '10s', 0.001),
  },
};

const LISTENER_COMMON: Record<string, Spec> = {
  name: s('Listener name (unique); recorded on every event as `listener` and used as a metric label.', { required: true }),
  host: s('Address to bind.', { default: '0.0.0.0' }),
  port: { kind: 'port', doc: 'Port to bind (0 picks a free one).', default: 5141 },
  allowed_cidrs: {
    kind: 'list',
    doc: 'Source networks allowed to send (IPv4/IPv6 CIDR or address). Empty: everyone. Others are closed at once (TCP) or ignored (UDP), and counted.',
    item: { kind: 'cidr', doc: 'CIDR' },
    default: [],
  },
  max_frame_bytes: size('Largest frame; longer LF frames are truncated (warning `frame_truncated`).', '64KiB', 16),
  normalizers: {
    kind: 'list',
    doc: 'Normalizers run on this listener\'s events, in order; the first that accepts an event wins. A name (`ksc`) or a path to a module (`./my.js`, relative to the config file).',
    item: s('normalizer name or module path'),
    default: ['ksc'],
  },
};

const STREAM_FIELDS: Record<string, Spec> = {
  max_connections: int('Most connections open at once. At the limit, a new connection takes the place of the oldest one that has not sent a complete frame yet (a slowloris connection); if there is none, the new one is closed at once. Both are counted.', 1000, 1),
  max_connections_per_source: int('Most connections open at once from one source address (0: no limit); further ones are closed at once and counted.', 100, 0),
  idle_timeout: dur('Close a connection that sent nothing for this long (0: never).', '0s'),
};

const RETRY: ObjectSpec = {
  kind: 'object',
  doc: 'Retry of a batch the output could not deliver for now (capped exponential backoff with jitter).',
  fields: {
    initial_backoff: dur('First wait after a failed attempt.', '100ms', 0.001),
    max_backoff: dur('Longest wait between attempts.', '30s', 0.001),
  },
};

const BUFFER: ObjectSpec = {
  kind: 'object',
  doc: 'The output\'s queue: on disk (events survive restarts and crashes) or in memory.',
  fields: {
    type: { kind: 'enum', doc: '`disk` (under `state_dir/buffers/<output>/`), `memory`, or `auto`: disk for every output but stdout.', values: ['auto', 'disk', 'memory'], default: 'auto' },
    max_size: size('Most bytes the disk buffer holds; when full, `when_full` applies.', '256MiB', 64 * 1024),
    fsync: { kind: 'enum', doc: 'When appends are fsynced: `interval` (every `fsync_interval`), `batch` (every append: slowest, survives power loss), `never` (the OS decides; survives a cefd crash, not a power loss).', values: ['interval', 'batch', 'never'], default: 'interval' },
    fsync_interval: dur('Period of `fsync: interval`.', '1s', 0.001),
  },
};

const OUTPUT_COMMON: Record<string, Spec> = {
  name: s('Output name (unique); used as a metric label.', { required: true }),
  filter: { kind: 'filter', doc: 'Route: only events that pass this filter go to this output (see "Filters"). Empty: every event.' },
  queue_max_events: int('Capacity of a memory queue (`buffer.type: memory`), in events. When the queue is full, reading from every socket pauses until it drains (`block`), or new events are dropped and counted (`drop_newest`).', 10000, 1),
  buffer: BUFFER,
  when_full: { kind: 'enum', doc: 'What a full queue does: `block` (pause the sockets) or `drop_newest` (drop and count).', values: ['block', 'drop_newest'], default: 'block' },
  batch_max_events: int('Most events sent in one batch.', 1000, 1),
  retry: RETRY,
};

const FILE_FIELDS: Record<string, Spec> = {
  path: path('File to append NDJSON to (parent folders are created).', { required: true, writes: true }),
  rotate_max_bytes: size('Rotate when the file would grow past this size (0: never).', '0', 0),
  rotate_interval: dur('Rotate when the current period of this length ends (0: never).', '0s'),
  max_files: int('Rotated files to keep (0: keep all).', 0),
  fsync: { kind: 'enum', doc: 'When to fsync: `never` (leave it to the OS), `batch` (after every batch), `interval`.', values: ['never', 'batch', 'interval'], default: 'never' },
  fsync_interval: dur('Period of `fsync: interval`.', '1s', 0.001),
  mode: { kind: 'int', doc: 'Permissions of a new file (octal in YAML: 0o640).', default: 0o640, min: 0, max: 0o777 },
};

export const SCHEMA: ObjectSpec = {
  kind: 'object',
  doc: 'cefd configuration',
  fields: {
    state_dir: path('Folder for state: disk buffers, the KSC store, secrets. Created if missing.', { default: './data', writes: true }),
    timezone: { kind: 'zone', doc: 'Zone of times that carry none (RFC 3164 timestamps, CEF text time stamps): an IANA name.', default: 'UTC' },
    include_raw: bool('Put each frame\'s text in the event as `raw`.', false),
    decode_workers: { kind: 'int', doc: 'Threads that decode, normalize and encode events (the reads of one connection are spread over them, and put back in order). -1: one per core when there are 2 or more cores, else 0; 0: decode on the main thread. While the KSC integration watches events (it has a connection or a response rule), events are decoded on the main thread.', default: -1, min: -1, max: 64 },
    shutdown_timeout: dur('On SIGTERM/SIGINT: longest wait for connections to finish and outputs to flush before exiting.', '10s', 0.001),
    listeners: {
      kind: 'list',
      doc: 'Where events come in.',
      uniqueNames: true,
      item: {
        kind: 'variant',
        doc: 'A listener.',
        common: LISTENER_COMMON,
        variants: {
          tcp: { doc: 'Syslog over TCP: LF or RFC 6587 octet-counted frames, detected per frame.', fields: { ...STREAM_FIELDS } },
          tls: { doc: 'Syslog over TLS (RFC 5425 framing or LF).', fields: { ...STREAM_FIELDS, tls: TLS_SERVER } },
          udp: { doc: 'Syslog over UDP: one message per datagram, or several LF-separated ones.', fields: { receive_buffer_bytes: size('SO_RCVBUF of the socket (0: the OS default).', '4MiB', 0) } },
        },
      },
      default: [
        { name: 'tcp', type: 'tcp' },
        { name: 'udp', type: 'udp' },
      ],
    },
    sql_sources: SQL_SOURCES_SPEC,
    outputs: {
      kind: 'list',
      doc: 'Where events go. Every event goes to every output whose filter it passes.',
      uniqueNames: true,
      item: {
        kind: 'variant',
        doc: 'An output.',
        common: OUTPUT_COMMON,
        variants: {
          file: { doc: 'NDJSON file with rotation.', fields: FILE_FIELDS },
          stdout: { doc: 'NDJSON on standard output.', fields: {} },
          http: {
            doc: 'HTTP POST of batches.',
            fields: {
              url: s('Endpoint (http:// or https://).', { required: true }),
              format: { kind: 'enum', doc: 'Body: `ndjson` (application/x-ndjson) or `json_array` (application/json).', values: ['ndjson', 'json_array'], default: 'ndjson' },
              headers: { kind: 'map', doc: 'Extra request headers (`name: value`; values may use ${ENV}).', value: s('header value') },
              bearer_token: s('Sends `Authorization: Bearer <token>`; use ${ENV} interpolation or bearer_token_file.', { secret: true }),
              bearer_token_file: path('File holding the bearer token.'),
              timeout: dur('Request timeout.', '30s', 0.001),
              ca_file: path('PEM CA bundle to verify an https server against (default: the system CAs).'),
              insecure_skip_verify: bool('Do not verify the server certificate (testing only).', false),
              compress: bool('gzip the request body.', false),
            },
          },
        },
      },
      default: [{ name: 'events', type: 'file', path: './data/events.ndjson' }],
    },
    dead_letter: {
      kind: 'object',
      doc: 'Where frames that did not become events, and batches an output rejected, go (NDJSON file).',
      fields: {
        path: path('Dead-letter file.', { default: './data/dead-letter.ndjson', writes: true }),
        queue_max_events: int('Capacity of the dead-letter queue with `buffer.type: memory` (full: sockets pause).', 10000, 1),
        buffer: BUFFER,
        rotate_max_bytes: FILE_FIELDS['rotate_max_bytes']!,
        rotate_interval: FILE_FIELDS['rotate_interval']!,
        max_files: FILE_FIELDS['max_files']!,
        fsync: FILE_FIELDS['fsync']!,
        fsync_interval: FILE_FIELDS['fsync_interval']!,
        mode: FILE_FIELDS['mode']!,
      },
    },
    metrics: {
      kind: 'object',
      doc: 'The HTTP endpoint for /metrics, /healthz and /readyz.',
      fields: {
        enabled: bool('Serve the endpoint.', true),
        host: s('Address to bind (loopback by default).', { default: '127.0.0.1' }),
        port: { kind: 'port', doc: 'Port to bind.', default: 9141 },
        bearer_token: s('When set, requests need `Authorization: Bearer <token>`.', { secret: true }),
        bearer_token_file: path('File holding the bearer token.'),
      },
    },
    logging: {
      kind: 'object',
      doc: 'Log output (pino JSON on stdout).',
      fields: {
        level: { kind: 'enum', doc: 'Lowest level logged.', values: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'], default: 'info' },
        repeat_interval: dur('A repeated error or warning (same code) is logged at most once per this interval, with a count of the ones held back.', '10s', 0),
      },
    },
    ...KSC_FIELDS,
  },
};
