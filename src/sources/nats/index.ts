/** The `nats` source plugin (registered in src/sources/registry.ts). */
import { checkNatsConnection } from '../../nats/config.js';
import { defineSource } from '../plugin.js';
import { NATS_SOURCE_FIELDS } from './config.js';

export const natsSource = defineSource({
  type: 'nats',
  doc: 'Frames from a NATS JetStream stream (a durable pull consumer), each acknowledged once every output\'s buffer took its event; `host`, `port` and `allowed_cidrs` do not apply.',
  fields: NATS_SOURCE_FIELDS,
  protocol: 'none',
  check: (c) => checkNatsConnection(c),
  create: async (c, d) => new (await import('./nats.js')).NatsSource(c, d),
});
