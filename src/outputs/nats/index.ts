/** The `nats` output plugin (registered in src/outputs/registry.ts). */
import { checkNatsConnection } from '../../nats/config.js';
import { defineOutput } from '../plugin.js';
import { NATS_FIELDS } from './config.js';
import { NatsOutput } from './nats.js';

export const natsOutput = defineOutput({
  type: 'nats',
  doc: 'NATS JetStream publish, each event acknowledged by the server (PubAck) and deduplicated by its id.',
  fields: NATS_FIELDS,
  diskBuffer: true,
  check: (c) => {
    const out = checkNatsConnection(c);
    if (c.stream.create && c.stream.name === undefined) out.push({ key: 'stream.name', message: 'stream.create needs stream.name' });
    if (c.stream.replicas !== 1 && c.stream.replicas !== 3 && c.stream.replicas !== 5) out.push({ key: 'stream.replicas', message: 'JetStream replicas are 1, 3 or 5' });
    return out;
  },
  create: (c) => new NatsOutput(c.name, c),
});
