/** The `syslog` output's options: the one place they are written (type inferred below). */
import { dur, enumOf, fields, int, list, pathSpec, size, str, type ConfigOf, type FieldProblem } from '../../config/spec.js';
import { encodingSpec } from '../plugin.js';
import { FACILITIES, SEVERITIES } from '../../codecs/syslog/names.js';

export { FACILITIES, SEVERITIES };

/** The most a UDP datagram carries over IPv4 (65535 - 20 bytes of IP header - 8 of UDP). */
export const UDP_MAX_PAYLOAD = 65507;

export const SYSLOG_FIELDS = fields({
  transport: enumOf('`tcp`, `tls` (TCP with TLS) or `udp` (no delivery guarantee, see docs/outputs-syslog.md).', ['tcp', 'tls', 'udp'], 'tcp'),
  host: str('Receiver host name or address.', { required: true }),
  port: int('Receiver port; 0: 514 for `tcp` and `udp`, 6514 for `tls` (RFC 5425).', 0, 0, 65535),
  framing: enumOf('Over `tcp`/`tls`: `octet` (RFC 6587 octet counting, `LEN SP MSG`) or `lf` (each message ends with a newline; a record holding a newline is dead-lettered). UDP sends one message per datagram.', ['octet', 'lf'], 'octet'),
  header: enumOf('Syslog header in front of each record: `rfc5424`, `rfc3164` (BSD, time in UTC), or `none` (the record alone).', ['rfc5424', 'rfc3164', 'none'], 'rfc5424'),
  facility: enumOf('Facility of the PRI value.', FACILITIES, 'user'),
  severity: enumOf('Severity of the PRI value.', SEVERITIES, 'info'),
  hostname: str('HOSTNAME of the header (default: this machine\'s host name).'),
  app_name: str('APP-NAME (RFC 5424) or TAG (RFC 3164) of the header.', { default: 'cefd' }),
  msg_id: str('MSGID of an RFC 5424 header (`-`: none).', { default: '-' }),
  max_message_size: size('Largest message (header and record, without framing) sent; a larger record is dead-lettered (`syslog_message_too_big`). Over `udp` it is also held to 65507 bytes (one datagram).', '64KiB', 64),
  resend_window: size('Over `tcp`/`tls`: the last bytes written that are sent again after a connection breaks, because syslog has no acknowledgement (they may not have been read). 0 turns resending off (a break may lose them).', '8MiB', 0),
  connect_timeout: dur('Longest wait for a connection (and TLS handshake).', '10s', 0.001),
  write_timeout: dur('A connection that takes no bytes for this long is taken as dead: it is closed, and its batch retried on a new one.', '30s', 0.001),
  ca_file: pathSpec('`tls`: PEM CA bundle to verify the receiver\'s certificate against (default: the system CAs; not needed with `pin_sha256` alone).'),
  cert_file: pathSpec('`tls`: PEM client certificate, for receivers that require one (with key_file).'),
  key_file: pathSpec('`tls`: PEM private key (unencrypted) of cert_file.'),
  server_name: str('`tls`: name sent in SNI and checked against the certificate (default: `host`).'),
  pin_sha256: list(
    '`tls`: SHA-256 fingerprints of the receiver\'s certificate (hex, colons optional, as `openssl x509 -noout -fingerprint -sha256` prints). When set, the receiver must present one of them; with no `ca_file` the pin alone is checked (a self-signed receiver), with `ca_file` both are.',
    str('SHA-256 fingerprint'),
    { default: [] },
  ),
  encoding: encodingSpec('cef'),
});

export type SyslogConfig = ConfigOf<typeof SYSLOG_FIELDS>;

/** Printable US-ASCII without space (RFC 5424 §6: PRINTUSASCII), `max` characters at most. */
function printable(v: string, max: number): boolean {
  return v.length > 0 && v.length <= max && /^[\x21-\x7e]+$/.test(v);
}

/** Normalized fingerprint: upper-case hex without colons. */
export function normalizePin(fp: string): string {
  return fp.replace(/:/g, '').toUpperCase();
}

/** Checks the schema kinds cannot express (keys relative to the output). */
export function checkSyslog(c: SyslogConfig): FieldProblem[] {
  const out: FieldProblem[] = [];
  if (c.transport !== 'tls') {
    for (const k of ['ca_file', 'cert_file', 'key_file', 'server_name'] as const) {
      if (c[k] !== undefined) out.push({ key: k, message: `only used with transport: tls (transport is ${c.transport})` });
    }
    if (c.pin_sha256.length > 0) out.push({ key: 'pin_sha256', message: `only used with transport: tls (transport is ${c.transport})` });
  }
  if ((c.cert_file === undefined) !== (c.key_file === undefined)) out.push({ key: c.cert_file === undefined ? 'cert_file' : 'key_file', message: 'cert_file and key_file go together' });
  for (const fp of c.pin_sha256) {
    if (!/^[0-9A-F]{64}$/.test(normalizePin(fp))) out.push({ key: 'pin_sha256', message: `not a SHA-256 fingerprint: ${JSON.stringify(fp)}` });
  }
  if (c.hostname !== undefined && !printable(c.hostname, 255)) out.push({ key: 'hostname', message: 'expected 1 to 255 printable ASCII characters without spaces' });
  if (!printable(c.app_name, 48)) out.push({ key: 'app_name', message: 'expected 1 to 48 printable ASCII characters without spaces' });
  if (!printable(c.msg_id, 32)) out.push({ key: 'msg_id', message: 'expected 1 to 32 printable ASCII characters without spaces' });
  for (const k of ['connect_timeout', 'write_timeout'] as const) if (c[k] * 1000 > 2 ** 31 - 1) out.push({ key: k, message: 'must be at most 24 days' });
  return out;
}
