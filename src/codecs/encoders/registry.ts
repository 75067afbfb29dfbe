/** The encoders outputs can name in `encoding.codec`. Adding one: a module here and one line below. */
import type { CefdEvent } from '../../event.js';
import { EncodeProblems, type Encoder, type EncodingConfig } from './encoder.js';
import { nativeValue } from './native.js';
import { ecsEncoder } from './ecs.js';
import { kumaEncoder } from './kuma.js';
import { cefEncoder } from './cef.js';

type EncodeFn = (event: CefdEvent) => string;

/**
 * How an encoder makes its record: `json`, a value whose JSON text is the record (written
 * by createEncoder, or many at once by a decode worker: Encoder.value); `text`, the record.
 */
type Made = { json: (event: CefdEvent) => unknown } | { text: EncodeFn };

/** The native encoder's value with the default event options: the event as it is. */
const itself = (event: CefdEvent): CefdEvent => event;

const ENCODERS: Record<string, (cfg: EncodingConfig, problems: EncodeProblems) => Made> = {
  /** cefd's own event (docs/event-format.md). */
  native: (cfg) => ({ json: nativeValue(cfg.event) ?? itself }),
  /** Elastic Common Schema 8.x (docs/encodings.md). */
  ecs: (_cfg, problems) => ({ json: ecsEncoder(problems) }),
  /** KUMA's normalized event (docs/encodings.md). */
  kuma: (_cfg, problems) => ({ json: kumaEncoder(problems) }),
  /** The event written back as a CEF record (docs/encodings.md). */
  cef: (_cfg, problems) => ({ text: cefEncoder(problems) }),
};

export const ENCODER_NAMES: readonly string[] = Object.keys(ENCODERS);

export function isEncoderName(name: string): boolean {
  return Object.hasOwn(ENCODERS, name);
}

/** Encoders whose records are not JSON texts (a dead letter carries such a record as a string). */
const NOT_JSON: ReadonlySet<string> = new Set(['cef']);

/** Whether the records of this encoder are JSON texts (`cef`'s are CEF lines). */
export function isJsonEncoding(codec: string): boolean {
  return !NOT_JSON.has(codec);
}

/** The encoder an output's `encoding` section names (the name must be one of ENCODER_NAMES). */
export function createEncoder(cfg: EncodingConfig): Encoder {
  const make = ENCODERS[cfg.codec];
  if (make === undefined) throw new Error(`unknown encoder ${JSON.stringify(cfg.codec)} (known: ${ENCODER_NAMES.join(', ')})`);
  const problems = new EncodeProblems();
  const made = make(cfg, problems);
  const only = cfg.only_fields ?? [];
  const except = cfg.except_fields ?? [];
  const ev = cfg.event;
  const key = `${cfg.codec}|${only.join(',')}|${except.join(',')}|${ev === undefined ? '' : `${ev.typed ?? ''},${ev.custom_fields ?? ''},${ev.ksc ?? ''},${ev.syslog_timestamp ?? ''}`}`;
  if (only.length === 0 && except.length === 0) {
    if ('text' in made) return { key, codec: cfg.codec, problems, encode: made.text };
    const value = made.json;
    // The default native event is written as it is: no call in between.
    const encode: EncodeFn = value === itself ? (event) => JSON.stringify(event) : (event) => JSON.stringify(value(event));
    return { key, codec: cfg.codec, problems, encode, value };
  }
  const onlyPaths = only.map((p) => p.split('.'));
  const exceptPaths = except.map((p) => p.split('.'));
  // The native event's options add fields back (`event.ksc: full` gives `ksc.eventType`):
  // the field options choose among the fields of the expanded event (native's value),
  // which is then written as it is. The other encoders encode the event the field options leave.
  const native = cfg.codec === 'native';
  /** What the field options choose from: native's value (the event, expanded or not), else the event. */
  const start = native && 'json' in made ? made.json : itself;
  const fields = (event: CefdEvent): Record<string, unknown> => {
    let e = start(event) as Record<string, unknown>;
    if (onlyPaths.length > 0) e = pick(e, onlyPaths);
    if (exceptPaths.length > 0) e = omit(e, exceptPaths);
    return native ? e : wholeRecord(e);
  };
  if ('text' in made) return { key, codec: cfg.codec, problems, encode: (event) => made.text(fields(event) as CefdEvent) };
  const json = made.json;
  const value = native ? fields : (event: CefdEvent) => json(fields(event) as CefdEvent);
  return { key, codec: cfg.codec, problems, encode: (event) => JSON.stringify(value(event)), value };
}

/**
 * The other encoders read a CEF record whose `extensions` is an object (src/event.ts), as
 * the decoder makes it; `except_fields: [cef.extensions]` (or `only_fields` without it)
 * removes it, and reading the custom fields beside it would throw for every event.
 */
function wholeRecord(e: Record<string, unknown>): Record<string, unknown> {
  const cef = e['cef'];
  if (cef === null || typeof cef !== 'object') return e;
  const ext = (cef as Record<string, unknown>)['extensions'];
  if (ext !== null && typeof ext === 'object') return e;
  return { ...e, cef: { ...cef, extensions: {} } };
}

function pick(obj: Record<string, unknown>, paths: readonly string[][]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const p of paths) {
    let src: unknown = obj;
    for (const k of p) src = src !== null && typeof src === 'object' ? (src as Record<string, unknown>)[k] : undefined;
    if (src === undefined) continue;
    let dst = out;
    for (let i = 0; i < p.length - 1; i++) {
      const k = p[i]!;
      const next = dst[k];
      dst = (dst[k] = next !== null && typeof next === 'object' ? next : {}) as Record<string, unknown>;
    }
    dst[p[p.length - 1]!] = src;
  }
  return out;
}

function omit(obj: Record<string, unknown>, paths: readonly string[][]): Record<string, unknown> {
  const out: Record<string, unknown> = { ...obj };
  for (const p of paths) {
    let dst = out;
    for (let i = 0; i < p.length - 1; i++) {
      const v = dst[p[i]!];
      if (v === null || typeof v !== 'object') {
        dst = {};
        break;
      }
      // Copy on the way down: the event itself is shared by every encoder.
      dst = dst[p[i]!] = { ...(v as Record<string, unknown>) };
    }
    delete dst[p[p.length - 1]!];
  }
  return out;
}
