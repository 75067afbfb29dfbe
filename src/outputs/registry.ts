/**
 * Every output type, one line each. The config schema builds `outputs[]` from this list,
 * `cefd config-doc` documents it, `cefd validate` runs each plugin's `check`, and the daemon
 * creates outputs through it. Adding an output: docs/adding-an-output.md.
 */
import type { OutputPlugin } from './plugin.js';
import { elasticsearchOutput } from './elasticsearch/index.js';
import { clickhouseOutput } from './clickhouse/index.js';
import { fileOutput } from './file/index.js';
import { httpOutput } from './http/index.js';
import { splunkHecOutput } from './splunk_hec/index.js';
import { natsOutput } from './nats/index.js';
import { stdoutOutput } from './stdout/index.js';
import { syslogOutput } from './syslog/index.js';

export const OUTPUT_PLUGINS = [
  fileOutput,
  stdoutOutput,
  httpOutput,
  syslogOutput,
  elasticsearchOutput,
  splunkHecOutput,
  clickhouseOutput,
  natsOutput,
] as const;

type Plugins = (typeof OUTPUT_PLUGINS)[number];

/** The loaded config of any registered output (a union discriminated by `type`). */
export type OutputConfig = Plugins extends infer P ? (P extends OutputPlugin<infer T, infer F> ? import('./plugin.js').OutputConfigOf<T, F> : never) : never;

export type OutputType = Plugins['type'];

/** The plugin of `type`; undefined for a type no plugin has. */
export function outputPlugin(type: string): OutputPlugin<string, any> | undefined {
  return OUTPUT_PLUGINS.find((p) => p.type === type) as OutputPlugin<string, any> | undefined;
}
