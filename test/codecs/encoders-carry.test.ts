/**
 * What the encoders carry beyond the record itself (src/codecs/encoders; docs/encodings.md):
 * the `cef` re-emit keeps the event's time and sender (`rt`, `dvchost`) once the syslog
 * header is gone; `kuma` writes each `Extra` key once, as the ksc normalizer names labels,
 * and KSC's TaskName in FlexString1; `ecs` and `kuma` keep a syslog header's fields; `ecs`
 * ports are ports and empty CEF header fields are no fields. Writes no files.
 */
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { decodeFrame } from '../../src/codecs/decode.js';
import type { CefdEvent } from '../../src/event.js';
import { normalizeEvent } from '../../src/pipeline/normalize.js';
import { createEncoder } from '../../src/codecs/encoders/registry.js';
import ksc from '../../normalizers/ksc/index.js';
import { kscView } from '../../normalizers/ksc/lean.js';

const NOW = Date.UTC(2024, 5, 1, 12, 0, 0);

function decode(line: string): CefdEvent {
  const r = decodeFrame(Buffer.from(line), false, NOW);
  if (!r.ok) throw new Error(`not an event: ${line}`);
  normalizeEvent(r.event, [ksc]);
  return r.event;
}

type Doc = Record<string, any>;
const json = (codec: string, line: string): Doc => JSON.parse(createEncoder({ codec }).encode(decode(line))) as Doc;

describe('cef: the event\'s time and sender travel in the record', () => {
  test('a CEF record without rt or dvchost gets the event\'s time and its syslog sender; its own stay as they are', () => {
    const enc = createEncoder({ codec: 'cef' });
    expect(enc.encode(decode('<14>1 2024-05-06T07:00:00.000Z fw01.corp app - - - CEF:0|V|P|1|C|N|5|src=1.2.3.4'))).toBe('CEF:0|V|P|1|C|N|5|src=1.2.3.4 rt=1714978800000 dvchost=fw01.corp');
    expect(enc.encode(decode('<14>1 2024-05-06T07:00:00.000Z relay app - - - CEF:0|V|P|1|C|N|5|rt=1647626887000 dvchost=fw02'))).toBe('CEF:0|V|P|1|C|N|5|rt=1647626887000 dvchost=fw02');
    // Empty ones say nothing: replaced.
    expect(enc.encode(decode('<14>1 2024-05-06T07:00:00.000Z fw01 app - - - CEF:0|V|P|1|C|N|5|rt= dvchost= src=1.2.3.4'))).toBe('CEF:0|V|P|1|C|N|5|rt=1714978800000 dvchost=fw01 src=1.2.3.4');
    // KSC's Syslog format: the sender is the Administration Server (kscfqdn), not the HOSTNAME (the managed device).
    const k = enc.encode(decode('<14>1 2024-05-06T07:00:00.000Z ws1.corp KES|11.0.0.0 - GNRL_EV_VIRUS_FOUND [event@23668 et="GNRL_EV_VIRUS_FOUND" hdn="WS1" kscfqdn="ksc01.corp"] text'));
    expect(decode(k).cef!.extensions).toMatchObject({ deviceReceiptTime: '1714978800000', deviceHostName: 'ksc01.corp', destinationHostName: 'WS1' });
    expect(enc.problems.take()).toEqual([]);
  });

  // As the syslog output sends a record: under its own header, with the forwarding time and its host name.
  const relay = (record: string) => `<14>1 2030-01-01T00:00:00.000Z relay.example cefd - - - ${record}`;
  const host = fc.stringMatching(/^[a-z][a-z0-9-]{0,8}(\.[a-z0-9]{1,5}){0,2}$/);
  const time = fc.tuple(fc.integer({ min: Date.UTC(2000, 0, 1), max: Date.UTC(2029, 0, 1) }), fc.boolean())
    .map(([ms, micro]) => new Date(ms).toISOString().replace('Z', micro ? '456Z' : 'Z'));
  const rt = fc.option(fc.integer({ min: Date.UTC(2000, 0, 1), max: Date.UTC(2029, 0, 1) }));
  const dvchost = fc.option(fc.oneof(host, fc.constant('')));
  const head = fc.constantFrom('V|P|1|C|N|5', 'KasperskyLab|SecurityCenter|14.2|GNRL_EV_VIRUS_FOUND|x|4', 'KasperskyLab|SecurityCenter|14.2|KLPRCI_TaskState|x|1');
  const ext = (r: number | null, d: string | null) => `dhost=WS1${r !== null ? ` rt=${r}` : ''}${d !== null ? ` dvchost=${d}` : ''} cs10=Scan cs10Label=TaskName`;
  const frame = fc.oneof(
    // CEF in RFC 5424 and RFC 3164 syslog, and without a header.
    fc.tuple(time, host, head, rt, dvchost).map(([t, h, hd, r, d]) => `<14>1 ${t} ${h} app - - - CEF:0|${hd}|${ext(r, d)}`),
    fc.tuple(host, head, rt, dvchost).map(([h, hd, r, d]) => `<13>May  6 07:00:00 ${h} app: CEF:0|${hd}|${ext(r, d)}`),
    fc.tuple(head, rt, dvchost).map(([hd, r, d]) => `CEF:0|${hd}|${ext(r, d)}`),
    // KSC's Syslog format, with and without the server's name.
    fc.tuple(time, host, fc.option(host)).map(([t, h, s]) => `<14>1 ${t} ${h} KES|11.0.0.0 - GNRL_EV_VIRUS_FOUND [event@23668 et="GNRL_EV_VIRUS_FOUND" hdn="WS1"${s !== null ? ` kscfqdn="${s}"` : ''}] text`),
    // Plain syslog.
    fc.tuple(time, host).map(([t, h]) => `<14>1 ${t} ${h} app 12 ID1 - hello`),
  );

  test('encoded as cef, forwarded under another header and read again: the same @timestamp (to the millisecond) and observer.hostname (a property)', () => {
    const cef = createEncoder({ codec: 'cef' });
    const ecs = createEncoder({ codec: 'ecs' });
    fc.assert(
      fc.property(frame, (line) => {
        const a = JSON.parse(ecs.encode(decode(line))) as Doc;
        const b = JSON.parse(ecs.encode(decode(relay(cef.encode(decode(line)))))) as Doc;
        expect(Date.parse(b['@timestamp'] as string), `${line} -> ${b['@timestamp']}`).toBe(Date.parse(a['@timestamp'] as string));
        // No sender known (a bare CEF line, a Syslog-format line without kscfqdn): the relay is the first one.
        expect(b['observer']?.['hostname'], line).toBe(a['observer']?.['hostname'] ?? 'relay.example');
      }),
      { numRuns: 400 },
    );
    expect(cef.problems.take()).toEqual([]);
  });
});

