/**
 * Configuration of the KSC integration: the `ksc` section. Merged into SCHEMA by
 * schema.ts. KSC connections (and their secrets) are not configured here: they live in the
 * state store and are managed with `cefd ksc connections ...` or the admin HTTP API.
 */
import { dur, MAX_TIMER_SECONDS, type ListSpec, type Spec } from '../../config/spec.js';

/** A list that must be given (the loader honours `required` on any spec). */
const requiredList = (l: ListSpec): ListSpec => Object.assign(l, { required: true });

const RESPONSE_RULE_COMMON: Record<string, Spec> = {
  name: { kind: 'string', doc: 'Rule name (unique); used in logs, task runs (`rule`) and as a metric label.', required: true },
  filter: {
    kind: 'filter',
    doc: 'Only events that pass this filter trigger the rule (the filter language of output routes, see "Filters"). Empty: every event with the asset reference. KSC task-state events never trigger a rule (no feedback loop).',
  },
};

const KSCTASKS_FIELDS: Record<string, Spec> = {
  tasks: requiredList({
    kind: 'list',
    doc: 'KSC task display names (or `#<task id>`), in order of preference: the first task of the list that applies to the asset starts, the others are disregarded (as KUMA does). Names must begin with "KUMA" in KSC.',
    item: { kind: 'string', doc: 'task display name' },
  }),
  asset_field: {
    kind: 'enum',
    doc: 'Which asset of the event the task starts for: `source` (`assets.source`), `destination` (`assets.destination`) or `device` (`assets.device`; for KSC events the managed device).',
    values: ['source', 'destination', 'device'],
    default: 'device',
  },
  workers: { kind: 'int', doc: 'How many task starts of this rule may run at once.', default: 1, min: 1, max: 64 },
  cooldown: dur('After a task started for an asset, further triggers for the same task and asset are skipped for this long (0: only while it runs).', '10m'),
  queue_max: {
    kind: 'int',
    doc: 'Triggers waiting for a worker; when full, further triggers are dropped, counted and logged (`ksc_rule_queue_full`).',
    default: 1000,
    min: 1,
    max: 1_000_000,
  },
};

