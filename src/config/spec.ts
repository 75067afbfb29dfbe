/**
 * The kinds of the configuration schema, and builders that keep each option's literal
 * shape so that a plugin's TypeScript config type is inferred from the fragment it
 * declares (`type HttpConfig = ConfigOf<typeof HTTP_FIELDS>`): the fragment is the one
 * place an option's name, type, default and check are written. The loader
 * (src/config/load.ts) validates YAML against these specs; src/config/doc.ts renders them.
 */

export type Spec = ScalarSpec | ObjectSpec | ListSpec | VariantSpec | MapSpec;

export interface BaseSpec {
  /** One sentence for the option table (docs/configuration.md). */
  doc: string;
  /** Marks a secret: never logged, never printed (`validate` redacts it). */
  secret?: boolean;
}

export interface ScalarSpec extends BaseSpec {
  kind: 'string' | 'int' | 'number' | 'bool' | 'duration' | 'size' | 'enum' | 'cidr' | 'port' | 'zone' | 'path' | 'filter' | 'mode';
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
  required?: boolean;
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

export type Fields = Record<string, Spec>;

/**
 * The longest duration a Node timer takes (2^31-1 ms, about 24.8 days): a longer one
 * fires after 1 ms (TimeoutOverflowWarning). The loader reports a duration over its
 * `max` of this value as "must be at most 24 days".
 */
export const MAX_TIMER_SECONDS = (2 ** 31 - 1) / 1000;

// Builders: each returns its argument's literal type so ConfigOf can read kind, default and required.
type Extra = Partial<Omit<ScalarSpec, 'kind' | 'doc' | 'values'>>;
export const str = <const E extends Extra = {}>(doc: string, extra?: E) => ({ kind: 'string' as const, doc, ...(extra as E) });
export const pathSpec = <const E extends Extra = {}>(doc: string, extra?: E) => ({ kind: 'path' as const, doc, ...(extra as E) });
export const int = <const D extends number>(doc: string, def: D, min = 0, max = Number.MAX_SAFE_INTEGER) => ({ kind: 'int' as const, doc, default: def, min, max });
export const bool = <const D extends boolean>(doc: string, def: D) => ({ kind: 'bool' as const, doc, default: def });
/** `max`: give MAX_TIMER_SECONDS to an option that sets a Node timer (setTimeout, setInterval). */
export const dur = <const D extends string>(doc: string, def: D, min = 0, max?: number) => ({ kind: 'duration' as const, doc, default: def, min, ...(max === undefined ? {} : { max }) });
/** `max`: give one where the value goes to an API with a limit (a socket option takes a C int). */
export const size = <const D extends string>(doc: string, def: D, min = 1, max?: number) => ({ kind: 'size' as const, doc, default: def, min, ...(max === undefined ? {} : { max }) });
export const enumOf = <const V extends readonly string[], const D extends V[number]>(doc: string, values: V, def: D) => ({ kind: 'enum' as const, doc, values, default: def });
export const obj = <const F extends Fields>(doc: string, fields: F) => ({ kind: 'object' as const, doc, fields });
export const list = <const I extends Spec, const E extends Partial<Omit<ListSpec, 'kind' | 'doc' | 'item'>> = {}>(doc: string, item: I, extra?: E) => ({ kind: 'list' as const, doc, item, ...(extra as E) });
/** Declares a fragment: checks it against Spec and keeps its literal type. */
export const fields = <const F extends Fields>(f: F): F => f;

/** The loaded value of one option (durations seconds, sizes bytes, paths absolute). */
export type ValueOf<S> = S extends { kind: 'object'; fields: infer F }
  ? ConfigOf<F>
  : S extends { kind: 'list'; item: infer I }
    ? ValueOf<I>[]
    : S extends { kind: 'map' }
      ? Record<string, string>
      : S extends { kind: 'enum'; values: readonly (infer V)[] }
        ? V
        : S extends { kind: 'int' | 'number' | 'port' | 'duration' | 'size' | 'mode' }
          ? number
          : S extends { kind: 'bool' }
            ? boolean
            : S extends { kind: 'variant' }
              ? Record<string, unknown>
              : string;

/** Options always present after loading: required ones, defaulted ones, objects and maps. */
type Present<S> = S extends { required: true } ? true : S extends { default: unknown } ? true : S extends { kind: 'object' | 'map' } ? true : false;

type Simplify<T> = { [K in keyof T]: T[K] } & {};

/** The loaded configuration object a fragment of fields describes. */
export type ConfigOf<F> = Simplify<
  { -readonly [K in keyof F as Present<F[K]> extends true ? K : never]: ValueOf<F[K]> } & {
    -readonly [K in keyof F as Present<F[K]> extends true ? never : K]?: ValueOf<F[K]>;
  }
>;

/** A configuration problem a plugin's `check` hook reports, relative to the plugin's object (`url`). */
export interface FieldProblem {
  key: string;
  message: string;
}
