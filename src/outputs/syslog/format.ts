/**
 * Syslog messages and their framing, as bytes: the header (RFC 5424 §6, RFC 3164 §4.1, or
 * none) in front of each record, then RFC 6587 framing over a stream (§3.4.1 octet
 * counting: `LEN SP MSG`, LEN the message's byte count; §3.4.2 non-transparent framing: MSG
 * then LF). Pure functions; the output (syslog.ts) decides what to do with a record that
 * does not fit.
 */
import { FACILITIES, SEVERITIES } from './config.js';

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

export interface HeaderOptions {
  header: 'rfc5424' | 'rfc3164' | 'none';
  facility: (typeof FACILITIES)[number];
  severity: (typeof SEVERITIES)[number];
  hostname: string;
  appName: string;
  msgId: string;
  procId: string;
}

/** PRI = facility * 8 + severity (RFC 5424 §6.2.1). */
export function priOf(o: Pick<HeaderOptions, 'facility' | 'severity'>): number {
  return FACILITIES.indexOf(o.facility) * 8 + SEVERITIES.indexOf(o.severity);
}

const two = (n: number) => (n < 10 ? `0${n}` : String(n));

/**
 * The header text for messages sent at `now`: its TIMESTAMP is the forwarding time and its
 * HOSTNAME the configured one (cefd's), not the event's. The record must carry those: the
 * `cef` encoding writes the event's time as `rt` and its sender as `dvchost` when the CEF
 * record has neither (src/codecs/encoders/cef.ts); the JSON encodings have them in their
 * own fields (`@timestamp`, `Timestamp`, ...). RFC 5424: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - `, no
 * structured data, no BOM (CEF receivers read the message as it starts). RFC 3164:
 * `<PRI>Mmm dd hh:mm:ss HOSTNAME TAG[PID]: ` in UTC (3164 has no zone; cefd reads such
 * times in its `timezone`, UTC by default).
 */
export function headerText(o: HeaderOptions, now: Date): string {
  const pri = priOf(o);
  switch (o.header) {
    case 'none':
      return '';
    case 'rfc5424':
      return `<${pri}>1 ${now.toISOString()} ${o.hostname} ${o.appName} ${o.procId} ${o.msgId} - `;
    case 'rfc3164': {
      const d = now.getUTCDate();
      const ts = `${MONTHS[now.getUTCMonth()]} ${d < 10 ? ` ${d}` : d} ${two(now.getUTCHours())}:${two(now.getUTCMinutes())}:${two(now.getUTCSeconds())}`;
      return `<${pri}>${ts} ${o.hostname} ${o.appName}[${o.procId}]: `;
    }
  }
}

/** One framed message: `LEN SP header record` (octet) or `header record LF` (lf). */
export function frame(framing: 'octet' | 'lf' | 'datagram', header: Buffer, record: string, recordBytes: number): Buffer {
  const len = header.length + recordBytes;
  if (framing === 'datagram') {
    const b = Buffer.allocUnsafe(len);
    header.copy(b, 0);
    b.write(record, header.length, 'utf8');
    return b;
  }
  if (framing === 'lf') {
    const b = Buffer.allocUnsafe(len + 1);
    header.copy(b, 0);
    b.write(record, header.length, 'utf8');
    b[len] = 0x0a;
    return b;
  }
  const prefix = `${len} `;
  const b = Buffer.allocUnsafe(prefix.length + len);
  b.write(prefix, 0, 'latin1');
  header.copy(b, prefix.length);
  b.write(record, prefix.length + header.length, 'utf8');
  return b;
}
