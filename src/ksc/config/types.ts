/** The loaded `ksc` configuration section (see schema.ts next to it). Durations are seconds, sizes bytes, paths absolute. */

export interface KscResponseRuleConfig {
  name: string;
  type: 'ksctasks';
  filter?: string;
  tasks: string[];
  asset_field: 'source' | 'destination' | 'device';
  workers: number;
  cooldown: number;
  queue_max: number;
}

export interface KscAdminConfig {
  enabled: boolean;
  host: string;
  port: number;
  bearer_token?: string;
  bearer_token_file?: string;
  max_body_bytes: number;
  request_timeout: number;
  tls: { cert_file?: string; key_file?: string };
  console: KscConsoleConfig;
}

export interface KscConsoleConfig {
  enabled: boolean;
  session_ttl: number;
  tail_events: number;
  tail_bytes: number;
  quiet_after: number;
}

export interface KscConfig {
  enabled: boolean;
  tenant: string;
  credentials_file?: string;
  asset_sync_interval: number;
  sync_on_start: boolean;
  asset_attributes_interval: number;
  asset_attributes_concurrency: number;
  asset_attributes_budget: number;
  request_timeout: number;
  retries: number;
  task_run_blocking: number;
  task_run_timeout: number;
  admin: KscAdminConfig;
  response_rules: KscResponseRuleConfig[];
  trusted_sources: KscTrustedSourceConfig[];
}

export interface KscTrustedSourceConfig {
  connection: string;
  listeners: string[];
  cidrs: string[];
  client_fingerprints: string[];
}

export interface KscConfigSection {
  ksc: KscConfig;
}
