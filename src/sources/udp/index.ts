/** The `udp` source plugin (registered in src/sources/registry.ts). */
import { defineSource } from '../plugin.js';
import { UDP_FIELDS } from './config.js';

export const udpSource = defineSource({
  type: 'udp',
  doc: 'Syslog over UDP: one message per datagram, or several LF-separated ones.',
  fields: UDP_FIELDS,
  protocol: 'udp',
  create: async (c, d) => new (await import('./udp.js')).UdpSource(c, d.pipeline, d.telemetry, d.normalizers),
});
