/**
 * What an output plugin is: a folder `src/outputs/<type>/` whose `index.ts` exports one
 * `defineOutput({...})` value with the output's config fragment (its options, written
 * once: the TypeScript type is inferred from it), an optional `check` for rules that span
 * several options, and the factory. src/outputs/registry.ts lists the plugins; the config
 * schema, the generated docs, `cefd validate` and the daemon loop over that list.
 * docs/adding-an-output.md walks through adding one.
 */
import { ENCODER_NAMES } from '../codecs/encoders/registry.js';
import { dur, enumOf, fields, int, list, obj, size, str, type ConfigOf, type FieldProblem, type Fields } from '../config/spec.js';
import type { Output } from './types.js';

export const RETRY_FIELDS = fields({
  initial_backoff: dur('First wait after a failed attempt.', '100ms', 0.001),
  max_backoff: dur('Longest wait between attempts.', '30s', 0.001),
});

export const BUFFER_FIELDS = fields({
  type: enumOf('`disk` (under `state_dir/buffers/<output>/`), `memory`, or `auto`: disk for every output but stdout.', ['auto', 'disk', 'memory'], 'auto'),
  max_size: size('Bytes at which the disk buffer is full and `when_full` applies (with `block`, the reads in flight when reading paused still go to disk past it: docs/reliability.md).', '256MiB', 64 * 1024),
  fsync: enumOf('When appends are fsynced: `interval` (every `fsync_interval`), `batch` (every append: slowest, survives power loss), `never` (the OS decides; survives a cefd crash, not a power loss).', ['interval', 'batch', 'never'], 'interval'),
  fsync_interval: dur('Period of `fsync: interval`.', '1s', 0.001),
});

export const BUFFER = obj('The output\'s queue: on disk (events survive restarts and crashes) or in memory.', BUFFER_FIELDS);

/** `encoding.only_fields` / `except_fields` (src/codecs/encoders/registry.ts; docs/encodings.md, "Field options"). */
export const ONLY_FIELDS_DOC =
  'Keep only these fields of the record the output sends: dotted paths of its encoding (`native`: `ksc.task`; `ecs`: `@timestamp`, `kaspersky`; `kuma`: `Extra`); a path continues into each element of an array. Empty: all. Not for `cef`, whose records are CEF lines.';
export const EXCEPT_FIELDS_DOC =
  'Drop these fields of the record the output sends, applied after `only_fields`: dotted paths of its encoding (`ecs`: `cef` drops the `cef.*` copy, the ECS fields stay; `native`: `warnings.message` drops `message` from each warning). Not for `cef`.';

/**
 * The `encoding` section with `codec` defaulting to `defaultCodec`. An output whose
 * receivers expect another encoding by default (syslog: `cef`) puts
 * `encoding: encodingSpec('cef')` in its own fields, which take the place of the common one.
 */
export function encodingSpec<const D extends string>(defaultCodec: D) {
  return obj('How events become the records this output sends (src/codecs/encoders), encoded on the decode workers; outputs with the same encoding share one encoded copy of each event. The `event` section applies to `native`.', {
    codec: enumOf(`Encoder: \`native\` is cefd's own JSON event.${defaultCodec === 'native' ? '' : ` This output's default: \`${defaultCodec}\`.`}`, ENCODER_NAMES, defaultCodec),
    only_fields: list(ONLY_FIELDS_DOC, str('dotted field path'), { default: [] }),
    except_fields: list(EXCEPT_FIELDS_DOC, str('dotted field path'), { default: [] }),
  });
}

export const ENCODING = encodingSpec('native');

/** Options every output has, whatever its type. */
export const OUTPUT_COMMON = fields({
  name: str('Output name (unique); used as a metric label.', { required: true }),
  filter: { kind: 'filter', doc: 'Route: only events that pass this filter go to this output (see "Filters"). Empty: every event.' },
  queue_max_events: int('Capacity of a memory queue (`buffer.type: memory`), in events. When the queue is full, reading from every socket pauses until it drains (`block`), or new events are dropped and counted (`drop_newest`).', 10000, 1),
  buffer: BUFFER,
  when_full: enumOf('What a full queue does: `block` (pause the sockets) or `drop_newest` (drop and count).', ['block', 'drop_newest'], 'block'),
  batch_max_events: int('Most events sent in one batch.', 1000, 1),
  retry: obj('Retry of a batch the output could not deliver for now (capped exponential backoff with jitter).', RETRY_FIELDS),
  encoding: ENCODING,
});

export type OutputCommonConfig = ConfigOf<typeof OUTPUT_COMMON>;
export type BufferConfig = ConfigOf<typeof BUFFER_FIELDS>;
export type RetryConfig = ConfigOf<typeof RETRY_FIELDS>;

/** The loaded config of an output of type `T` with the option fragment `F`. */
export type OutputConfigOf<T extends string, F> = { type: T } & OutputCommonConfig & ConfigOf<F>;

export interface OutputPlugin<T extends string = string, F extends Fields = Fields> {
  /** The `type` value in `outputs[]`. */
  readonly type: T;
  /** One sentence for the docs table. */
  readonly doc: string;
  /** The options of this type, besides OUTPUT_COMMON. */
  readonly fields: F;
  /**
   * `buffer.type: auto` gives this output a disk buffer (false: memory, and a disk
   * buffer is refused; stdout).
   */
  readonly diskBuffer: boolean;
  /** Checks that span options or need more than the schema kinds; keys relative to the output. */
  check?(c: OutputConfigOf<T, F>): FieldProblem[];
  /** The output itself. */
  create(c: OutputConfigOf<T, F>): Output;
}

/** Declares a plugin, keeping its literal type and field fragment for type inference. */
export function defineOutput<const T extends string, const F extends Fields>(p: OutputPlugin<T, F>): OutputPlugin<T, F> {
  return p;
}
