import { describe, expect, test } from 'vitest';
import { decodeFrame } from '../../src/codecs/decode.js';
import type { CefdEvent } from '../../src/event.js';

import { expandEvent } from '../../src/codecs/encoders/native.js';

/**
 * The header as read: the event leaves `syslog.timestamp` out when it is `timestamp` and
 * writes null when there was none (docs/event-format.md); `syslog_timestamp: always` gives
 * it back as read.
 */
const sys = (e: CefdEvent) => expandEvent(e, { syslog_timestamp: 'always' }).syslog;
const NOW = Date.UTC(2026, 10, 28, 12, 0, 0);

function decode(line: string | Buffer) {
  return decodeFrame(typeof line === 'string' ? Buffer.from(line, 'utf8') : line, false, NOW);
}
function ev(line: string | Buffer): CefdEvent {
  const r = decode(line);
  if (!r.ok) throw new Error(`not an event: ${r.failure.code}`);
  return r.event;
}
const codes = (e: CefdEvent) => [...(e.errors ?? []), ...(e.warnings ?? [])].map((p) => p.code);

describe('RFC 5424', () => {
  test('every header field, fraction and offset, structured data with escapes, BOM dropped', () => {
    const e = ev('<165>1 2003-10-11T22:14:15.003000+02:00 mymachine.example.com evntslog 1234 ID47 [exampleSDID@32473 iut="3" eventSource="App\\"li\\\\ca\\]tion" path="C:\\Temp"][examplePriority@32473 class="high"] \ufeffAn application event');
    expect(sys(e)).toEqual({
      format: 'rfc5424',
      facility: 20,
      severity: 5,
      timestamp: '2003-10-11T20:14:15.003000Z',
      hostname: 'mymachine.example.com',
      appName: 'evntslog',
      procId: '1234',
      msgId: 'ID47',
      structuredData: {
        'exampleSDID@32473': { iut: '3', eventSource: 'App"li\\ca]tion', path: 'C:\\Temp' },
        'examplePriority@32473': { class: 'high' },
      },
    });
    expect(e.message).toBe('An application event');
    expect(codes(e)).toEqual(['not_cef']);
    expect(e.timestamp).toBe('2003-10-11T20:14:15.003000Z');
  });

  test('NILVALUEs and no message', () => {
    const e = ev('<34>1 - - - - - -');
    expect(sys(e)).toEqual({ format: 'rfc5424', facility: 4, severity: 2 });
    expect(e.message).toBe('');
  });

  test('KSC Syslog export: MSGID cut at 32 chars, SD values, literal \\r\\n and raw backslashes in MSG', () => {
    const line =
      '<29>1 2022-03-18T18:08:07.000Z WS11128 KES|11.0.0.0 - GNRL_EV_APPLICATION_LAUNCH_DENIE [event@23668 p2="NT AUTHORITY\\\\SYSTEM" p5="{\\"CertSerial\\":\\"\\"}" et="GNRL_EV_APPLICATION_LAUNCH_DENIED" hip="10.21.203.17"] Event type: Application startup prohibited\\r\\nPath to object: C:\\Windows\\rm.bat';
    const e = ev(line);
    expect(sys(e)?.msgId).toBe('GNRL_EV_APPLICATION_LAUNCH_DENIE');
    expect(sys(e)?.appName).toBe('KES|11.0.0.0');
    expect(sys(e)?.structuredData).toEqual({
      'event@23668': { p2: 'NT AUTHORITY\\SYSTEM', p5: '{"CertSerial":""}', et: 'GNRL_EV_APPLICATION_LAUNCH_DENIED', hip: '10.21.203.17' },
    });
    expect(e.message).toBe('Event type: Application startup prohibited\\r\\nPath to object: C:\\Windows\\rm.bat');
  });

  test('without PRI (a relay stripped it)', () => {
    const e = ev('1 2024-02-19T13:18:51.000Z EXAMPLE-PC KES|11.0.0.0 - GNRL_EV_OBJECT_BLOCKED [event@11111 et="GNRL_EV_OBJECT_BLOCKED"] Описание');
    expect(sys(e)).toMatchObject({ format: 'rfc5424', hostname: 'EXAMPLE-PC', msgId: 'GNRL_EV_OBJECT_BLOCKED' });
    expect(sys(e)?.facility).toBeUndefined();
    expect(e.message).toBe('Описание');
  });

  test('CEF as the RFC 5424 message', () => {
    const e = ev('<14>1 2024-05-06T07:02:41.000Z ksc01.corp.example - - - - CEF:0|KasperskyLab|SecurityCenter|13.2|KLPRCI_TaskState|Done|1|dhost=WS');
    expect(sys(e)?.hostname).toBe('ksc01.corp.example');
    expect(e.cef?.deviceEventClassId).toBe('KLPRCI_TaskState');
    expect(e.prefix).toBeUndefined();
    expect(e.timestamp).toBe('2024-05-06T07:02:41.000Z');
  });

  test('a header cut short before CEF (SC4S style: <PRI>1 TIMESTAMP HOST CEF:...)', () => {
    const e = ev('<14>1 2024-05-06T07:02:41.000Z ksc01.corp.example CEF:0|KasperskyLab|SecurityCenter|13.2|KLPRCI_TaskState|Done|1|dhost=WS');
    expect(sys(e)).toEqual({ format: 'rfc5424', facility: 1, severity: 6, timestamp: '2024-05-06T07:02:41.000Z', hostname: 'ksc01.corp.example' });
    expect(e.cef?.deviceProduct).toBe('SecurityCenter');
    expect(e.prefix).toBeUndefined();
    const e2 = ev('<14>1 2024-05-06T07:02:41.000Z host app - - CEF:0|a|b|c|d|e|1|x=y');
    expect(sys(e2)?.appName).toBe('app');
    expect(e2.cef?.extensions).toEqual({ x: 'y' });
  });

  test('a header cut before HOSTNAME, or right after VERSION, still gives the CEF record', () => {
    const e = ev('<14>1 2024-05-06T07:02:41.000Z CEF:0|KasperskyLab|SecurityCenter|13.2|KLPRCI_TaskState|Done|1|rt=1714978961000 cs10=Update cs10Label=TaskName cn2=4 cn2Label=TaskNewState dhost=WS');
    expect(sys(e)).toEqual({ format: 'rfc5424', facility: 1, severity: 6, timestamp: '2024-05-06T07:02:41.000Z' });
    expect(e.cef?.deviceEventClassId).toBe('KLPRCI_TaskState');
    expect(e.cef?.extensions).toEqual({ deviceReceiptTime: '1714978961000', destinationHostName: 'WS' });
    expect(e.cef?.custom).toEqual({ 'cs10:TaskName': 'Update', 'cn2:TaskNewState': 4 });
    expect(e.prefix).toBeUndefined();
    expect(e.message).toBeUndefined();
    expect(codes(e)).not.toContain('not_cef');
    const nil = ev('<14>1 - CEF:0|V|P|1|id|n|1|a=b');
    expect(nil.syslog).toEqual({ format: 'rfc5424', facility: 1, severity: 6, timestamp: null });
    expect(nil.cef?.extensions).toEqual({ a: 'b' });
    const bare = ev('<14>1 CEF:0|V|P|1|id|n|1|a=b c=d e=f g=h i=j');
    expect(bare.syslog).toEqual({ format: 'rfc5424', facility: 1, severity: 6, timestamp: null });
    expect(bare.cef?.extensions).toEqual({ a: 'b', c: 'd', e: 'f', g: 'h', i: 'j' });
    expect(codes(bare)).toEqual([]);
    const noPri = ev('1 2024-05-06T07:02:41.000Z CEF:0|V|P|1|id|n|1|a=b');
    expect(sys(noPri)).toEqual({ format: 'rfc5424', timestamp: '2024-05-06T07:02:41.000Z' });
    expect(noPri.cef?.name).toBe('n');
  });

  test('broken structured data keeps the header and makes the rest the message', () => {
    const e = ev('<14>1 2024-05-06T07:02:41Z host app - ID [ev@1 a="unterminated] text');
    expect(sys(e)?.hostname).toBe('host');
    expect(e.message).toBe('[ev@1 a="unterminated] text');
    expect(codes(e)).toEqual(['syslog_bad_structured_data', 'not_cef']);
  });

  test('a parameter sent twice (RFC 5424 allows it): the last value is kept, the earlier one is in a warning', () => {
    const e = ev('<10>1 2024-05-06T07:02:41Z host KES|11.0.0.0 - X [event@23668 p5="EICAR" et="X" p5="Second \\"one\\""][event@23668 et="Y"] text');
    expect(sys(e)?.structuredData).toEqual({ 'event@23668': { p5: 'Second "one"', et: 'Y' } });
    expect(codes(e)).toEqual(['syslog_duplicate_param', 'syslog_duplicate_param', 'not_cef']);
    expect(e.warnings![0]).toEqual({
      code: 'syslog_duplicate_param',
      key: 'p5',
      message: 'parameter p5 appears twice in [event@23668]: the last value wins, the earlier one was "EICAR"',
    });
    expect(e.warnings![1]!.message).toContain('the earlier one was "X"');
    // One of each: no warning.
    expect(codes(ev('<10>1 2024-05-06T07:02:41Z host app - X [a@1 p="1" q="1"][b@1 p="2"] text'))).toEqual(['not_cef']);
  });

  test('a bad timestamp with a PRI is a warning, the rest is read', () => {
    const e = ev('<14>1 yesterday host app - - - CEF:0|a|b|c|d|e|1|');
    expect(sys(e)?.hostname).toBe('host');
    expect(codes(e)).toContain('syslog_bad_timestamp');
  });
});

