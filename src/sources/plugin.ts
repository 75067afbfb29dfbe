/**
 * What a source plugin is: a folder `src/sources/<type>/` whose `index.ts` exports
 * `defineSource({...})` values (one per `type`; tcp/ has `tcp` and `tls`) with the options
 * of that type, written once (the TS type is inferred from the fragment), an optional
 * `check`, and the factory. The factory loads the implementation on demand, so loading a
 * config (src/config/load.ts) never loads socket code.
 */
import { fields, list, size, str, type ConfigOf, type FieldProblem, type Fields } from '../config/spec.js';
import type { Source, SourceDeps } from './source.js';

/** Options every listener has, whatever its type. */
export const LISTENER_COMMON = fields({
  name: str('Listener name (unique); recorded on every event as `listener` and used as a metric label.', { required: true }),
  host: str('IP address to bind (`0.0.0.0`: every IPv4 address; `::`: every IPv4 and IPv6 address), or `localhost`. Two listeners of one protocol (TCP and TLS are one) on one port must not share an address.', { default: '0.0.0.0' }),
  port: { kind: 'port', doc: 'Port to bind (0 picks a free one).', default: 5141 },
  allowed_cidrs: list('Source networks allowed to send (IPv4/IPv6 CIDR or address). Empty: everyone. Others are closed at once (TCP) or ignored (UDP), and counted.', { kind: 'cidr', doc: 'CIDR' }, { default: [] }),
  max_frame_bytes: size('Largest frame; longer LF frames are truncated (warning `frame_truncated`).', '64KiB', 16),
  normalizers: list('Normalizers run on this listener\'s events, in order; the first that accepts an event wins. A name (`ksc`) or a path to a module (`./my.js`, relative to the config file).', str('normalizer name or module path'), { default: ['ksc'] }),
});

export type ListenerCommonConfig = ConfigOf<typeof LISTENER_COMMON>;

/** The loaded config of a listener of type `T` with the option fragment `F`. */
export type SourceConfigOf<T extends string, F> = { type: T } & ListenerCommonConfig & ConfigOf<F>;

export interface SourcePlugin<T extends string = string, F extends Fields = Fields> {
  /** The `type` value in `listeners[]`. */
  readonly type: T;
  /** One sentence for the docs table. */
  readonly doc: string;
  /** The options of this type, besides LISTENER_COMMON. */
  readonly fields: F;
  /** The transport the port is bound on: two listeners may not bind the same one (`none`: binds no port, a NATS consumer). */
  readonly protocol: 'tcp' | 'udp' | 'none';
  /** Checks the schema kinds cannot express; keys relative to the listener. */
  check?(c: SourceConfigOf<T, F>): FieldProblem[];
  create(c: SourceConfigOf<T, F>, deps: SourceDeps): Promise<Source>;
}

export function defineSource<const T extends string, const F extends Fields>(p: SourcePlugin<T, F>): SourcePlugin<T, F> {
  return p;
}
