/** The `tcp` and `tls` source plugins (registered in src/sources/registry.ts). */
import { defineSource } from '../plugin.js';
import { checkTls, STREAM_FIELDS, TLS_FIELDS } from './config.js';

export const tcpSource = defineSource({
  type: 'tcp',
  doc: 'Syslog over TCP: LF or RFC 6587 octet-counted frames, detected per frame.',
  fields: STREAM_FIELDS,
  protocol: 'tcp',
  create: async (c, d) => new (await import('./stream.js')).StreamSource(c, d.pipeline, d.flow, d.telemetry, d.normalizers),
});

export const tlsSource = defineSource({
  type: 'tls',
  doc: 'Syslog over TLS (RFC 5425 framing or LF).',
  fields: TLS_FIELDS,
  protocol: 'tcp',
  check: checkTls,
  create: async (c, d) => new (await import('./stream.js')).StreamSource(c, d.pipeline, d.flow, d.telemetry, d.normalizers),
});