describe('RFC 3164', () => {
  test('PRI, space-padded day, inferred year, host, tag with pid', () => {
    const e = ev('<13>Feb  5 17:32:18 myhost su[123]: hello world');
    expect(sys(e)).toEqual({ format: 'rfc3164', facility: 1, severity: 5, timestamp: '2026-02-05T17:32:18.000Z', hostname: 'myhost', appName: 'su', procId: '123' });
    expect(e.message).toBe('hello world');
  });

  test('a date in the future by more than a day is last year', () => {
    expect(sys(ev('<13>Dec 24 10:00:00 h t: x'))?.timestamp).toBe('2025-12-24T10:00:00.000Z');
  });

  test('without PRI; tag glued to CEF:', () => {
    const e = ev('Sep 10 16:03:01 172.30.0.20 ASM:CEF:0|F5|ASM|11.0.0|id|n|8|a=b');
    expect(sys(e)).toMatchObject({ hostname: '172.30.0.20', appName: 'ASM' });
    expect(e.cef?.version).toBe('0');
  });

  test('no hostname, CEF right after the timestamp', () => {
    const e = ev('<132>Nov 13 13:17:41 CEF:0|Trend Micro Inc.|OSSEC HIDS|v2.9.2|1002|x|2|dvc=log');
    expect(sys(e)?.hostname).toBeUndefined();
    expect(e.cef?.deviceVendor).toBe('Trend Micro Inc.');
  });

  test('text before CEF: that is not a tag is the prefix', () => {
    const e = ev('Dec  2 03:17:06 hostname tag CEF:0|V|P|1|2|N|S|cs1=test');
    expect(sys(e)?.hostname).toBe('hostname');
    expect(e.prefix).toBe('tag');
  });

  test('the CEF spec timestamp formats with year, fraction and zone', () => {
    expect(sys(ev('May 02 2017 15:27:43.000 UTC hostname.example.com CEF:0|a|b|c|d|e|1|'))).toMatchObject({ timestamp: '2017-05-02T15:27:43.000Z', hostname: 'hostname.example.com' });
    expect(sys(ev('May 02 2017 15:27:43 Europe/Berlin host CEF:0|a|b|c|d|e|1|'))?.timestamp).toBe('2017-05-02T13:27:43.000Z');
  });

  test('an RFC 3339 timestamp in place of the RFC 3164 one', () => {
    const e = ev('2014-06-07T18:55:09.019283+09:00 hostname tag CEF:0|V|P|1|2|N|3|foo=bar');
    expect(sys(e)).toMatchObject({ timestamp: '2014-06-07T09:55:09.019283Z', hostname: 'hostname' });
  });

  test('a readable RFC 3164 header without CEF is an event with not_cef (KSC relayed by a BSD-template syslog)', () => {
    const e = ev('<10>May  6 09:14:27 WS-0142.corp.example KES|11.0.0.0: Result description: Detected\\r\\nObject: C:\\Users\\j.doe\\eicar.com');
    expect(sys(e)).toMatchObject({ hostname: 'WS-0142.corp.example', appName: 'KES|11.0.0.0' });
    expect(e.message).toBe('Result description: Detected\\r\\nObject: C:\\Users\\j.doe\\eicar.com');
    expect(codes(e)).toEqual(['not_cef']);
  });

  test('a host name that is also an old IANA link (Japan, Cuba) or a zone word in lower case (z, utc-05) stays the host name; the time is not moved', () => {
    for (const host of ['Japan', 'Cuba', 'Egypt', 'z', 'ut', 'utc', 'gmt', 'utc-05', 'Gmt+3']) {
      const e = ev(`<13>Jan  5 01:02:03 ${host} app: CEF:0|a|b|c|d|e|1|`);
      expect(sys(e)).toMatchObject({ hostname: host, appName: 'app', timestamp: '2026-01-05T01:02:03.000Z' });
    }
  });

  test('thousands of distinct host names after the time stamp: each still read as a host', () => {
    for (let i = 0; i < 3000; i++) expect(sys(ev(`<13>Jan  5 01:02:03 host-${i} app: x`))?.hostname).toBe(`host-${i}`);
    expect(sys(ev('May 02 2017 15:27:43 Europe/Berlin host CEF:0|a|b|c|d|e|1|'))?.timestamp).toBe('2017-05-02T13:27:43.000Z');
  });

  test('the configured zone applies to RFC 3164 times without one', () => {
    const r = decodeFrame(Buffer.from('<13>Jul  1 12:00:00 h t: x'), false, NOW, { defaultZone: 'Europe/Moscow' });
    expect(r.ok && sys(r.event)?.timestamp).toBe('2026-07-01T09:00:00.000Z');
  });
});

