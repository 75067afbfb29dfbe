/**
 * The encoders (src/codecs/encoders): the CEF round trip (a property), what each encoding
 * writes for KSC events, the problems they count, golden files of every KSC fixture per
 * encoder, and docs/encodings.md's ECS table in step with ecs-table.ts.
 *
 * Golden files: fixtures/encoders/<codec>/<fixture>.txt, one record per frame of the KSC
 * golden inputs (fixtures/ksc/golden/*.input.txt). Rewrite them with
 * UPDATE_GOLDEN=1 npx vitest run test/codecs/encoders.test.ts, then read the diff.
 * UPDATE_DOCS=1 rewrites the table in docs/encodings.md.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { isIP } from 'node:net';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { decodeFrame } from '../../src/codecs/decode.js';
import { Framer } from '../../src/codecs/framing/framer.js';
import type { CefdEvent } from '../../src/event.js';
import { normalizeEvent } from '../../src/pipeline/normalize.js';
import { allExtensions } from '../../src/codecs/cef/view.js';
import { createEncoder, ENCODER_NAMES } from '../../src/codecs/encoders/registry.js';
import { renderEcsTable } from '../../src/codecs/encoders/ecs.js';
import { KEY_TABLE } from '../../src/codecs/cef/key-table.js';
import ksc from '../../normalizers/ksc/index.js';
import kscSql from '../../normalizers/ksc_sql/index.js';
import { kscView } from '../../normalizers/ksc/lean.js';
import type { KscObject } from '../../normalizers/ksc/types.js';
import { goldenKsc, rowFor } from '../helpers/ksc-rows.js';

const NOW = Date.UTC(2024, 5, 1, 12, 0, 0);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

function decode(line: string | Buffer): CefdEvent {
  const r = decodeFrame(typeof line === 'string' ? Buffer.from(line) : line, false, NOW);
  if (!r.ok) throw new Error(`not an event: ${String(line)}`);
  normalizeEvent(r.event, [ksc]);
  return r.event;
}

const HEADER = ['version', 'deviceVendor', 'deviceProduct', 'deviceVersion', 'deviceEventClassId', 'name', 'severity'] as const;

describe('cef: the record parses back to the same header and extensions', () => {
  // Header and value text with every character CEF escapes, and others around them.
  const chars = fc.constantFrom('a', 'Z', '0', ' ', '=', '\\', '|', '\n', '\r', '\t', 'é', 'Ж', '"', ':', '/', '-', 'n');
  const str = (min: number) => fc.array(chars, { minLength: min, maxLength: 12 }).map((a) => a.join(''));
  // A value as the decoder can give it: no blank, CR or LF at its end (they are trimmed, POLICY row 10).
  const value = str(0).filter((v) => !/[ \t\r\n]$/.test(v));
  const header = fc.tuple(str(0), str(0), str(0), str(0), str(0), fc.constantFrom('0', '5', '10', 'Low', 'Very-High', 'x|y'));
  const known = fc.constantFrom(...KEY_TABLE.map(([short]) => short));
  const custom = fc.tuple(fc.constantFrom('cs', 'cn', 'cfp', 'flexString', 'c6a', 'deviceCustomDate'), fc.integer({ min: 1, max: 12 }));
  const unknown = fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_.,\[\]-]{0,8}$/);
  const pair = fc.oneof(
    fc.tuple(known, value).map(([k, v]) => [[k, v]]),
    fc.tuple(unknown, value).map(([k, v]) => [[k, v]]),
    fc.tuple(custom, value, value, fc.boolean()).map(([[f, n], v, l, both]) => (both ? [[`${f}${n}`, v], [`${f}${n}Label`, l]] : [[`${f}${n}`, v]])),
  );
  const esc = (v: string) => v.replace(/\\/g, '\\\\').replace(/=/g, '\\=').replace(/\n/g, '\\n').replace(/\r/g, '\\r');
  const escH = (v: string) => v.replace(/\\/g, '\\\\').replace(/\|/g, '\\|');

  test('any record: decode, encode as cef, decode again', () => {
    const enc = createEncoder({ codec: 'cef' });
    fc.assert(
      fc.property(header, fc.array(pair, { maxLength: 10 }), (h, pairs) => {
        const ext = pairs.flat().map(([k, v]) => `${k}=${esc(v!)}`).join(' ');
        const line = `CEF:0|${h.map(escH).join('|')}|${ext}`;
        const a = decode(line);
        const text = enc.encode(a);
        // One line, always: a header's line breaks are written as \n and \r, which a
        // header parser keeps as written (POLICY row 3).
        expect(text).not.toMatch(/[\r\n]/);
        const b = decode(text);
        for (const f of HEADER) expect(b.cef![f]).toBe(a.cef![f]?.replace(/\n/g, '\\n').replace(/\r/g, '\\r'));
        // Plus the event's time as `rt` when the record had none (or an empty one): here,
        // without a syslog header, when cefd read it.
        const want = { ...allExtensions(a.cef!) };
        if (!want['deviceReceiptTime']) want['deviceReceiptTime'] = String(Date.parse(a.timestamp));
        expect(allExtensions(b.cef!)).toEqual(want);
        expect(b.cef!.custom).toEqual(a.cef!.custom);
        expect(b.cef!.typed).toEqual(a.cef!.typed);
      }),
      { numRuns: 500 },
    );
    expect(enc.problems.take()).toEqual([]);
  });

  test('escapes: header \\ and |; values \\ = and line breaks; short keys', () => {
    const e = decode('CEF:0|Ven\\|dor|Pro\\\\d|1|id|na=me|5|src=10.0.0.1 msg=a\\=b\\\\c\\nd\\re cs10=Uninstall EDR cs10Label=TaskName');
    expect(createEncoder({ codec: 'cef' }).encode(e)).toBe('CEF:0|Ven\\|dor|Pro\\\\d|1|id|na=me|5|src=10.0.0.1 msg=a\\=b\\\\c\\nd\\re cs10=Uninstall EDR cs10Label=TaskName rt=1717243200000');
  });

  test('a key that cannot be written is left out and counted', () => {
    const e = decode('CEF:0|V|P|1|id|n|5|src=10.0.0.1');
    e.cef!.extensions['bad key'] = 'x';
    e.cef!.extensions['=eq'] = 'y';
    const enc = createEncoder({ codec: 'cef' });
    expect(enc.encode(e)).toBe('CEF:0|V|P|1|id|n|5|src=10.0.0.1 rt=1717243200000');
    expect(enc.problems.take()).toEqual([['encode_key_dropped', 2]]);
  });

  test('an event without CEF (KSC syslog format) gets a record from what it knows', () => {
    const e = decode('<14>1 2024-05-06T07:00:00.000Z ws1.corp KES|11.0.0.0 - GNRL_EV_VIRUS_FOUND [event@23668 et="GNRL_EV_VIRUS_FOUND" etdn="Malicious object detected" hdn="WS1" hip="10.0.0.5"] text');
    const text = createEncoder({ codec: 'cef' }).encode(e);
    expect(text).toBe('CEF:0|KasperskyLab|SecurityCenter||GNRL_EV_VIRUS_FOUND|Malicious object detected|1|rt=1714978800000 dhost=WS1 dst=10.0.0.5 msg=text cs2=KES cs2Label=ProductName cs3=11.0.0.0 cs3Label=ProductVersion');
    expect(decode(text).cef?.extensions.destinationHostName).toBe('WS1');
  });
});

describe('a KSC event without CEF (Syslog format, a database row) is written as KSC\'s CEF export writes it', () => {
  /** What a KSC event says, by the ksc normalizer's full view. */
  const said = (k: KscObject) => ({
    eventType: k.eventType,
    eventName: k.eventName,
    category: k.category,
    severity: k.severity,
    host: { name: k.host.name, ip: k.host.ip },
    group: k.group,
    product: k.product,
    component: k.component,
    task: k.task,
    threat: k.threat,
    attack: k.attack,
    messageLines: k.messageLines,
  });
  const rowEvent = (k: KscObject): CefdEvent => {
    const e: CefdEvent = { id: 'db-1', timestamp: '2024-05-06T09:14:27.000Z', received: '2024-05-06T09:14:28.000Z', sql: { source: 's', database: 'd', cursor: 1, row: rowFor(k, 1, 1) } };
    normalizeEvent(e, [kscSql]);
    return e;
  };
  const cases = goldenKsc();

  test('cef: the record normalizes back to the same KSC fields (every fixture type as a database row and as a Syslog event)', () => {
    const enc = createEncoder({ codec: 'cef' });
    let rows = 0;
    let syslog = 0;
    for (const c of cases) {
      const events = [rowEvent(c.ksc)];
      rows++;
      if (c.ksc.format === 'syslog') {
        const input = readFileSync(`${ROOT}fixtures/ksc/golden/${c.name.slice(0, c.name.indexOf('#'))}.input.txt`, 'utf8').trim();
        events.push(decode(input));
        syslog++;
      }
      for (const e of events) {
        const a = kscView(e)!;
        expect(e.cef).toBeUndefined();
        const d = decode(enc.encode(e));
        const b = kscView(d)!;
        expect(b.format, c.name).toBe('cef');
        // The CEF path leaves the description in `msg` (its line breaks are CR LF, as KSC sends them).
        const msg = d.cef!.extensions['message'];
        expect({ ...said(b), messageLines: msg?.split('\r\n') }, `${c.name} (${a.format})`).toEqual(said(a));
      }
    }
    expect(rows).toBeGreaterThanOrEqual(10);
    expect(syslog).toBeGreaterThanOrEqual(5);
    expect(enc.problems.take()).toEqual([]);
  });

  test('cef: trailing blanks of a value (a Syslog parameter) cannot be carried: left out and counted, the rest reads back the same', () => {
    const enc = createEncoder({ codec: 'cef' });
    const e = decode('<10>1 2022-02-28T15:48:55.000Z sup-01 KES|11.0.0.0 - GNRL_EV_VIRUS_FOUND [event@23668 p5="EICAR-Test-File" et="GNRL_EV_VIRUS_FOUND" tdn="File Threat Protection " etdn="Malicious object detected" hdn="SUP-01" hip="10.81.234.7" gn="Matheus - Teste \t"] Result description: Detected');
    expect(kscView(e)!.group).toBe('Matheus - Teste \t');
    const text = enc.encode(e);
    expect(text).not.toMatch(/[ \t](?= |$)/);
    const back = kscView(decode(text))!;
    expect(back.group).toBe('Matheus - Teste');
    expect(back.component).toBe('File Threat Protection');
    expect(back.threat?.name).toBe('EICAR-Test-File');
    expect(enc.problems.take()).toEqual([['encode_field_cut', 2]]);
    expect(enc.problems.last.get('encode_field_cut')).toMatch(/^cs\d+: [12] trailing blank\(s\) left out \(CEF receivers trim them\)$/);
  });

  test('kuma: a row has the fields the same event has when it came as CEF (slots by label, Message, the user)', () => {
    const enc = createEncoder({ codec: 'kuma' });
    const cefEnc = createEncoder({ codec: 'cef' });
    /** Label → value of the custom slots and Extra, and the standard fields. */
    const fields = (r: Record<string, unknown>) => {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(r)) {
        if (/Label$/.test(k)) out[`label:${String(v)}`] = r[k.slice(0, -'Label'.length)];
        // A header field cefd does not know is absent here and empty in a CEF record.
        else if (!/^(DeviceCustom|Flex)/.test(k) && k !== 'Extra' && k !== 'ID' && v !== '') out[k] = v;
      }
      // The device's FQDN (a row's wstrDnsName) has no field in KSC's CEF export.
      for (const [k, v] of Object.entries((r['Extra'] ?? {}) as Record<string, unknown>)) if (k !== 'KscHostFqdn') out[`label:${k}`] = v;
      return out;
    };
    for (const c of cases) {
      const row = rowEvent(c.ksc);
      const k = JSON.parse(enc.encode(row)) as Record<string, unknown>;
      expect(k['Message'], c.name).toBe(kscView(row)!.messageLines?.join('\r\n'));
      if (c.ksc.threat?.name !== undefined) expect(fields(k)['label:VirusName'], c.name).toBe(c.ksc.threat.name);
      // The same event as KSC's CEF export sends it (the cef encoding of the row), decoded.
      const viaCef = JSON.parse(enc.encode(decode(cefEnc.encode(row)))) as Record<string, unknown>;
      expect(fields(k), c.name).toEqual(fields(viaCef));
    }
  });
});

