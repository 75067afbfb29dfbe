import { BUFFER, OUTPUT_COMMON } from '../outputs/plugin.js';
import { OUTPUT_PLUGINS } from '../outputs/registry.js';
import { FILE_FIELDS } from '../outputs/file/config.js';
import { LISTENER_COMMON } from '../sources/plugin.js';
import { SOURCE_PLUGINS } from '../sources/registry.js';
import { MAX_TIMER_SECONDS, type ObjectSpec, type ScalarSpec, type Spec, type VariantSpec } from './spec.js';
import { CONFIG_SECTIONS } from './sections.js';

/**
 * The configuration schema: every option, described once. The loader (load.ts) validates
 * a YAML file against this table, `cefd config-doc` prints it as the option table
 * of docs/configuration.md, and test/docs.test.ts keeps the two in step. Keys are snake_case.
 */

export type { BaseSpec, ListSpec, MapSpec, ObjectSpec, ScalarSpec, Spec, VariantSpec } from './spec.js';

const s = (doc: string, extra: Partial<ScalarSpec> = {}): ScalarSpec => ({ kind: 'string', doc, ...extra });
const int = (doc: string, def: number, min = 0, max = Number.MAX_SAFE_INTEGER): ScalarSpec => ({ kind: 'int', doc, default: def, min, max });
const bool = (doc: string, def: boolean): ScalarSpec => ({ kind: 'bool', doc, default: def });
const dur = (doc: string, def: string, min = 0, max?: number): ScalarSpec => ({ kind: 'duration', doc, default: def, min, ...(max === undefined ? {} : { max }) });
const path = (doc: string, extra: Partial<ScalarSpec> = {}): ScalarSpec => ({ kind: 'path', doc, ...extra });

/**
 * `fields` with MAX_TIMER_SECONDS as the maximum of the durations at `keys` (`buffer.fsync_interval`):
 * options of shared fragments that set a Node timer, which overflows past about 24 days
 * (the loader then says "must be at most 24 days"). Copies; the fragments are not changed.
 */
function timerMax(fields: Record<string, Spec>, keys: string[]): Record<string, Spec> {
  const out = { ...fields };
  for (const key of keys) {
    const [name, ...rest] = key.split('.');
    const spec = out[name!];
    if (spec === undefined) throw new Error(`timerMax: no option ${key}`);
    if (rest.length > 0 && spec.kind === 'object') out[name!] = { ...spec, fields: timerMax(spec.fields, [rest.join('.')]) };
    else if (rest.length === 0 && spec.kind === 'duration') out[name!] = { ...spec, max: MAX_TIMER_SECONDS };
    else throw new Error(`timerMax: ${key} is not a duration`);
  }
  return out;
}

/** `listeners[]`: one variant per registered source plugin. */
const LISTENER_VARIANT: VariantSpec = {
  kind: 'variant',
  doc: 'A listener.',
  common: LISTENER_COMMON,
  variants: Object.fromEntries(SOURCE_PLUGINS.map((p) => [p.type, { doc: p.doc, fields: p.fields as Record<string, Spec> }])),
};

/** `outputs[]`: one variant per registered output plugin. */
const OUTPUT_VARIANT: VariantSpec = {
  kind: 'variant',
  doc: 'An output.',
  // The disk buffer's fsync timer and the retry's sleep.
  common: timerMax(OUTPUT_COMMON, ['buffer.fsync_interval', 'retry.initial_backoff', 'retry.max_backoff']),
  variants: Object.fromEntries(OUTPUT_PLUGINS.map((p) => [p.type, { doc: p.doc, fields: p.fields as Record<string, Spec> }])),
};

