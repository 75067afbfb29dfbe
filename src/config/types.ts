/**
 * The loaded configuration (schema.ts describes every key; durations are seconds, sizes
 * bytes, paths absolute). Frozen after loading.
 */
export interface RetryConfig {
  initial_backoff: number;
  max_backoff: number;
}

export interface TlsServerConfig {
  cert_file: string;
  key_file: string;
  key_passphrase?: string;
  key_passphrase_file?: string;
  ca_file?: string;
  client_auth: 'none' | 'optional' | 'required';
  client_fingerprints: string[];
  min_version: 'TLSv1.2' | 'TLSv1.3';
  ciphers: string;
  allow_insecure_pinned_certificates: boolean;
  handshake_timeout: number;
}

interface ListenerCommon {
  name: string;
  host: string;
  port: number;
  allowed_cidrs: string[];
  max_frame_bytes: number;
  normalizers: string[];
}

export interface StreamListenerConfig extends ListenerCommon {
  type: 'tcp' | 'tls';
  max_connections: number;
  max_connections_per_source: number;
  idle_timeout: number;
  tls?: TlsServerConfig;
}

export interface UdpListenerConfig extends ListenerCommon {
  type: 'udp';
  receive_buffer_bytes: number;
}

export type ListenerConfig = StreamListenerConfig | UdpListenerConfig;

export interface BufferConfig {
  type: 'auto' | 'disk' | 'memory';
  max_size: number;
  fsync: 'interval' | 'batch' | 'never';
  fsync_interval: number;
}

interface OutputCommon {
  name: string;
  filter?: string;
  queue_max_events: number;
  buffer: BufferConfig;
  when_full: 'block' | 'drop_newest';
  batch_max_events: number;
  retry: RetryConfig;
}

export interface FileSettings {
  path: string;
  rotate_max_bytes: number;
  rotate_interval: number;
  max_files: number;
  fsync: 'never' | 'batch' | 'interval';
  fsync_interval: number;
  mode: number;
}

export interface FileOutputConfig extends OutputCommon, FileSettings {
  type: 'file';
}

export interface StdoutOutputConfig extends OutputCommon {
  type: 'stdout';
}

export interface HttpOutputConfig extends OutputCommon {
  type: 'http';
  url: string;
  format: 'ndjson' | 'json_array';
  headers: Record<string, string>;
  bearer_token?: string;
  bearer_token_file?: string;
  timeout: number;
  ca_file?: string;
  insecure_skip_verify: boolean;
  compress: boolean;
}

export type OutputConfig = FileOutputConfig | StdoutOutputConfig | HttpOutputConfig;

export interface DeadLetterConfig extends FileSettings {
  queue_max_events: number;
  buffer: BufferConfig;
}

import type { KscConfigSection } from '../ksc/config/types.js';
import type { SqlSourceConfig } from '../sources/sql/config.js';

export interface Config extends KscConfigSection {
  state_dir: string;
  timezone: string;
  include_raw: boolean;
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