describe('kuma', () => {
  test('PascalCase names, KUMA slots with labels, cs7..cs10 in Extra by label (TaskName in FlexString1), numbers and times', () => {
    const e = decode('CEF:0|KasperskyLab|SecurityCenter|13.2|KLPRCI_TaskState|Completed|1|rt=1647626887000 dhost=WS6465 dst=10.55.203.12 cs9=site location Bldg cs9Label=GroupName cs10=Uninstall EDR cs10Label=TaskName cn2=4 cn2Label=TaskNewState dpt=443 foo=bar');
    const k = JSON.parse(createEncoder({ codec: 'kuma' }).encode(e)) as Record<string, unknown>;
    expect(k).toMatchObject({
      Timestamp: 1647626887000,
      DeviceVendor: 'KasperskyLab',
      DeviceEventClassID: 'KLPRCI_TaskState',
      DeviceReceiptTime: 1647626887000,
      DestinationHostName: 'WS6465',
      DestinationAddress: '10.55.203.12',
      DestinationPort: 443,
      DeviceCustomNumber2: 4,
      DeviceCustomNumber2Label: 'TaskNewState',
      FlexString1: 'Uninstall EDR',
      FlexString1Label: 'TaskName',
      Extra: { GroupName: 'site location Bldg', foo: 'bar', KscCategory: 'task_state', KscTaskNewState: 'completed' },
    });
    expect(k['DeviceCustomString9']).toBeUndefined();
    expect((k['Extra'] as Record<string, string>)['TaskName']).toBeUndefined();
  });

  test('values past KUMA\'s limits are cut and counted', () => {
    const e = decode(`CEF:0|V|P|1|id|n|5|app=${'x'.repeat(40)} dhost=${'h'.repeat(1100)}`);
    const enc = createEncoder({ codec: 'kuma' });
    const k = JSON.parse(enc.encode(e)) as Record<string, string>;
    expect(k['ApplicationProtocol']).toBe('x'.repeat(31));
    expect(k['DestinationHostName']).toHaveLength(1023);
    expect(enc.problems.take()).toEqual([['encode_field_cut', 2]]);
  });

  test('a value KUMA\'s typed field cannot take goes to Extra, counted: numbers are int64, cfpN decimal, times converted', () => {
    // A string in a Number or time field makes KUMA refuse the whole event.
    const e = decode('CEF:0|V|P|1|id|n|5|spt=99999999999999999999 cnt=1e3 dvcpid=12.5 fsize=9007199254740993 start=Jun 2020 end=2020-06-23 10:00:00 art=2020-06-23T10:00:00.000Z cn1=abc cn1Label=Count cn2=-7 cn2Label=Delta cfp1=1.5 cfp1Label=Ratio cfp2=n/a cfp2Label=Load deviceCustomDate1=bogus deviceCustomDate1Label=Seen cn3=x');
    const enc = createEncoder({ codec: 'kuma' });
    const k = JSON.parse(enc.encode(e)) as Record<string, unknown>;
    expect(k).toMatchObject({
      AgentReceiptTime: Date.UTC(2020, 5, 23, 10),
      DeviceCustomNumber2: -7,
      DeviceCustomNumber2Label: 'Delta',
      DeviceCustomFloatingPoint1: 1.5,
      DeviceCustomFloatingPoint1Label: 'Ratio',
      Extra: {
        sourcePort: '99999999999999999999',
        baseEventCount: '1e3',
        deviceProcessId: '12.5',
        fileSize: '9007199254740993',
        startTime: 'Jun 2020',
        endTime: '2020-06-23 10:00:00',
        Count: 'abc',
        Load: 'n/a',
        Seen: 'bogus',
        deviceCustomNumber3: 'x',
      },
    });
    for (const f of ['SourcePort', 'BaseEventCount', 'DeviceProcessID', 'FileSize', 'StartTime', 'EndTime', 'DeviceCustomNumber1', 'DeviceCustomNumber1Label', 'DeviceCustomFloatingPoint2', 'DeviceCustomDate1', 'DeviceCustomNumber3']) {
      expect(k[f], f).toBeUndefined();
    }
    expect(enc.problems.take()).toEqual([['encode_value_moved', 10]]);
  });

  test('CEF\'s Double keys (slat, slong, dlat, dlong) are numbers; other text goes to Extra', () => {
    const enc = createEncoder({ codec: 'kuma' });
    const k = JSON.parse(enc.encode(decode('CEF:0|V|P|1|id|n|5|slat=55.75 slong=-37.6e0 dlat=north dlong=.5'))) as Record<string, unknown>;
    expect(k).toMatchObject({ SourceGeoLatitude: 55.75, SourceGeoLongitude: -37.6, DestinationGeoLongitude: 0.5, Extra: { destinationGeoLatitude: 'north' } });
    expect(k['DestinationGeoLatitude']).toBeUndefined();
    expect(enc.problems.take()).toEqual([['encode_value_moved', 1]]);
  });

  test('CEF\'s type is not KUMA\'s own Type (other codes): it goes to Extra', () => {
    const k = JSON.parse(createEncoder({ codec: 'kuma' }).encode(decode('CEF:0|V|P|1|id|n|5|type=0'))) as Record<string, unknown>;
    expect(k['Type']).toBeUndefined();
    expect(k['Extra']).toEqual({ type: '0' });
  });

  test('rt that did not convert is not DeviceReceiptTime (the event time is then the syslog header\'s or cefd\'s)', () => {
    const enc = createEncoder({ codec: 'kuma' });
    const k = JSON.parse(enc.encode(decode('CEF:0|V|P|1|id|n|5|rt=yesterday'))) as Record<string, unknown>;
    expect(k['DeviceReceiptTime']).toBeUndefined();
    expect(k['Extra']).toEqual({ deviceReceiptTime: 'yesterday' });
    expect(k['Timestamp']).toBe(NOW);
  });

  test('Extra keeps a key or label named __proto__', () => {
    const enc = createEncoder({ codec: 'kuma' });
    expect(JSON.parse(enc.encode(decode('CEF:0|V|P|1|id|n|5|__proto__=y')))['Extra']).toEqual({ ['__proto__']: 'y' });
    const k = JSON.parse(enc.encode(decode('CEF:0|V|P|1|id|n|5|cs7=x cs7Label=__proto__'))) as Record<string, unknown>;
    expect(Object.entries(k['Extra'] as object)).toEqual([['__proto__', 'x']]);
  });

  test('the cut to KUMA\'s limits counts characters and never splits a surrogate pair', () => {
    const enc = createEncoder({ codec: 'kuma' });
    const k = JSON.parse(enc.encode(decode(`CEF:0|V|P|1|id|n|5|app=${'x'.repeat(30)}😀😀 dhost=${'😀'.repeat(1023)}`))) as Record<string, string>;
    expect(k['ApplicationProtocol']).toBe(`${'x'.repeat(30)}😀`);
    expect(k['DestinationHostName']).toBe('😀'.repeat(1023));
    expect(enc.problems.take()).toEqual([['encode_field_cut', 1]]);
  });

  test('KSC\'s Syslog format: DeviceHostName is the Administration Server (kscfqdn), not the HOSTNAME, which is the managed device', () => {
    const enc = createEncoder({ codec: 'kuma' });
    const line = (sd: string) => `<14>1 2024-05-06T07:00:00.000Z ws1.corp.example KES|11.0.0.0 - GNRL_EV_VIRUS_FOUND [event@23668 et="GNRL_EV_VIRUS_FOUND" etdn="Malicious object detected" hdn="WS1" hip="10.0.0.5"${sd}] text`;
    const a = JSON.parse(enc.encode(decode(line(' kscfqdn="ksc01.corp.example"')))) as Record<string, any>;
    expect(a).toMatchObject({ DeviceHostName: 'ksc01.corp.example', DestinationHostName: 'WS1', Extra: { KscHostFqdn: 'ws1.corp.example' } });
    const b = JSON.parse(enc.encode(decode(line('')))) as Record<string, any>;
    expect(b['DeviceHostName']).toBeUndefined();
    expect(b['Extra']['KscHostFqdn']).toBe('ws1.corp.example');
    // KSC's CEF: the HOSTNAME is the server.
    expect(JSON.parse(enc.encode(decode('<14>1 2024-05-06T07:00:00.000Z ksc01 KSC - - - CEF:0|KasperskyLab|SecurityCenter|14.2|GNRL_EV_VIRUS_FOUND|x|4|dhost=WS1')))['DeviceHostName']).toBe('ksc01');
  });

  test('Raw when the event has the frame text', () => {
    const r = decodeFrame(Buffer.from('CEF:0|V|P|1|id|n|5|src=1.2.3.4'), false, NOW, { keepRaw: true });
    expect(r.ok && JSON.parse(createEncoder({ codec: 'kuma' }).encode(r.event))['Raw']).toBe('CEF:0|V|P|1|id|n|5|src=1.2.3.4');
  });
});