export const KSC_FIELDS: Record<string, Spec> = {
  ksc: {
    kind: 'object',
    doc: 'The Kaspersky Security Center integration: asset import, enrichment, task status, response rules and the admin API (see "Kaspersky Security Center integration"). Connections are managed with `cefd ksc connections` or the admin API.',
    fields: {
      enabled: { kind: 'bool', doc: 'Run the integration in the daemon (asset import, enrichment, task status from task-state events, response rules, admin API). Off: the daemon leaves the KSC store alone; the `cefd ksc` commands still work.', default: true },
      tenant: { kind: 'string', doc: 'Tenant whose assets enrich this daemon\'s events and whose assets response rules act on.', default: 'default' },
      credentials_file: {
        kind: 'path',
        doc: 'Read-only file of KSC connection secrets (`{"tenant/name": {"user", "password"}}`), e.g. from systemd `LoadCredential=`; default `$CREDENTIALS_DIRECTORY/ksc-secrets` when it exists. Its entries win over `<state_dir>/ksc-secrets.json`.',
      },
      asset_sync_interval: dur('How often assets are imported from every enabled connection (an on-demand import does not shift the schedule).', '1h', 1, MAX_TIMER_SECONDS),
      sync_on_start: { kind: 'bool', doc: 'Import assets once when the daemon starts (then the attributes of devices not done for `asset_attributes_interval`).', default: true },
      asset_attributes_interval: dur(
        'How often the attributes of each imported device (installed software, patches, vulnerabilities, owners; software and vulnerabilities for Windows devices only) are imported. Checked every hour at most: a run cut short by its budget or a failure goes on at the next check. On demand: `cefd ksc assets sync --attributes`.',
        '12h',
        60,
      ),
      asset_attributes_concurrency: { kind: 'int', doc: 'KSC sessions the attribute import uses per connection (each makes one call at a time); the hourly import has its own.', default: 2, min: 1, max: 16 },
      asset_attributes_budget: dur('Longest time one attribute import run may take; devices not reached are done first by the next run.', '2h', 1),
      request_timeout: dur('Timeout of one KSC Open API request.', '30s', 0.001, MAX_TIMER_SECONDS),
      retries: { kind: 'int', doc: 'Retries of a KSC request that failed for a transient reason (connection, timeout, HTTP 5xx); never for a task start that may have reached KSC.', default: 3, min: 0, max: 10 },
      task_run_blocking: dur('A task run still requested or running without news from KSC for this long no longer blocks a new start of the same task for the same asset.', '6h', 1),
      task_run_timeout: dur('A task run that got no task-state event for this long is marked failed.', '24h', 1),
      admin: {
        kind: 'object',
        doc: 'The admin HTTP API (JSON) for connections, assets, tasks and response rules.',
        fields: {
          enabled: { kind: 'bool', doc: 'Serve the admin API.', default: false },
          host: { kind: 'string', doc: 'IP address to bind (loopback by default), or `localhost`.', default: '127.0.0.1' },
          port: { kind: 'port', doc: 'Port to bind (0 picks a free one).', default: 9142 },
          bearer_token: { kind: 'string', doc: 'Requests need `Authorization: Bearer <token>`; required when the API is enabled; at least 32 characters, random (`openssl rand -hex 32`).', secret: true },
          bearer_token_file: { kind: 'path', doc: 'File holding the bearer token.' },
          max_body_bytes: { kind: 'size', doc: 'Largest request body; larger ones get 413.', default: '64KiB', min: 64 },
          request_timeout: dur('Time a client has to send a whole request.', '30s', 0.001, MAX_TIMER_SECONDS),
          tls: {
            kind: 'object',
            doc: 'Serve the admin API (and the console) over HTTPS with these certificate files (PEM); both or neither.',
            fields: {
              cert_file: { kind: 'path', doc: 'Certificate chain (PEM).' },
              key_file: { kind: 'path', doc: 'Private key (PEM).' },
            },
          },
          console: {
            kind: 'object',
            doc: 'The web console on the admin listener (docs/console.md): Overview, Events (live tail), KSC.',
            fields: {
              enabled: { kind: 'bool', doc: 'Serve the console at /console/ (sign-in with the bearer token or the password of `cefd console set-password`).', default: false },
              session_ttl: dur('How long a console sign-in lasts.', '8h', 1),
              tail_events: { kind: 'int', doc: 'Recent events kept for the Events page\'s search and detail view, always while the console is on: each decode worker keeps its last this many (the main thread too, for events it decodes).', default: 1000, min: 10, max: 100_000 },
              tail_bytes: { kind: 'size', doc: 'Most memory the recent events take (their native JSON and frames, each frame cut at 64 KiB; shared among the decode workers); the oldest go first.', default: '32MiB', min: 65_536 },
              quiet_after: dur('The Overview warns when a listener that had events got none for this long.', '5m', 1),
            },
          },
        },
      },
      cluster: {
        kind: 'object',
        doc: 'Processors that share KSC work (docs/cluster.md, "KSC: one owner per KSC connection"): when a listener is a `nats` source, every processor publishes the rule triggers and task states it finds to a JetStream work stream, and only the processor holding a connection\'s lease (a JetStream key-value entry) acts on them: task starts and task-run updates happen once. The NATS connection is the first `nats` listener\'s.',
        fields: {
          mode: {
            kind: 'enum',
            doc: '`auto`: share KSC work through NATS when a listener is a `nats` source and `ksc.trusted_sources` is not empty (without trusted sources no event acts on KSC); `off`: act locally (run one processor with the `ksc` section then).',
            values: ['auto', 'off'],
            default: 'auto',
          },
          lease_ttl: dur('Lease time of a connection\'s owner (renewed every third of it): after the owner dies, another processor takes over within about this long. Sets the ttl of bucket `cefd_ksc_owner` when it is made; an existing bucket keeps its own, and a processor holds the lease for the shorter of the two (logged when they differ).', '5s', 1, MAX_TIMER_SECONDS),
          ack_wait: dur('A work message not acknowledged within this time goes to the owner again (a task start may take this long).', '60s', 1, MAX_TIMER_SECONDS),
          replicas: { kind: 'int', doc: 'Replicas of the work stream `CEFD_KSC` and of the key-value buckets `cefd_ksc_owner` and `cefd_ksc_starts` when cefd creates them (3 in a 3-node cluster).', default: 1, min: 1, max: 5 },
          duplicate_window: dur('The work stream\'s duplicate window: a trigger or task state published twice within it (its event delivered again) is stored once.', '10m', 1),
          claim_ttl: dur('How long the claim of a response rule\'s start for an event is kept (bucket `cefd_ksc_starts`): an event delivered again within it does not start its task again. Sets the bucket\'s ttl when it is made; an existing bucket keeps its own (logged when they differ).', '24h', 60),
        },
      },
      trusted_sources: {
        kind: 'list',
        doc: 'Where a KSC connection\'s own events come from: only events from these origins can trigger response rules or update that connection\'s task runs (events from elsewhere are still collected). Empty: no event acts on KSC. See docs/ksc-trust.md.',
        default: [],
        item: {
          kind: 'object',
          doc: 'A trusted origin of one KSC connection; every criterion given must hold.',
          fields: {
            connection: { kind: 'string', doc: 'Name of the KSC connection (in `ksc.tenant`).', required: true },
            listeners: { kind: 'list', doc: 'Listener names its events arrive on.', item: { kind: 'string', doc: 'listener name' }, default: [] },
            cidrs: { kind: 'list', doc: 'Source addresses (CIDR or address) of the KSC server.', item: { kind: 'cidr', doc: 'CIDR' }, default: [] },
            client_fingerprints: {
              kind: 'list',
              doc: 'SHA-256 fingerprints of the TLS client certificate KSC presents (hex, colons optional): the strongest criterion.',
              item: { kind: 'string', doc: 'SHA-256 fingerprint' },
              default: [],
            },
          },
        },
      },
      response_rules: {
        kind: 'list',
        doc: 'Response rules: when an event passes a rule\'s filter, start a KSC task for one of its assets.',
        uniqueNames: true,
        default: [],
        item: {
          kind: 'variant',
          doc: 'A response rule.',
          common: RESPONSE_RULE_COMMON,
          variants: {
            ksctasks: { doc: 'Start the first applicable KSC task of `tasks` for the event\'s asset (KUMA\'s `ksctasks` response).', fields: KSCTASKS_FIELDS },
          },
        },
      },
    },
  },
};
