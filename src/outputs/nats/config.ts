/** The `nats` output's options: the one place they are written (type inferred below). */
import { bool, dur, enumOf, fields, int, list, obj, size, str, type ConfigOf, MAX_TIMER_SECONDS } from '../../config/spec.js';
import { NATS_CONNECTION_FIELDS } from '../../nats/config.js';

export const NATS_STREAM_FIELDS = fields({
  create: bool('Create the stream at start when it does not exist (an existing stream is used as it is; a different configuration is logged, not changed).', false),
  name: str('Stream name (required with `create`; otherwise only used to check that the subject is captured).'),
  subjects: list('Subjects the created stream captures (default: the output\'s `subject`).', str('subject'), { default: [] }),
  storage: enumOf('`file` (survives a server restart) or `memory`.', ['file', 'memory'], 'file'),
  replicas: int('Copies of the stream in a JetStream cluster (1, 3 or 5).', 1, 1, 5),
  max_age: dur('Oldest message the stream keeps (0: no limit).', '0s', 0),
  max_bytes: size('Most bytes the stream keeps (0: no limit).', '0', 0),
  max_msgs: int('Most messages the stream keeps (0: no limit).', 0, 0),
  discard: enumOf('What a full stream does: `old` (drop the oldest messages) or `new` (refuse publishes: the output retries until there is room). A receiver (`mode: receiver`) whose stream has `max_msgs` or `max_bytes` must use `new`: `old` would delete raw frames not processed yet.', ['old', 'new'], 'old'),
  duplicate_window: dur('How long the server remembers a `Nats-Msg-Id` to drop a resent event (must cover the longest outage the output retries through; cefd resends a batch after a reconnect).', '2m', 0.001),
});

export const NATS_FIELDS = fields({
  ...NATS_CONNECTION_FIELDS,
  subject: str('Subject every event is published to (JetStream must have a stream capturing it).', { required: true }),
  payload: enumOf('`event`: each event as its encoding writes it; `frame`: the raw frames of a receiver (`mode: receiver`), each published as its own bytes with its id, listener, peer, received time and framing in `Cefd-*` headers, for processors\' `nats` sources.', ['event', 'frame'], 'event'),
  ack_timeout: dur('How long to wait for the server\'s PubAck of one event before the batch is retried.', '10s', 0.001, MAX_TIMER_SECONDS),
  stream: obj('The JetStream stream; with `create: true` cefd creates it with these limits.', NATS_STREAM_FIELDS),
});

export type NatsOutputConfig = ConfigOf<typeof NATS_FIELDS>;