export const SCHEMA: ObjectSpec = {
  kind: 'object',
  doc: 'cefd configuration',
  fields: {
    state_dir: path('Folder for state: disk buffers, the KSC store, secrets. Created if missing.', { default: './data', writes: true }),
    timezone: { kind: 'zone', doc: 'Zone of times that carry none (RFC 3164 timestamps; CEF text time stamps of a record without a `dtz` zone name): an IANA name.', default: 'UTC' },
    mode: { kind: 'enum', doc: '`single`: one cefd decodes and delivers (the default). `receiver`: only frame and publish raw frames to JetStream through `nats` outputs with `payload: frame` (no decoding, no filters); processors, ordinary cefds with a `nats` listener, decode them (docs/cluster.md).', values: ['single', 'receiver'], default: 'single' },
    include_raw: bool('Put each frame\'s text in the event as `raw`.', false),
    event: {
      kind: 'object',
      doc: 'The event format of the `native` encoding (docs/event-format.md): each value is carried once by default; these bring back what schema 1 repeated.',
      fields: {
        typed: { kind: 'enum', doc: '`changed`: `cef.typed` holds the converted values that differ from the text (numbers, re-formatted time stamps); `all`: every converted value (IP addresses as their text, `deviceReceiptTime` as `timestamp`).', values: ['changed', 'all'], default: 'changed' },
        custom_fields: { kind: 'enum', doc: '`folded`: a custom value with its Label is one field of `cef.custom` (`cs3:TaskName`); `pairs`: both keys in `cef.extensions` under their full names (`deviceCustomString3`, `deviceCustomString3Label`).', values: ['folded', 'pairs'], default: 'folded' },
        ksc: { kind: 'enum', doc: '`lean`: the `ksc` object holds what the normalizer derives (category, severity, task states, ...); `full`: also the values it reads from the event (`eventType`, `host`, `task.name`, ...) and `labels`.', values: ['lean', 'full'], default: 'lean' },
        syslog_timestamp: { kind: 'enum', doc: '`changed`: `syslog.timestamp` only when it differs from the event\'s `timestamp` (null when the header had none); `always`: the header\'s time stamp whenever it had one.', values: ['changed', 'always'], default: 'changed' },
      },
    },
    decode_workers: { kind: 'int', doc: 'Threads that decode, normalize and encode events (the reads of one connection are spread over them, and put back in order). -1: one per core when there are 2 or more cores, else 0; 0: decode on the main thread. The KSC integration\'s per-event work (enrichment, response-rule filters) runs on these threads too.', default: -1, min: -1, max: 64 },
    shutdown_timeout: dur('On SIGTERM/SIGINT: time to decode what was read and flush the outputs (a request in flight is aborted at the end; reads not decoded by then are kept for the next start) before exiting.', '10s', 0.001, MAX_TIMER_SECONDS),
    listeners: {
      kind: 'list',
      doc: 'Where events come in.',
      uniqueNames: true,
      item: LISTENER_VARIANT,
      default: [
        { name: 'tcp', type: 'tcp' },
        { name: 'udp', type: 'udp' },
      ],
    },
    outputs: {
      kind: 'list',
      doc: 'Where events go. Every event goes to every output whose filter it passes.',
      uniqueNames: true,
      item: OUTPUT_VARIANT,
      default: [{ name: 'events', type: 'file', path: './data/events.ndjson' }],
    },
    dead_letter: {
      kind: 'object',
      doc: 'Where frames that did not become events, and batches an output rejected, go (NDJSON file).',
      fields: {
        path: path('Dead-letter file.', { default: './data/dead-letter.ndjson', writes: true }),
        queue_max_events: int('Capacity of the dead-letter queue with `buffer.type: memory` (full: sockets pause).', 10000, 1),
        buffer: timerMax({ buffer: BUFFER }, ['buffer.fsync_interval'])['buffer']!,
        rotate_max_bytes: FILE_FIELDS['rotate_max_bytes']!,
        rotate_interval: FILE_FIELDS['rotate_interval']!,
        max_files: FILE_FIELDS['max_files']!,
        fsync: FILE_FIELDS['fsync']!,
        // The file output checks its own (src/outputs/file/index.ts); this one is not an output.
        fsync_interval: timerMax(FILE_FIELDS, ['fsync_interval'])['fsync_interval']!,
        mode: FILE_FIELDS['mode']!,
      },
    },
    metrics: {
      kind: 'object',
      doc: 'The HTTP endpoint for /metrics, /healthz and /readyz.',
      fields: {
        enabled: bool('Serve the endpoint.', true),
        host: s('IP address to bind (loopback by default), or `localhost`.', { default: '127.0.0.1' }),
        port: { kind: 'port', doc: 'Port to bind.', default: 9141 },
        bearer_token: s('When set, requests need `Authorization: Bearer <token>`; at least 32 characters, random (`openssl rand -hex 32`). Wrong tokens are limited per client address (5 free, then 429 `metrics_rate_limited`).', { secret: true }),
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
    ...Object.assign({}, ...CONFIG_SECTIONS.map((x) => x.fields)),
  },
};
