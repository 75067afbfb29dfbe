/**
 * The loaded configuration (schema.ts describes every key; durations are seconds, sizes
 * bytes, paths absolute). Frozen after loading.
 */
export type { ListenerCommonConfig } from '../sources/plugin.js';
export type { ListenerConfig } from '../sources/registry.js';
export type { StreamListenerConfig, TlsServerConfig } from '../sources/tcp/config.js';
export type { UdpListenerConfig } from '../sources/udp/config.js';
export type { BufferConfig, OutputCommonConfig, RetryConfig } from '../outputs/plugin.js';
export type { OutputConfig } from '../outputs/registry.js';
export type { FileConfig } from '../outputs/file/config.js';
export type { HttpConfig } from '../outputs/http/config.js';

/** The dead-letter output: a file output with its own queue. */
export interface DeadLetterConfig extends FileConfig {
  queue_max_events: number;
  buffer: BufferConfig;
}

import type { KscConfigSection } from '../ksc/config/types.js';
import type { BufferConfig } from '../outputs/plugin.js';
import type { OutputConfig } from '../outputs/registry.js';
import type { ListenerConfig } from '../sources/registry.js';
import type { FileConfig } from '../outputs/file/config.js';
import type { SqlSourceConfig } from '../sources/sql/config.js';

export interface Config extends KscConfigSection {
  state_dir: string;
  timezone: string;
  /** `receiver`: frame and publish raw frames only (docs/cluster.md). */
  mode: 'single' | 'receiver';
  include_raw: boolean;
  /** The native event's options (src/codecs/encoders/native.ts EventOptions). */
  event: { typed: 'changed' | 'all'; custom_fields: 'folded' | 'pairs'; ksc: 'lean' | 'full'; syslog_timestamp: 'changed' | 'always' };
  decode_workers: number;
  shutdown_timeout: number;
  listeners: ListenerConfig[];
  sql_sources: SqlSourceConfig[];
  outputs: OutputConfig[];
  dead_letter: DeadLetterConfig;
  metrics: { enabled: boolean; host: string; port: number; bearer_token?: string; bearer_token_file?: string };
  logging: { level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent'; repeat_interval: number };
  /** Folder of the config file (or the working folder): relative paths were resolved against it. */
  base_dir: string;
}