describe('no header, and failures', () => {
  test('a bare CEF line has no syslog object', () => {
    const e = ev('CEF:0|a|b|c|d|e|1|x=y');
    expect(sys(e)).toBeUndefined();
    expect(e.timestamp).toBe(e.received);
  });

  test('<PRI> then CEF', () => {
    expect(sys(ev('<14>CEF:0|a|b|c|d|e|1|x=y'))).toEqual({ format: 'rfc3164', facility: 1, severity: 6 });
  });

  test('CEF: counts only at the start or after a blank or colon', () => {
    expect(decode('leading garbageCEF:1|a|b|c|d|e|1|').ok).toBe(false);
    expect(ev('garbage CEF:1|a|b|c|d|e|1|').prefix).toBe('garbage');
    expect(ev('\ufeffCEF:0|a|b|c|d|e|1|').cef?.version).toBe('0');
    expect(ev('x \ufeffCEF:0|a|b|c|d|e|1|').prefix).toBe('x');
  });

  test('neither header nor CEF is unparseable', () => {
    for (const l of ['hello world!', '<14>just text', '1493738863000 host no cef', '']) {
      const r = decode(l);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.failure.code).toBe('unparseable');
    }
  });

  test('a bare LEEF record (KSC\'s "QRadar" export) is unparseable with a message that says so and what to choose', () => {
    for (const l of ['LEEF:1.0|KasperskyLab|SecurityCenter|10.2.434|GNRL_EV_ATTACK_DETECTED|cat=KLSC\tsrc=10.0.0.5', '\ufeffLEEF:2.0|KasperskyLab|SecurityCenter|15|X|']) {
      const r = decode(l);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.failure).toEqual({ code: 'unparseable', message: 'a LEEF record, which cefd does not read: set KSC\'s SIEM export to "ArcSight (CEF format)" or "Syslog"' });
    }
    const other = decode('hello LEEF:1.0|x');
    if (!other.ok) expect(other.failure.message).toBe('no readable syslog header and no CEF record');
    expect(other.ok).toBe(false);
  });

  test('invalid UTF-8: U+FFFD, warning, exact bytes in rawBase64; a real U+FFFD is not flagged', () => {
    const bytes = Buffer.concat([Buffer.from('CEF:0|a|b|c|d|e|1|msg='), Buffer.from([0xe3, 0x81]), Buffer.from(' x=1')]);
    const e = ev(bytes);
    expect(e.cef?.extensions.message).toBe('\ufffd');
    expect(codes(e)).toEqual(['invalid_utf8']);
    expect(Buffer.from(e.rawBase64!, 'base64').equals(bytes)).toBe(true);
    const ok = ev('CEF:0|a|b|c|d|e|1|msg=\ufffd');
    expect(ok.rawBase64).toBeUndefined();
    expect(ok.warnings).toBeUndefined();
  });

  test('a truncated frame is flagged', () => {
    const r = decodeFrame(Buffer.from('CEF:0|a|b|c|d|e|1|msg=abc'), true, NOW);
    expect(r.ok && r.event.truncated).toBe(true);
    expect(r.ok && r.event.warnings?.[0]?.code).toBe('frame_truncated');
  });
});
