/**
 * RFC 5424 §6.2.1 names of the PRI's parts: the syslog output writes a configured name as
 * its code (src/outputs/syslog/config.ts), the `kuma` encoding a received code as its name
 * (`DeviceFacility`, src/codecs/encoders/kuma.ts).
 */

/** Facility names, in code order (facility = index). */
export const FACILITIES = [
  'kern', 'user', 'mail', 'daemon', 'auth', 'syslog', 'lpr', 'news', 'uucp', 'cron', 'authpriv', 'ftp', 'ntp', 'audit', 'alert', 'clock',
  'local0', 'local1', 'local2', 'local3', 'local4', 'local5', 'local6', 'local7',
] as const;

/** Severity names, in code order. */
export const SEVERITIES = ['emerg', 'alert', 'crit', 'err', 'warning', 'notice', 'info', 'debug'] as const;