describe('ecs', () => {
  const ecs = (line: string) => JSON.parse(createEncoder({ codec: 'ecs' }).encode(decode(line))) as Record<string, any>;

  test('a KSC detection: alert, malware, the managed device as host, the threat, file hash lowercase', () => {
    const d = ecs(`<14>1 2024-05-06T07:00:00.000Z ksc01 KSC - - - CEF:0|KasperskyLab|SecurityCenter|14.2|GNRL_EV_VIRUS_FOUND|Malicious object detected|4|rt=1714978800000 dhost=WS-1 dst=10.0.0.5 duser=CORP\\\\jdoe cs4=EICAR-Test-File cs4Label=VirusName cs5=C:\\\\eicar.com cs5Label=ObjectName cs6=${'AB'.repeat(32)} cs6Label=SHA256`);
    expect(d['@timestamp']).toBe('2024-05-06T07:00:00.000Z');
    expect(d['event']).toMatchObject({ kind: 'alert', category: ['malware'], type: ['info'], action: 'detected', severity: 4, code: 'GNRL_EV_VIRUS_FOUND' });
    expect(d['observer']).toEqual({ vendor: 'Kaspersky', product: 'Security Center', version: '14.2', hostname: 'ksc01' });
    expect(d['host']).toEqual({ hostname: 'WS-1', ip: ['10.0.0.5'] });
    expect(d['destination']).toBeUndefined();
    expect(d['user']).toEqual({ name: 'CORP\\jdoe' });
    expect(d['file']).toEqual({ path: 'C:\\eicar.com', hash: { sha256: 'ab'.repeat(32) } });
    expect(d['threat']).toEqual({ software: { name: 'EICAR-Test-File' } });
    expect(d['rule']).toEqual({ name: 'EICAR-Test-File' });
    expect(d['cef']['extensions']['deviceCustomString4Label']).toBe('VirusName');
  });

  test('task states: task-state-changed, outcome from the new state', () => {
    const t = (code: number) => ecs(`CEF:0|KasperskyLab|SecurityCenter|14.2|KLPRCI_TaskState|x|1|cs3=Scan cs3Label=TaskName cn1=${code} cn1Label=TaskNewState`)['event'];
    expect(t(4)).toMatchObject({ kind: 'event', action: 'task-state-changed', outcome: 'success' });
    expect(t(3).outcome).toBe('failure');
    expect(t(5).outcome).toBe('failure');
    expect(t(1).outcome).toBe('unknown');
    expect(ecs('CEF:0|KasperskyLab|SecurityCenter|14.2|KLPRCI_TaskState|x|1|cs3=Scan cs3Label=TaskName cn1=4 cn1Label=TaskNewState')['kaspersky']['ksc']['task']).toMatchObject({ name: 'Scan', new_state: 'completed', new_state_code: 4 });
  });

  test('other CEF: source and destination are the network\'s, severity words as numbers', () => {
    const d = ecs('CEF:0|Security|threatmanager|1.0|100|worm stopped|High|src=10.0.0.1 dst=2.1.2.2 spt=1232 dpt=80 proto=TCP');
    expect(d['source']).toEqual({ ip: '10.0.0.1', port: 1232 });
    expect(d['destination']).toEqual({ ip: '2.1.2.2', port: 80 });
    expect(d['network']).toEqual({ transport: 'tcp' });
    expect(d['event']).toMatchObject({ kind: 'event', severity: 7, code: '100' });
    expect(d['observer']).toMatchObject({ vendor: 'Security', product: 'threatmanager', version: '1.0' });
    expect(d['kaspersky']).toBeUndefined();
  });

  test('host.ip holds only IP addresses (ECS type ip: text there makes Elasticsearch refuse the document)', () => {
    const ksc = ecs('CEF:0|KasperskyLab|SecurityCenter|14.2|GNRL_EV_VIRUS_FOUND|x|4|dhost=WS-1 dst=WS-1.corp');
    expect(ksc['host']).toEqual({ hostname: 'WS-1' });
    expect(ksc['cef']['extensions']['destinationAddress']).toBe('WS-1.corp');
    const other = ecs('CEF:0|V|P|1|id|n|5|dvc=unknown dvchost=fw1');
    expect(other['host']).toEqual({ hostname: 'fw1' });
    expect(ecs('CEF:0|V|P|1|id|n|5|dvc=fe80::1')['host']).toEqual({ ip: ['fe80::1'] });
  });

  test('date fields hold only time stamps cefd converted (Elasticsearch\'s strict_date_optional_time)', () => {
    const d = ecs('CEF:0|V|P|1|id|n|5|start=2020-06-23 10:00:00 end=Jun 2020 art=1592913444000');
    expect(d['event']['start']).toBeUndefined();
    expect(d['event']['end']).toBeUndefined();
    expect(d['event']['created']).toBe('2020-06-23T11:57:24.000Z');
    expect(d['cef']['extensions']).toMatchObject({ startTime: '2020-06-23 10:00:00', endTime: 'Jun 2020' });
    expect(ecs('CEF:0|V|P|1|id|n|5|start=2020-06-23T10:00:00.000Z')['event']['start']).toBe('2020-06-23T10:00:00.000Z');
  });

  test('a time past the year 9999 is in no date field (strict_date_optional_time reads four year digits); @timestamp is then when cefd read it', () => {
    // rt and start in milliseconds: 253402300800000 is 10000-01-01T00:00:00Z, which converts to `+010000-01-01T00:00:00.000Z`.
    const d = ecs('CEF:0|V|P|1|id|n|5|rt=253402300800000 start=253402300800000 end=1592913444000');
    expect(d['@timestamp']).toBe('2024-06-01T12:00:00.000Z');
    expect(d['event']['start']).toBeUndefined();
    expect(d['event']['end']).toBe('2020-06-23T11:57:24.000Z');
    expect(d['cef']['extensions']).toMatchObject({ deviceReceiptTime: '253402300800000', startTime: '253402300800000' });
    expect(ecs('CEF:0|V|P|1|id|n|5|rt=253402300799999')['@timestamp']).toBe('9999-12-31T23:59:59.999Z');
  });

  test('extension keys and labels Elasticsearch cannot map are left out and counted', () => {
    // Elasticsearch expands dots: `x.` and `a..b` have an empty part, `a.b` beside `a` makes `a` a value and an object.
    const enc = createEncoder({ codec: 'ecs' });
    const d = JSON.parse(enc.encode(decode('CEF:0|KasperskyLab|SecurityCenter|14.2|GNRL_EV_VIRUS_FOUND|x|4|x.=1 a..b=2 ad=3 ad.x=4 ad.y.z=5 ok.k=6 cs1=v cs1Label=Task. cs2=w cs2Label=Group'))) as Record<string, any>;
    expect(d['cef']['extensions']).toEqual({ ad: '3', 'ok.k': '6', deviceCustomString2: 'w', deviceCustomString2Label: 'Group', deviceCustomString1: 'v', deviceCustomString1Label: 'Task.' });
    expect(d['kaspersky']['ksc']['labels']).toEqual({ Group: 'w' });
    expect(enc.problems.take()).toEqual([['encode_key_dropped', 5]]);
  });

  test('an action or a severity named like a member of Object.prototype maps like any unknown word (event.type ["info"], no severity), not to that member', () => {
    for (const act of ['__proto__', 'constructor', 'toString', 'hasOwnProperty']) {
      const d = ecs(`CEF:0|KasperskyLab|SecurityCenter|13.2|GNRL_EV_VIRUS_FOUND|n|4|act=${act} cs1=EICAR cs1Label=VirusName`);
      expect(d['event']['type']).toEqual(['info']);
    }
    const enc = createEncoder({ codec: 'ecs' });
    for (const sev of ['CONSTRUCTOR', '__PROTO__', 'toString']) {
      const v = enc.value!(decode(`CEF:0|V|P|1|id|n|${sev}|src=10.0.0.1`)) as Record<string, any>;
      expect(v['event']['severity']).toBeUndefined();
    }
  });

  test('message: the CEF and Syslog forms of one KSC description give the same text, with CR LF line breaks', () => {
    const a = ecs('CEF:0|KasperskyLab|SecurityCenter|13|GNRL_EV_VIRUS_FOUND|n|4|msg=Line one\\r\\nLine two\\r\\n\\r\\nLast');
    const b = ecs('<10>1 2023-08-01T10:40:12.000Z H KES|11.0.0.0 - GNRL_EV_VIRUS_FOUND [event@23668 et="GNRL_EV_VIRUS_FOUND"] Line one\\r\\nLine two\\r\\n\\r\\nLast');
    expect(a['message']).toBe('Line one\r\nLine two\r\n\r\nLast');
    expect(b['message']).toBe(a['message']);
  });

  test('docs/encodings.md shows the table of ecs-table.ts', () => {
    const file = `${ROOT}docs/encodings.md`;
    const begin = '<!-- BEGIN ecs (generated: UPDATE_DOCS=1 npx vitest run test/codecs/encoders.test.ts) -->\n';
    const endMark = '<!-- END ecs -->';
    let text = readFileSync(file, 'utf8');
    const start = text.indexOf(begin);
    const end = text.indexOf(endMark);
    expect(start).toBeGreaterThan(-1);
    if (process.env['UPDATE_DOCS'] === '1') {
      text = text.slice(0, start + begin.length) + renderEcsTable() + text.slice(end);
      writeFileSync(file, text);
    }
    const now = readFileSync(file, 'utf8');
    expect(now.slice(start + begin.length, now.indexOf(endMark))).toBe(renderEcsTable());
  });
});