describe('kuma: Extra never loses a value', () => {
  test('a label on several custom fields: the lowest slot keeps it, the others are <label>#<fullName>, as in ksc.labels; counted', () => {
    const enc = createEncoder({ codec: 'kuma' });
    // cs10 before cs9: the slot decides, not the order.
    const e = decode('CEF:0|KasperskyLab|SecurityCenter|14.2|GNRL_EV_VIRUS_FOUND|x|4|rt=1647626887000 dhost=h cs1=v cs1Label=VirusName cs10=dup cs10Label=GroupName cs9=g cs9Label=GroupName');
    const k = JSON.parse(enc.encode(e)) as Doc;
    expect(kscView(e)!.labels).toMatchObject({ GroupName: 'g', 'GroupName#deviceCustomString10': 'dup' });
    expect(k['Extra']).toMatchObject({ GroupName: 'g', 'GroupName#deviceCustomString10': 'dup' });
    expect(enc.problems.take()).toEqual([['encode_key_renamed', 1]]);
    // The winner on a KUMA slot: the other one in Extra under the normalizer's name.
    const s = JSON.parse(enc.encode(decode('CEF:0|V|P|1|C|N|5|cs7=p2 cs7Label=ProductName cs2=p cs2Label=ProductName'))) as Doc;
    expect(s).toMatchObject({ DeviceCustomString2: 'p', DeviceCustomString2Label: 'ProductName', Extra: { 'ProductName#deviceCustomString7': 'p2' } });
    expect(enc.problems.take()).toEqual([['encode_key_renamed', 1]]);
  });

  test('a label or key named like a key cefd derives, or an unknown key named like a label: renamed and counted, never overwritten', () => {
    const enc = createEncoder({ codec: 'kuma' });
    const k = JSON.parse(enc.encode(decode('CEF:0|KasperskyLab|SecurityCenter|14.2|GNRL_EV_VIRUS_FOUND|x|4|KscSeverity=s GroupName=unknown cs8=mine cs8Label=KscCategory cs9=g cs9Label=GroupName'))) as Doc;
    expect(k['Extra']).toEqual({
      'KscCategory#deviceCustomString8': 'mine',
      GroupName: 'g',
      'KscSeverity#extension': 's',
      'GroupName#extension': 'unknown',
      KscCategory: 'detection',
      KscSeverity: 'critical',
      KscThreatAction: 'detected',
    });
    expect(enc.problems.take()).toEqual([['encode_key_renamed', 3]]);
    // A label that is another one's new name: a number after it.
    const h = JSON.parse(enc.encode(decode('CEF:0|V|P|1|C|N|5|cs7=a cs7Label=L cs8=b cs8Label=L cs9=c cs9Label=L#deviceCustomString8 L=d'))) as Doc;
    expect(h['Extra']).toEqual({ L: 'a', 'L#deviceCustomString8': 'b', 'L#deviceCustomString8#deviceCustomString9': 'c', 'L#extension': 'd' });
    expect(enc.problems.take()).toEqual([['encode_key_renamed', 3]]);
  });

  test('every value of a record is in the KUMA event once, whatever the labels and keys (a property)', () => {
    const enc = createEncoder({ codec: 'kuma' });
    const names = fc.constantFrom('L', 'GroupName', 'TaskName', 'KscCategory', 'KscHostFqdn', 'L#deviceCustomString8', 'L#extension', 'foo');
    const slot = fc.tuple(fc.constantFrom('cs', 'flexString'), fc.integer({ min: 1, max: 12 })).map(([f, n]) => `${f}${n}`);
    const line = fc.tuple(
      fc.constantFrom('CEF:0|V|P|1|C|N|5|', 'CEF:0|KasperskyLab|SecurityCenter|14.2|KLPRCI_TaskState|x|1|'),
      fc.uniqueArray(fc.tuple(slot, names), { selector: ([s]) => s, maxLength: 20 }),
      fc.uniqueArray(names, { maxLength: 4 }),
    );
    fc.assert(
      fc.property(line, ([h, slots, unknown]) => {
        const values: string[] = [];
        const pairs = slots.map(([s, l], i) => (values.push(`v${i}`), `${s}=v${i} ${s}Label=${l}`));
        // Unknown keys: names that are not CEF keys (`foo`, a label text); `L#...` is no key.
        const keys = unknown.filter((u) => /^[A-Za-z]+$/.test(u)).map((u, i) => (values.push(`u${i}`), `${u}=u${i}`));
        const k = JSON.parse(enc.encode(decode(h + [...pairs, ...keys].join(' ')))) as Doc;
        const got = [...Object.values(k), ...Object.values((k['Extra'] ?? {}) as Doc)].filter((v) => typeof v === 'string' && /^[uv]\d+$/.test(v));
        expect(got.sort(), JSON.stringify(k)).toEqual(values.sort());
      }),
      { numRuns: 300 },
    );
  });
});

