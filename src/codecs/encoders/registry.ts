/** The encoders outputs can name in `encoding.codec`. Adding one: a module here and one line below. */
import type { CefdEvent } from '../../event.js';
import type { Encoder, EncodingConfig } from './encoder.js';

type EncodeFn = (event: CefdEvent) => string;

const ENCODERS: Record<string, () => EncodeFn> = {
  /** cefd's own event (docs/event-format.md). */
  native: () => (event) => JSON.stringify(event),
};

export const ENCODER_NAMES: readonly string[] = Object.keys(ENCODERS);

export function isEncoderName(name: string): boolean {
  return Object.hasOwn(ENCODERS, name);
}

/** The encoder an output's `encoding` section names (the name must be one of ENCODER_NAMES). */
export function createEncoder(cfg: EncodingConfig): Encoder {
  const make = ENCODERS[cfg.codec];
  if (make === undefined) throw new Error(`unknown encoder ${JSON.stringify(cfg.codec)} (known: ${ENCODER_NAMES.join(', ')})`);
  const base = make();
  const only = cfg.only_fields ?? [];
  const except = cfg.except_fields ?? [];
  const key = `${cfg.codec}|${only.join(',')}|${except.join(',')}`;
  if (only.length === 0 && except.length === 0) return { key, codec: cfg.codec, encode: base };
  const onlyPaths = only.map((p) => p.split('.'));
  const exceptPaths = except.map((p) => p.split('.'));
  return {
    key,
    codec: cfg.codec,
    encode: (event) => {
      let e: Record<string, unknown> = event;
      if (onlyPaths.length > 0) e = pick(e, onlyPaths);
      if (exceptPaths.length > 0) e = omit(e, exceptPaths);
      return base(e as CefdEvent);
    },
  };
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
