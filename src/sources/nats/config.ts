/** The `nats` source's options: the one place they are written (type inferred below). */
import { dur, fields, int, str, type ConfigOf, MAX_TIMER_SECONDS } from '../../config/spec.js';
import { NATS_CONNECTION_FIELDS } from '../../nats/config.js';

export const NATS_SOURCE_FIELDS = fields({
  ...NATS_CONNECTION_FIELDS,
  stream: str('JetStream stream to read.', { required: true }),
  consumer: str('Durable consumer name: cefd processors that share it share the work (each message goes to one of them); it keeps its position across restarts.', { required: true }),
  filter_subject: str('Read only the stream\'s messages on this subject (default: all). An existing consumer with another filter is not read (`nats_consumer_mismatch`).'),
  batch_size: int('Most messages fetched at once; the messages of one read from the connection, up to this many, go to a decode worker as one batch.', 256, 1, 10000),
  max_ack_pending: int('Most messages delivered and not yet acknowledged, across every processor sharing the consumer; then the server waits. Set on the consumer when this listener makes it; an existing consumer keeps its own (logged when it differs).', 4096, 1),
  ack_wait: dur('A message not acknowledged within this time is delivered again (to any processor). While its events wait for the outputs (or the KSC work they made), an in-progress acknowledgement every third of this time keeps it, up to `max_in_progress`. Set on the consumer when this listener makes it; an existing consumer keeps its own (logged when it differs) and the in-progress acknowledgements follow the consumer\'s.', '30s', 1, MAX_TIMER_SECONDS),
  max_in_progress: dur('How long a message handed to the outputs and not yet acknowledged is kept from redelivery by in-progress acknowledgements; after that the server delivers it again `ack_wait` after the last one (to any processor).', '5m', 1),
  fetch_wait: dur('How long one fetch waits for messages when the stream is idle.', '1s', 0.01, MAX_TIMER_SECONDS),
});

export type NatsSourceConfig = ConfigOf<typeof NATS_SOURCE_FIELDS>;