describe('kuma: KSC\'s TaskName in FlexString1, as KUMA\'s own KSC integration has it', () => {
  test('from any slot, for KSC events; not in Extra too; the record\'s own FlexString1 stays', () => {
    const k = json('kuma', 'CEF:0|KasperskyLab|SecurityCenter|14.2|KLPRCI_TaskState|Completed|1|cs9=g cs9Label=GroupName cs10=Uninstall EDR cs10Label=TaskName cn2=4 cn2Label=TaskNewState');
    expect(k).toMatchObject({ FlexString1: 'Uninstall EDR', FlexString1Label: 'TaskName', Extra: { GroupName: 'g' } });
    expect(k['Extra']['TaskName']).toBeUndefined();
    const s = json('kuma', 'CEF:0|KasperskyLab|SecurityCenter|14.2|KLPRCI_TaskState|Completed|1|cs3=Scan cs3Label=TaskName');
    expect(s).toMatchObject({ FlexString1: 'Scan', FlexString1Label: 'TaskName' });
    expect(s['DeviceCustomString3']).toBeUndefined();
    // KSC's Syslog format (its tdn, written as KSC's CEF export writes TaskName).
    const y = json('kuma', '<14>1 2024-05-06T07:00:00.000Z ws1 KES|11.0.0.0 - KLPRCI_TaskState [event@23668 et="KLPRCI_TaskState" tdn="Update" hdn="WS1"] text');
    expect(y).toMatchObject({ FlexString1: 'Update', FlexString1Label: 'TaskName' });
    // The record has a FlexString1: TaskName stays where it was.
    const own = json('kuma', 'CEF:0|KasperskyLab|SecurityCenter|14.2|KLPRCI_TaskState|Completed|1|flexString1=x flexString1Label=Mine cs10=Scan cs10Label=TaskName');
    expect(own).toMatchObject({ FlexString1: 'x', FlexString1Label: 'Mine', Extra: { TaskName: 'Scan' } });
    // Not a KSC event: labels mean what the sender says.
    expect(json('kuma', 'CEF:0|V|P|1|C|N|5|cs10=Scan cs10Label=TaskName')).toMatchObject({ Extra: { TaskName: 'Scan' } });
  });
});

