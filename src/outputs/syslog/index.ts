/** The `syslog` output plugin (registered in src/outputs/registry.ts). */
import { defineOutput } from '../plugin.js';
import { checkSyslog, SYSLOG_FIELDS } from './config.js';
import { SyslogOutput } from './syslog.js';

export const syslogOutput = defineOutput({
  type: 'syslog',
  doc: 'Syslog forwarding (CEF by default) over TCP, TLS or UDP to another collector or SIEM.',
  fields: SYSLOG_FIELDS,
  diskBuffer: true,
  check: checkSyslog,
  create: (c) => new SyslogOutput(c.name, c),
});