describe('field options', () => {
  const DETECTION = `<14>1 2024-05-06T07:00:00.000Z ksc01 KSC - - - CEF:0|KasperskyLab|SecurityCenter|14.2|GNRL_EV_VIRUS_FOUND|Malicious object detected|4|rt=1714978800000 dhost=WS-1 dst=10.0.0.5 duser=CORP\\\\jdoe cs4=EICAR-Test-File cs4Label=VirusName cs5=C:\\\\eicar.com cs5Label=ObjectName cs9=G cs9Label=GroupName msg=Found`;
  const rec = (codec: string, e: CefdEvent, opts: object = {}) => JSON.parse(createEncoder({ codec, ...opts }).encode(e)) as Record<string, any>;
  const without = (o: Record<string, unknown>, ...keys: string[]) => Object.fromEntries(Object.entries(o).filter(([k]) => !keys.includes(k)));

  test('ecs and kuma: the paths are the encoded document\'s; except_fields: [cef] drops only the cef.* copy', () => {
    const e = decode(DETECTION);
    const full = rec('ecs', e);
    expect(full['kaspersky']['ksc']['event_type']).toBe('GNRL_EV_VIRUS_FOUND');
    expect(rec('ecs', e, { except_fields: ['cef'] })).toEqual(without(full, 'cef'));
    expect(Object.keys(rec('ecs', e, { only_fields: ['@timestamp', 'event', 'host', 'kaspersky'] }))).toEqual(['@timestamp', 'event', 'host', 'kaspersky']);
    expect(rec('ecs', e, { only_fields: ['@timestamp', 'event', 'host', 'kaspersky'] })).toEqual({ '@timestamp': full['@timestamp'], event: full['event'], host: full['host'], kaspersky: full['kaspersky'] });
    const slim = rec('ecs', e, { only_fields: ['@timestamp', 'event.kind', 'cef.extensions', 'kaspersky.ksc.labels'], except_fields: ['cef.extensions.message', 'kaspersky.ksc.labels.GroupName'] });
    expect(slim).toEqual({
      '@timestamp': '2024-05-06T07:00:00.000Z',
      event: { kind: 'alert' },
      cef: { extensions: without(full['cef']['extensions'], 'message') },
      kaspersky: { ksc: { labels: without(full['kaspersky']['ksc']['labels'], 'GroupName') } },
    });
    const kuma = rec('kuma', e);
    expect(kuma['Extra']['GroupName']).toBe('G');
    expect(rec('kuma', e, { except_fields: ['Extra', 'DeviceCustomString5'] })).toEqual(without(kuma, 'Extra', 'DeviceCustomString5'));
    expect(rec('kuma', e, { only_fields: ['Timestamp', 'Name', 'Extra.GroupName'] })).toEqual({ Timestamp: kuma['Timestamp'], Name: 'Malicious object detected', Extra: { GroupName: 'G' } });
    // native: the event's paths, as before (and the KSC fields are the event's `ksc`).
    expect(rec('native', e, { except_fields: ['cef'] })['cef']).toBeUndefined();
    expect(rec('native', e, { only_fields: ['ksc.category', 'timestamp'] })).toEqual({ ksc: { category: 'detection' }, timestamp: '2024-05-06T07:00:00.000Z' });
  });

  test('trimming never changes the event or the values encoders share', () => {
    const e = decode(DETECTION);
    const before = structuredClone(e);
    const paths: Record<string, string[]> = {
      native: ['cef.extensions.message', 'cef.custom', 'ksc', 'warnings.message'],
      ecs: ['cef.extensions.message', 'cef.custom', 'event.category', 'kaspersky.ksc.labels'],
      kuma: ['Extra.GroupName', 'DeviceCustomString5'],
    };
    for (const codec of ['native', 'ecs', 'kuma']) {
      const opts = { except_fields: paths[codec]! };
      const a = createEncoder({ codec, ...opts }).encode(e);
      expect(createEncoder({ codec, ...opts }).encode(e), codec).toBe(a);
      expect(e, codec).toEqual(before);
    }
    expect(rec('ecs', e)['event']['category']).toEqual(['malware']);
    expect(rec('native', e)).toEqual(JSON.parse(JSON.stringify(before)));
  });

  test('ecs and kuma refuse paths of cefd\'s event their record does not have (written for the meaning field options had before): they would send {} or trim nothing', () => {
    expect(() => createEncoder({ codec: 'ecs', only_fields: ['id', 'timestamp', 'ksc'] })).toThrow(
      "id, timestamp, ksc: name fields of cefd's event, which the ecs record does not have: field options trim the record the output sends, so write the ecs record's paths (`@timestamp`, `event.id`, `kaspersky.ksc`, `log.syslog`, `cef`; docs/encodings.md, \"Field options\")",
    );
    expect(() => createEncoder({ codec: 'ecs', except_fields: ['raw', 'cef'] })).toThrow(/^raw: names a field of cefd's event, which the ecs record does not have/);
    expect(() => createEncoder({ codec: 'kuma', except_fields: ['cef.extensions', 'Raw'] })).toThrow(/^cef\.extensions: names a field .*\(`Timestamp`, `ID`/);
    // The record's own paths, and native's event paths, are taken.
    expect(() => createEncoder({ codec: 'ecs', except_fields: ['cef', 'message', 'event.original'] })).not.toThrow();
    expect(() => createEncoder({ codec: 'kuma', only_fields: ['Timestamp', 'Extra'] })).not.toThrow();
    expect(() => createEncoder({ codec: 'native', only_fields: ['id', 'timestamp', 'ksc'] })).not.toThrow();
  });

  test('cef refuses field options: its record is one CEF line (docs/encodings.md, "Field options")', () => {
    expect(() => createEncoder({ codec: 'cef', except_fields: ['cef.extensions.message'] })).toThrow(/a cef record is one CEF line/);
    expect(() => createEncoder({ codec: 'cef', only_fields: ['ksc'] })).toThrow(/remove them for codec cef/);
    expect(createEncoder({ codec: 'cef', only_fields: [], except_fields: [] }).encode(decode(DETECTION))).toMatch(/^CEF:0\|KasperskyLab\|/);
  });

  test('a path through an array continues into each element; arrays stay arrays', () => {
    const e = decode('CEF:0|V|P|1|C|N|5|src=1.1.1.1 src=2.2.2.2 src=3.3.3.3 cs1Label=x');
    const warnings = e.warnings!;
    expect(warnings.length).toBeGreaterThanOrEqual(2);
    const before = structuredClone(e);
    const codes = rec('native', e, { except_fields: ['warnings.message'] })['warnings'];
    expect(Array.isArray(codes)).toBe(true);
    expect(codes).toEqual(warnings.map((w) => without(w as unknown as Record<string, unknown>, 'message')));
    expect(rec('native', e, { only_fields: ['warnings.code', 'warnings.key', 'timestamp'] })).toEqual({ warnings: warnings.map((w) => (w.key !== undefined ? { code: w.code, key: w.key } : { code: w.code })), timestamp: e.timestamp });
    // A number is a key like any other, not an index: `warnings.0.code` names nothing.
    expect(rec('native', e, { only_fields: ['warnings.0.code', 'timestamp'] })).toEqual({ timestamp: e.timestamp });
    expect(rec('native', e, { except_fields: ['warnings.0'] })['warnings']).toEqual(JSON.parse(JSON.stringify(warnings)));
    // Through an array of texts: nothing to take or drop, the array as it is.
    const ecs = rec('ecs', decode(DETECTION), { only_fields: ['host.ip.x', 'event.category'], except_fields: ['event.category.x'] });
    expect(ecs).toEqual({ event: { category: ['malware'] } });
    expect(e).toEqual(before);
  });
});

describe('ecs and kuma: every typed field holds its type, for any record (a property)', () => {
  // Values that convert and values that do not, for keys of every type.
  const values = fc.constantFrom('', '1', '-7', '007', '+4', '1e3', '12.5', '99999999999999999999', '9007199254740993', 'NaN', 'abc', '10.0.0.1', '::1', 'host.local',
    '1592913444000', '253402300800000', '2020-06-23T10:00:00.000Z', '2020-06-23 10:00:00', 'Jun 23 2020 17:37:24', 'Jun 2020', '55.75', '😀x', '__proto__');
  const keys = fc.constantFrom(...KEY_TABLE.map(([short]) => short), 'cs1', 'cs7', 'cn1', 'cn3', 'cn4', 'cfp1', 'cfp5', 'c6a1', 'flexNumber1', 'flexDate1', 'deviceCustomDate2',
    'a', 'a.b', 'x.', 'a..b', '__proto__');
  const labels = fc.constantFrom('L', 'TaskName', 'Task.', 'a', 'a.b', '__proto__', 'KscCategory');
  const pair = fc.oneof(
    fc.tuple(keys, values).map(([k, v]) => `${k}=${v}`),
    fc.tuple(fc.constantFrom('cs', 'cn', 'cfp', 'c6a', 'flexNumber', 'flexDate', 'deviceCustomDate'), fc.integer({ min: 1, max: 8 }), values, labels)
      .map(([f, n, v, l]) => `${f}${n}=${v} ${f}${n}Label=${l}`),
  );
  const line = fc.tuple(fc.constantFrom('CEF:0|V|P|1|C|N|5|', 'CEF:0|KasperskyLab|SecurityCenter|14.2|GNRL_EV_VIRUS_FOUND|x|4|'), fc.array(pair, { maxLength: 12 }))
    .map(([h, p]) => h + p.join(' '));
  const typeOf = new Map<string, string>(KEY_TABLE.map(([, full, type]) => [full.charAt(0).toUpperCase() + full.slice(1).replace(/Id$/, 'ID'), type]));
  const geo = new Set(['SourceGeoLatitude', 'SourceGeoLongitude', 'DestinationGeoLatitude', 'DestinationGeoLongitude']);
  const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

  test('kuma: Number, float and time fields are numbers; Extra is string to string', () => {
    const enc = createEncoder({ codec: 'kuma' });
    fc.assert(
      fc.property(line, (l) => {
        const k = JSON.parse(enc.encode(decode(l))) as Record<string, unknown>;
        for (const [f, v] of Object.entries(k)) {
          const custom = /^(DeviceCustomNumber|FlexNumber|DeviceCustomFloatingPoint|DeviceCustomDate|FlexDate)\d+$/.test(f);
          if (typeOf.get(f) === 'int' || typeOf.get(f) === 'time' || geo.has(f) || custom || f === 'Timestamp') {
            expect(typeof v === 'number' && Number.isFinite(v), `${f}: ${JSON.stringify(v)}`).toBe(true);
            if (!f.includes('Floating') && !geo.has(f)) expect(Number.isSafeInteger(v), f).toBe(true);
          }
        }
        for (const v of Object.values((k['Extra'] ?? {}) as object)) expect(typeof v).toBe('string');
      }),
      { numRuns: 300 },
    );
  });

  test('ecs: ip, long and date fields hold their type; every key is a field name Elasticsearch maps', () => {
    const enc = createEncoder({ codec: 'ecs' });
    const walk = (o: Record<string, unknown>, at: string, check: (path: string, v: unknown) => void): void => {
      for (const [k, v] of Object.entries(o)) {
        expect(k.split('.').every((p) => p.trim() !== ''), `${at}${k}`).toBe(true);
        if (k.includes('.')) expect(Object.hasOwn(o, k.slice(0, k.indexOf('.'))), `${at}${k} beside a value`).toBe(false);
        if (v !== null && typeof v === 'object' && !Array.isArray(v)) walk(v as Record<string, unknown>, `${at}${k}.`, check);
        else check(`${at}${k}`, v);
      }
    };
    fc.assert(
      fc.property(line, (l) => {
        walk(JSON.parse(enc.encode(decode(l))) as Record<string, unknown>, '', (path, v) => {
          if (/\.ip$/.test(path)) for (const a of [v].flat()) expect(isIP(String(a)), `${path}: ${JSON.stringify(v)}`).not.toBe(0);
          if (/^((source|destination)\.(port|bytes)|process\.pid|file\.size|event\.severity)$/.test(path)) expect(Number.isSafeInteger(v), `${path}: ${JSON.stringify(v)}`).toBe(true);
          if (path === '@timestamp' || /^event\.(created|start|end)$/.test(path)) expect(String(v), path).toMatch(ISO);
        });
      }),
      { numRuns: 300 },
    );
  });
});

describe('ecs: kaspersky.ksc.labels', () => {
  test('every label value is text: a label that is a number in one event and text in another maps to one Elasticsearch type', () => {
    const enc = createEncoder({ codec: 'ecs' });
    const labels = (line: string) => {
      const r = decodeFrame(Buffer.from(line), false, Date.now(), { defaultZone: 'UTC', keepRaw: false });
      if (!r.ok) throw new Error(r.failure.message);
      normalizeEvent(r.event, [ksc]);
      return JSON.parse(enc.encode(r.event))['kaspersky']['ksc']['labels'] as Record<string, unknown>;
    };
    const a = labels('CEF:0|KasperskyLab|SecurityCenter|14.2|KLPRCI_TaskState|Completed|1|cs3=Scan cs3Label=TaskName cn1=4 cn1Label=TaskNewState');
    const b = labels('CEF:0|KasperskyLab|SecurityCenter|14.2|KLPRCI_TaskState|Completed|1|cs3=Scan cs3Label=TaskName cn1=abc cn1Label=TaskNewState');
    expect(a['TaskNewState']).toBe('4');
    expect(b['TaskNewState']).toBe('abc');
    for (const v of [...Object.values(a), ...Object.values(b)]) expect(typeof v).toBe('string');
  });
});

describe('golden files: every KSC fixture through every encoder', () => {
  const GOLDEN = `${ROOT}fixtures/ksc/golden/`;
  const OUT = `${ROOT}fixtures/encoders/`;
  const UPDATE = process.env['UPDATE_GOLDEN'] === '1';
  const names = readdirSync(GOLDEN).filter((f) => f.endsWith('.input.txt')).map((f) => f.slice(0, -'.input.txt'.length)).sort();

  /** The frames of a fixture input, as the golden test frames them. */
  function frames(name: string): Buffer[] {
    const input = readFileSync(`${GOLDEN}${name}.input.txt`);
    const g = JSON.parse(readFileSync(`${GOLDEN}${name}.json`, 'utf8')) as { mode: string };
    if (g.mode === 'line') return [input];
    const out: Buffer[] = [];
    const framer = new Framer({ frame: (b) => out.push(Buffer.from(b)), discarded: () => {}, notice: () => {} });
    framer.push(input);
    framer.end();
    return out;
  }

  test('there is a golden file per fixture and encoder', () => {
    expect(names.length).toBeGreaterThanOrEqual(54);
    expect(ENCODER_NAMES).toEqual(['native', 'ecs', 'kuma', 'cef']);
  });

  for (const codec of ENCODER_NAMES) {
    test(codec, () => {
      const enc = createEncoder({ codec });
      mkdirSync(`${OUT}${codec}`, { recursive: true });
      const mismatched: string[] = [];
      for (const name of names) {
        const lines = frames(name).map((f) => {
          const r = decodeFrame(f, false, NOW);
          if (!r.ok) return `(not an event: ${r.failure.code})`;
          normalizeEvent(r.event, [ksc]);
          return enc.encode(r.event);
        });
        const text = lines.join('\n') + '\n';
        const file = `${OUT}${codec}/${name}.txt`;
        if (UPDATE) writeFileSync(file, text);
        else if (!existsSync(file) || readFileSync(file, 'utf8') !== text) mismatched.push(name);
      }
      expect(mismatched, 'run with UPDATE_GOLDEN=1 and read the diff').toEqual([]);
    });
  }
});