describe('syslog header fields', () => {
  // RFC 5424 §6.5, example 3.
  const RFC = '<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog 1234 ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"] An application event log entry';

  test('ecs: log.syslog.* under the names of Beats\' syslog processor, for plain syslog and CEF in syslog', () => {
    expect(json('ecs', RFC)['log']).toEqual({
      syslog: {
        priority: 165,
        facility: { code: 20 },
        severity: { code: 5 },
        hostname: 'mymachine.example.com',
        appname: 'evntslog',
        procid: '1234',
        msgid: 'ID47',
        structured_data: { 'exampleSDID@32473': { iut: '3', eventSource: 'Application', eventID: '1011' } },
      },
    });
    const c = json('ecs', '<13>May  6 07:00:00 ksc01 KSC[77]: CEF:0|KasperskyLab|SecurityCenter|14.2|GNRL_EV_VIRUS_FOUND|x|4|dhost=WS1');
    expect(c['log']).toEqual({ level: 'critical', syslog: { priority: 13, facility: { code: 1 }, severity: { code: 5 }, hostname: 'ksc01', appname: 'KSC', procid: '77' } });
    expect(json('ecs', 'CEF:0|V|P|1|C|N|5|src=1.2.3.4')['log']).toBeUndefined();
  });

  test('kuma: app name, process id, facility and MSGID in their fields, structured data in Extra as <SD-ID>.<PARAM>', () => {
    expect(json('kuma', RFC)).toMatchObject({
      Message: 'An application event log entry',
      DeviceEventClassID: 'ID47',
      DeviceProcessName: 'evntslog',
      DeviceProcessID: 1234,
      DeviceFacility: 'local4',
      DeviceHostName: 'mymachine.example.com',
      Extra: { 'exampleSDID@32473.iut': '3', 'exampleSDID@32473.eventSource': 'Application', 'exampleSDID@32473.eventID': '1011' },
    });
    // A process id that is no number goes to Extra as written, counted, as any value a typed field cannot take.
    const enc = createEncoder({ codec: 'kuma' });
    const k = JSON.parse(enc.encode(decode('<14>1 2003-10-11T22:14:15.003Z h app worker-3 - - text'))) as Doc;
    expect(k['DeviceProcessID']).toBeUndefined();
    expect(k['Extra']).toEqual({ deviceProcessId: 'worker-3' });
    expect(enc.problems.take()).toEqual([['encode_value_moved', 1]]);
  });
});

describe('ecs: ports and empty header fields', () => {
  test('source.port and destination.port only for integers 0-65535 (the value stays in cef.extensions)', () => {
    const d = json('ecs', 'CEF:0|V|P|1|C|N|5|src=1.2.3.4 spt=70000 dpt=-5');
    expect(d['source']).toEqual({ ip: '1.2.3.4' });
    expect(d['destination']).toBeUndefined();
    expect(d['cef']['extensions']).toMatchObject({ sourcePort: '70000', destinationPort: '-5' });
    const ok = json('ecs', 'CEF:0|V|P|1|C|N|5|spt=0 dpt=65535');
    expect([ok['source']['port'], ok['destination']['port']]).toEqual([0, 65535]);
  });

  test('an empty CEF header field (or extension value) is no ECS field', () => {
    const d = json('ecs', 'CEF:0|V||||N|5|dhost=');
    expect(d['observer']).toEqual({ vendor: 'V' });
    expect(d['event']['code']).toBeUndefined();
    expect(d['cef']).toMatchObject({ version: '0', device: { vendor: 'V' }, name: 'N', extensions: { destinationHostName: '' } });
    expect(d['cef']['device']['version']).toBeUndefined();
    expect(d['destination']).toBeUndefined();
    // The next alternative: an empty `msg` gives the header's name.
    expect(json('ecs', 'CEF:0|V|P|1|C|Name|5|msg=')['message']).toBe('Name');
  });
});
