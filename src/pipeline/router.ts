/**
 * Routes: which outputs an event goes to (each output's filter → one bit of a route mask)
 * and in which encoding (each output's `encoding` → one of the distinct encoders in use).
 * Compiled once from the configuration's outputs by the daemon, the decode workers,
 * `cefd validate` and `cefd parse`, so all of them route and encode alike.
 */
import { compileFilter } from '../filter/filter.js';
import { createEncoder } from '../codecs/encoders/registry.js';
import type { Encoder, EncodingConfig } from '../codecs/encoders/encoder.js';
import type { EventOptions } from '../codecs/encoders/native.js';
import type { CefdEvent } from '../event.js';

/** What routing tests an event with (filter.ts's Filter, or anything with the same test). */
export interface FilterLike {
  test(event: CefdEvent): boolean;
}

/** One output as routing sees it: the configuration's `filter` and `encoding`. */
export interface RouteSpec {
  filter?: string | undefined;
  encoding?: Partial<EncodingConfig> | undefined;
}

export interface Routes {
  /** Route filter of each output, in output order (undefined: every event). */
  readonly filters: readonly (FilterLike | undefined)[];
  /** The distinct encoders in use (two outputs with the same encoding share one). */
  readonly encoders: readonly Encoder[];
  /** Output i gets the records of `encoders[encoderOf[i]]`. */
  readonly encoderOf: readonly number[];
  /** Bit i set in `encoderMasks[e]`: output i uses encoder e (all bits for outputs past 31). */
  readonly encoderMasks: readonly number[];
}

/** Every event, to outputs past the 31st (masks are 32 bits). */
export const ALL_OUTPUTS = 0xffffffff;

/**
 * `event`: the config's `event` section (the native event's options), the same for every
 * output, as `cefd parse` takes it from its flags.
 */
export function compileRoutes(outputs: readonly RouteSpec[], event?: EventOptions): Routes {
  const filters = outputs.map((o) => (o.filter !== undefined && o.filter.trim() !== '' ? compileFilter(o.filter) : undefined));
  const encoders: Encoder[] = [];
  const encoderOf: number[] = [];
  const encoderMasks: number[] = [];
  outputs.forEach((o, i) => {
    const enc = createEncoder({ codec: o.encoding?.codec ?? 'native', only_fields: o.encoding?.only_fields ?? [], except_fields: o.encoding?.except_fields ?? [], ...(event !== undefined ? { event } : {}) });
    let e = encoders.findIndex((x) => x.key === enc.key);
    if (e === -1) {
      e = encoders.length;
      encoders.push(enc);
      encoderMasks.push(0);
    }
    encoderOf.push(e);
    encoderMasks[e] = (encoderMasks[e]! | (i < 32 ? 1 << i : ALL_OUTPUTS)) >>> 0;
  });
  return { filters, encoders, encoderOf, encoderMasks };
}

/** The route mask of an event: bit i set when output i's filter passes it. */
export function routeMask(routes: Routes, event: CefdEvent): number {
  let mask = 0;
  const filters = routes.filters;
  for (let i = 0; i < filters.length; i++) {
    const f = filters[i];
    if (f === undefined || f.test(event)) mask = i < 32 ? mask | (1 << i) : ALL_OUTPUTS;
  }
  return mask >>> 0;
}
