/**
 * Every source type, one line each. The config schema builds `listeners[]` from this list,
 * `cefd config-doc` documents it, `cefd validate` runs each plugin's `check`, and the daemon
 * creates sources through it.
 */
import type { SourceConfigOf, SourcePlugin } from './plugin.js';
import { tcpSource, tlsSource } from './tcp/index.js';
import { udpSource } from './udp/index.js';
import { natsSource } from './nats/index.js';

export const SOURCE_PLUGINS = [
  tcpSource,
  tlsSource,
  udpSource,
  natsSource,
] as const;

type Plugins = (typeof SOURCE_PLUGINS)[number];

/** The loaded config of any registered listener (a union discriminated by `type`). */
export type ListenerConfig = Plugins extends infer P ? (P extends SourcePlugin<infer T, infer F> ? SourceConfigOf<T, F> : never) : never;

/** The plugin of `type`; undefined for a type no plugin has. */
export function sourcePlugin(type: string): SourcePlugin<string, any> | undefined {
  return SOURCE_PLUGINS.find((p) => p.type === type) as SourcePlugin<string, any> | undefined;
}

