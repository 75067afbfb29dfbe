/**
 * The ksc normalizer (normalizers/ksc): acceptance, label mapping and its warnings, task
 * states, severity, the syslog-format quirks, purity, and task lifecycles.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { decodeFrame } from '../../../src/codecs/decode.js';
import type { CefdEvent } from '../../../src/event.js';
import { loadNormalizer, normalizeEvent } from '../../../src/pipeline/normalize.js';
import ksc, { TASK_STATES, kscView, typeInfo, type KscObject } from '../../../normalizers/ksc/index.js';
import { customSlot } from '../../../normalizers/ksc/labels.js';
import { ipv4FromDecimal, jsonStringMember, kscAppNameBar, parseInteger } from '../../../normalizers/ksc/text.js';

const RECEIVED_MS = Date.UTC(2024, 5, 1, 12, 0, 0);
const HEAD = 'CEF:0|KasperskyLab|SecurityCenter|13.2.0.1511';

function decode(line: string): CefdEvent {
  const r = decodeFrame(Buffer.from(line), false, RECEIVED_MS);
  if (!r.ok) throw new Error(`not an event: ${r.failure.message}`);
  return r.event;
}

/** Decode + run the ksc normalizer; returns the ksc object and the warnings it added. */
function norm(line: string): { ksc: KscObject; warnings: { code: string; key?: string; message?: string }[]; type: string } {
  const event = decode(line);
  const before = event.warnings?.length ?? 0;
  const out = normalizeEvent(event, [ksc]);
  if (out.kind !== 'normalized') throw new Error(`not normalized: ${out.kind}`);
  // The event carries the lean object (normalizers/ksc/lean.ts); these tests read the whole one.
  return { ksc: kscView(event)!, warnings: (event.warnings ?? []).slice(before), type: out.type };
}

const cef = (sig: string, ext: string, sev = '1', name = 'Name') => `${HEAD}|${sig}|${name}|${sev}|${ext}`;
const codes = (ws: { code: string }[]) => ws.map((w) => w.code);

describe('accepts', () => {
  test('KSC CEF (vendor KasperskyLab, product SecurityCenter), bare or in a syslog envelope', () => {
    expect(ksc.accepts(decode(cef('KLPRCI_TaskState', 'dhost=a')))).toBe(true);
    expect(ksc.accepts(decode(`<14>May  6 07:02:41 ksc01 ${cef('X', 'dhost=a')}`))).toBe(true);
    // An RFC 5424 header cut before HOSTNAME (or right after VERSION) still carries the record.
    for (const head of ['<14>1 2024-05-06T07:02:41.000Z ', '<14>1 - ', '<14>1 ']) {
      const e = decode(`${head}${cef('KLPRCI_TaskState', 'rt=1714978961000 cs10=Update cs10Label=TaskName cn2=4 cn2Label=TaskNewState dhost=WS')}`);
      expect(ksc.accepts(e), head).toBe(true);
      expect(norm(`${head}${cef('KLPRCI_TaskState', 'cs10=Update cs10Label=TaskName cn2=4 cn2Label=TaskNewState dhost=WS')}`).ksc.task, head).toEqual({ name: 'Update', newState: 'completed', newStateCode: 4 });
    }
  });

  test('other CEF is not accepted and passes through unchanged', () => {
    for (const line of [
      'CEF:0|Kaspersky Lab|Kaspersky Endpoint Security|11|GNRL_EV_VIRUS_FOUND|x|5|dhost=a cs1=b cs1Label=VirusName',
      'CEF:0|KasperskyLab|KATA|4.0|x|y|5|dhost=a',
      'CEF:0|Security|threatmanager|1.0|100|worm successfully stopped|10|src=10.0.0.1 dst=2.1.2.2 spt=1232',
      'CEF:0|KasperskyLab',
    ]) {
      const event = decode(line);
      const before = JSON.stringify(event);
      expect(ksc.accepts(event)).toBe(false);
      expect(normalizeEvent(event, [ksc])).toEqual({ kind: 'none' });
      expect(JSON.stringify(event)).toBe(before);
      expect(ksc.normalize(event)).toBeNull();
    }
  });

  test('syslog: an event@<digits> element with et, or APP-NAME <product>|<version>', () => {
    const yes = [
      '<10>1 2024-01-01T00:00:00.000Z h KES|11.0.0.0 - X [event@23668 et="GNRL_EV_VIRUS_FOUND"] m',
      '1 2024-01-01T00:00:00.000Z h app - X [event@11111 et="A"] m',
      '<10>1 2024-01-01T00:00:00.000Z h KES|11.0.0.0 - GNRL_EV_VIRUS_FOUND - m',
      '<10>May  6 09:14:27 h 1093|1.0.0.0: text',
    ];
    const no = [
      '<10>1 2024-01-01T00:00:00.000Z h app - X [event@23668 p1="a"] m', // no et
      '<10>1 2024-01-01T00:00:00.000Z h app - X [exampleSDID@32473 et="A"] m',
      '<10>1 2024-01-01T00:00:00.000Z h app - X [event@abc et="A"] m',
      '<10>1 2024-01-01T00:00:00.000Z h app - X - m',
      '<10>May  6 09:14:27 h sshd[12]: Accepted password',
      '<10>May  6 09:14:27 h a|b: text', // version must be dotted digits
      '<10>May  6 09:14:27 h KES|11: text',
    ];
    for (const l of yes) expect(ksc.accepts(decode(l)), l).toBe(true);
    for (const l of no) {
      const event = decode(l);
      const before = JSON.stringify(event);
      expect(ksc.accepts(event), l).toBe(false);
      normalizeEvent(event, [ksc]);
      expect(JSON.stringify(event), l).toBe(before);
    }
  });

  test('loadNormalizer({name: "ksc"}) gives this normalizer', async () => {
    const n = await loadNormalizer({ name: 'ksc' });
    expect(n.name).toBe('ksc');
    expect(n.accepts(decode(cef('KLPRCI_TaskState', 'dhost=a')))).toBe(true);
  });
});

describe('CEF labels', () => {
  test('read by label whatever the slot, cs7..cs10 and beyond included; cnN give numbers', () => {
    const { ksc: k } = norm(
      cef('KLPRCI_TaskState', 'cs10=Update cs10Label=TaskName cs123=77 cs123Label=TaskId cn3=2 cn3Label=TaskOldState flexNumber2=4 flexNumber2Label=TaskNewState cs7=G cs7Label=GroupName'),
    );
    expect(k.task).toEqual({ name: 'Update', id: '77', oldState: 'suspended', newState: 'completed', oldStateCode: 2, newStateCode: 4 });
    expect(k.group).toBe('G');
    expect(k.labels).toEqual({ TaskName: 'Update', TaskId: '77', TaskOldState: 2, TaskNewState: 4, GroupName: 'G' });
  });

  test('every custom family counts: flexString, cfp (text), c6a, deviceCustomDate (ISO)', () => {
    const { ksc: k, warnings } = norm(
      cef('X', 'flexString1=fs flexString1Label=A cfp2=1.5 cfp2Label=B c6a3=fe80::1 c6a3Label=C deviceCustomDate1=1714978803000 deviceCustomDate1Label=D flexDate1=1714978803000 flexDate1Label=E'),
    );
    expect(k.labels).toEqual({ A: 'fs', B: '1.5', C: 'fe80::1', D: '2024-05-06T07:00:03.000Z', E: '2024-05-06T07:00:03.000Z' });
    expect(warnings).toEqual([]);
  });

  test('a value without its label is kept under the slot name, with ksc_unpaired_value', () => {
    const { ksc: k, warnings } = norm(cef('X', 'cs5=orphan cn2=7 cs6=x cs6Label='));
    expect(k.labels).toEqual({ deviceCustomString5: 'orphan', deviceCustomNumber2: 7, deviceCustomString6: 'x' });
    expect(warnings.map((w) => [w.code, w.key])).toEqual([
      ['ksc_unpaired_value', 'deviceCustomString5'],
      ['ksc_unpaired_value', 'deviceCustomNumber2'],
      ['ksc_unpaired_value', 'deviceCustomString6'],
    ]);
    expect(warnings[2]!.message).toContain('empty label');
  });

  test('a label without its value warns ksc_unpaired_label and stores nothing', () => {
    const { ksc: k, warnings } = norm(cef('KLPRCI_TaskState', 'cs10Label=TaskName cn1=1 cn1Label=TaskOldState'));
    expect(k.labels).toEqual({ TaskOldState: 1 });
    expect(k.task?.name).toBeUndefined();
    expect(warnings).toEqual([{ code: 'ksc_unpaired_label', key: 'deviceCustomString10Label', message: 'label "TaskName" has no value (deviceCustomString10)' }]);
  });

  test('a duplicate label: the lowest slot wins whatever the order, the other is kept as Label#slot', () => {
    for (const ext of [
      'cs10=B cs10Label=TaskName cs5=A cs5Label=TaskName',
      'cs5=A cs5Label=TaskName cs10=B cs10Label=TaskName',
      'cs10Label=TaskName cs5Label=TaskName cs10=B cs5=A',
    ]) {
      const { ksc: k, warnings } = norm(cef('KLPRCI_TaskState', ext));
      expect(k.labels).toEqual({ TaskName: 'A', 'TaskName#deviceCustomString10': 'B' });
      expect(k.task?.name).toBe('A');
      expect(codes(warnings)).toEqual(['ksc_duplicate_label']);
      expect(warnings[0]!.key).toBe('deviceCustomString10');
    }
    // cs before cn: a label on cs9 beats the same label on cn1
    const { ksc: k } = norm(cef('X', 'cn1=5 cn1Label=L cs9=s cs9Label=L cs12=t cs12Label=L'));
    expect(k.labels).toEqual({ L: 's', 'L#deviceCustomNumber1': 5, 'L#deviceCustomString12': 't' });
  });

  test('labels are matched in any letter case, with spaces, _ or - (the labels map keeps them as sent)', () => {
    const { ksc: k, warnings } = norm(
      cef(
        'GNRL_EV_ATTACK_DETECTED',
        'cs10=Update cs10Label=taskname cs4=17 cs4Label=TASKID cn1=1 cn1Label=task_old_state cn2=4 cn2Label=Task New State cs9=G cs9Label=group-name ' +
          'cs1=EICAR cs1Label=virusName cs5=C:\\\\x.exe cs5Label=Object Name cs6=CORP\\\\u cs6Label=username cs7=' + 'AB'.repeat(32) + ' cs7Label=sha256 ' +
          'cs8=Bruteforce cs8Label=attack name cs11=168234606 cs11Label=ATTACKERIPV4 cs12=3389 cs12Label=Attacked Port cs13=TCP cs13Label=protocol',
      ),
    );
    expect(warnings).toEqual([]);
    expect(k.task).toEqual({ name: 'Update', id: '17', oldState: 'running', newState: 'completed', oldStateCode: 1, newStateCode: 4 });
    expect(k.group).toBe('G');
    expect(k.labels['taskname']).toBe('Update');
    expect(k.labels['Task New State']).toBe(4);
    expect(k.threat).toMatchObject({ name: 'EICAR', objectPath: 'C:\\x.exe', user: 'CORP\\u', sha256: 'ab'.repeat(32) });
    expect(k.attack).toMatchObject({ name: 'Bruteforce', sourceIp: '10.7.14.110', port: 3389, protocol: 'TCP' });
    // Two spellings of one label: the lower slot wins, whatever the order.
    for (const ext of ['cs10=B cs10Label=TaskName cs5=A cs5Label=taskname', 'cs5=A cs5Label=taskname cs10=B cs10Label=TaskName']) {
      expect(norm(cef('KLPRCI_TaskState', ext)).ksc.task?.name, ext).toBe('A');
    }
  });

  test('an empty value is no value: typed fields are left out (labels and params keep it), in both formats', () => {
    const c = norm(
      cef(
        'GNRL_EV_ATTACK_DETECTED',
        'dhost= duser= act= cs1= cs1Label=VirusName cs5= cs5Label=ObjectName cs9= cs9Label=GroupName cs2= cs2Label=ProductName cs3= cs3Label=AttackName cs4= cs4Label=AttackerIPv4 cs6= cs6Label=AttackedPort cs7= cs7Label=TaskName',
      ),
    );
    expect(c.ksc.host).toEqual({});
    expect(c.ksc.group).toBeUndefined();
    expect(c.ksc.product).toBeUndefined();
    expect(c.ksc.task).toBeUndefined();
    expect(c.ksc.threat).toBeUndefined();
    expect(c.ksc.attack).toEqual({});
    expect(c.ksc.labels).toMatchObject({ VirusName: '', ObjectName: '', GroupName: '', TaskName: '' });
    expect(codes(c.warnings)).toEqual([]);
    // An empty value on a lower slot does not hide a value on a higher one.
    expect(norm(cef('KLPRCI_TaskState', 'cs1= cs1Label=TaskName cs10=Update cs10Label=taskname')).ksc.task?.name).toBe('Update');

    const s = norm(
      '<10>1 2023-08-01T10:40:12.000Z SUP-VM-12 KES|11.0.0.0 - GNRL_EV_ATTACK_DETECTED [event@23668 p1="" p2="" p3="" p4="" p6="" et="GNRL_EV_ATTACK_DETECTED" etdn="" tdn="" hdn="" hip="" gn="" kscfqdn=""] m',
    );
    expect(s.ksc.host).toEqual({ name: 'SUP-VM-12' });
    expect([s.ksc.eventName, s.ksc.group, s.ksc.component, s.ksc.server]).toEqual([undefined, undefined, undefined, undefined]);
    expect(s.ksc.attack).toEqual({});
    expect(s.ksc.params).toMatchObject({ p3: '', hdn: '' });
    expect(codes(s.warnings)).toEqual([]);
    const v = norm('<10>1 2024-01-01T00:00:00.000Z h KES|11.0.0.0 - GNRL_EV_VIRUS_FOUND [event@23668 p1="" p2="" p5="" p7="" p9="" et=""] m');
    expect(v.ksc.eventType).toBe('GNRL_EV_VIRUS_FOUND');
    expect(v.ksc.threat).toEqual({ action: 'detected' });
  });

  test('a cnN value that is not an integer stays text, with ksc_bad_number', () => {
    const { ksc: k, warnings } = norm(cef('X', 'cn1=abc cn1Label=Count'));
    expect(k.labels).toEqual({ Count: 'abc' });
    expect(warnings).toEqual([{ code: 'ksc_bad_number', key: 'deviceCustomNumber1', message: 'deviceCustomNumber1 is not an integer; kept as text' }]);
  });

  test('attack addresses and port from labels are checked: a bad one warns and the standard key (src, dst, dpt) is used', () => {
    const { ksc: k, warnings } = norm(
      cef(
        'GNRL_EV_ATTACK_DETECTED',
        'cs4=10.7.14.999 cs4Label=AttackerIPv4 cs5=x cs5Label=AttackName cs6=host.example cs6Label=AttackedIPv4 cs7=70000 cs7Label=AttackedPort dst=10.0.0.1',
        '4',
      ),
    );
    expect(k.attack).toEqual({ name: 'x', targetIp: '10.0.0.1' });
    expect(warnings.map((w) => [w.code, w.key])).toEqual([
      ['ksc_bad_number', 'AttackerIPv4'],
      ['ksc_bad_number', 'AttackedIPv4'],
      ['ksc_bad_number', 'AttackedPort'],
    ]);
    const fb = norm(cef('GNRL_EV_ATTACK_DETECTED', 'cs4=1.2.3 cs4Label=AttackerIPv4 cn1=-1 cn1Label=AttackedPort src=10.0.0.2 dpt=3389'));
    expect(fb.ksc.attack).toEqual({ sourceIp: '10.0.0.2', port: 3389 });
    expect(codes(fb.warnings)).toEqual(['ksc_bad_number', 'ksc_bad_number']);
    // Good values: dotted and decimal addresses, ports 0 and 65535.
    for (const [ip, port] of [['10.7.14.110', '0'], ['168234606', '65535']] as const) {
      const ok = norm(cef('GNRL_EV_ATTACK_DETECTED', `cs4=${ip} cs4Label=AttackerIPv4 cs6=10.0.0.9 cs6Label=AttackedIPv4 cs7=${port} cs7Label=AttackedPort dst=10.0.0.1`));
      expect(ok.ksc.attack).toEqual({ sourceIp: '10.7.14.110', targetIp: '10.0.0.9', port: Number(port) });
      expect(ok.warnings).toEqual([]);
    }
  });

  test('a cnN integer beyond 2^53 stays its decimal text, without ksc_bad_number (POLICY row 15)', () => {
    const { ksc: k, warnings } = norm(cef('X', 'cn1=99999999999999999999 cn1Label=Count cn2=-12345678901234567 cn2Label=Neg'));
    expect(k.labels).toEqual({ Count: '99999999999999999999', Neg: '-12345678901234567' });
    expect(warnings).toEqual([]);
  });

  test('labels such as __proto__ and constructor are plain keys', () => {
    const { ksc: k } = norm(cef('X', 'cs1=a cs1Label=__proto__ cs2=b cs2Label=constructor cs3=c cs3Label=toString'));
    expect(Object.keys(k.labels)).toEqual(['__proto__', 'constructor', 'toString']);
    expect(k.labels['__proto__']).toBe('a');
    expect(JSON.parse(JSON.stringify(k.labels))).toEqual(JSON.parse('{"__proto__":"a","constructor":"b","toString":"c"}'));
  });

  test('escapes in label and value text are undone once; = and spaces survive', () => {
    const { ksc: k } = norm(cef('X', 'cs1=a\\=b c\\\\d\\ne cs1Label=My \\= label'));
    expect(k.labels).toEqual({ 'My = label': 'a=b c\\d\ne' });
  });

  test('customSlot reads only custom full names, N 1..999', () => {
    expect(customSlot('deviceCustomString10')).toBe(10 << 1);
    expect(customSlot('deviceCustomString10Label')).toBe((10 << 1) | 1);
    expect(customSlot('deviceCustomNumber3')).toBe(1003 << 1);
    expect(customSlot('flexDate1Label')).toBe((6001 << 1) | 1);
    expect(customSlot('deviceCustomDate2')).toBe(7002 << 1);
    for (const k of ['deviceCustomString0', 'deviceCustomString01', 'deviceCustomString1000', 'deviceCustomStringLabel', 'deviceCustomString1Labels', 'destinationHostName', 'flexString', 'cs1', 'deviceCustomDate1x']) {
      expect(customSlot(k), k).toBe(-1);
    }
  });
});

describe('task states', () => {
  test('KLPRCI 0..7', () => {
    expect(TASK_STATES).toEqual(['created', 'running', 'suspended', 'failed', 'completed', 'failed_timeout', 'reloading', 'inactive']);
    for (let code = 0; code <= 7; code++) {
      const { ksc: k, warnings } = norm(cef('KLPRCI_TaskState', `cn1=${code} cn1Label=TaskNewState`));
      expect(k.task).toEqual({ newState: TASK_STATES[code], newStateCode: code });
      expect(warnings).toEqual([]);
    }
  });

  test('unknown codes (the host-task bitmask 8, 16, 64; negative) give unknown, keep the code and warn', () => {
    for (const code of [8, 16, 32, 64, -1, 100]) {
      const { ksc: k, warnings } = norm(cef('KLPRCI_TaskState', `cn1=${code} cn1Label=TaskNewState cn2=1 cn2Label=TaskOldState`));
      expect(k.task).toMatchObject({ oldState: 'running', oldStateCode: 1, newState: 'unknown', newStateCode: code });
      expect(warnings).toEqual([{ code: 'ksc_unknown_state', key: 'TaskNewState', message: `TaskNewState ${code} is not a KLPRCI task state (0-7): state unknown, code kept` }]);
    }
  });

  test('a state sent as text is read; text that is not an integer gives unknown without a code', () => {
    expect(norm(cef('KLPRCI_TaskState', 'cs1=3 cs1Label=TaskNewState')).ksc.task).toEqual({ newState: 'failed', newStateCode: 3 });
    const { ksc: k, warnings } = norm(cef('KLPRCI_TaskState', 'cs1=done cs1Label=TaskNewState'));
    expect(k.task).toEqual({ newState: 'unknown' });
    expect(codes(warnings)).toEqual(['ksc_unknown_state']);
  });

  test('a state beyond 2^53 is unknown without a code: out of range, not "not an integer"', () => {
    const { ksc: k, warnings } = norm(cef('KLPRCI_TaskState', 'cn2=99999999999999999999 cn2Label=TaskNewState'));
    expect(k.task).toEqual({ newState: 'unknown' });
    expect(k.labels).toEqual({ TaskNewState: '99999999999999999999' });
    expect(warnings).toEqual([
      { code: 'ksc_unknown_state', key: 'TaskNewState', message: 'TaskNewState "99999999999999999999" is out of range (beyond 2^53): state unknown' },
    ]);
  });

  test('task labels on a non-task event still give task; a task_state event without them gives an empty task', () => {
    expect(norm(cef('KLAUD_EV_TASK_STATE_CHANGED', 'cs1=T cs1Label=TaskName')).ksc.task).toEqual({ name: 'T' });
    expect(norm(cef('KLPRCI_TaskState', 'dhost=a')).ksc.task).toEqual({});
    expect(norm(cef('GNRL_EV_VIRUS_FOUND', 'dhost=a')).ksc.task).toBeUndefined();
  });
});

describe('severity', () => {
  test('KSC importance 1-4; CEF words by their order; other numbers unknown with the code kept; other text warns', () => {
    const table: [string, string, number | undefined][] = [
      ['1', 'info', 1],
      ['2', 'warning', 2],
      ['3', 'error', 3],
      ['4', 'critical', 4],
      ['0', 'unknown', 0],
      ['7', 'unknown', 7],
      ['Low', 'info', undefined],
      ['MEDIUM', 'warning', undefined],
      ['High', 'error', undefined],
      ['Very-High', 'critical', undefined],
      ['very high', 'critical', undefined],
      ['Unknown', 'unknown', undefined],
      ['Severe', 'unknown', undefined],
    ];
    for (const [sev, name, code] of table) {
      const { ksc: k, warnings } = norm(cef('X', 'dhost=a', sev));
      expect([k.severity, k.severityCode], sev).toEqual([name, code]);
      expect(codes(warnings), sev).toEqual(sev === 'Severe' ? ['ksc_bad_number'] : []);
      // The event's own (lean) object says the same.
      const event = decode(cef('X', 'dhost=a', sev));
      normalizeEvent(event, [ksc]);
      expect((event.ksc as { severity: string }).severity, sev).toBe(name);
    }
  });

  test('syslog format: from the PRI severity (inferred), unknown without PRI', () => {
    const line = (pri: string) => `${pri}1 2024-01-01T00:00:00.000Z h KES|11.0.0.0 - X [event@23668 et="X"] m`;
    expect(norm(line('<10>')).ksc.severity).toBe('critical');
    expect(norm(line('<11>')).ksc.severity).toBe('error');
    expect(norm(line('<12>')).ksc.severity).toBe('warning');
    expect(norm(line('<14>')).ksc.severity).toBe('info');
    expect(norm(line('')).ksc.severity).toBe('unknown');
    expect(norm(line('<10>')).ksc.severityCode).toBeUndefined();
  });
});

describe('categories come from the event type', () => {
  test('known types and families', () => {
    const table: [string, string][] = [
      ['KLPRCI_TaskState', 'task_state'],
      ['KLEVP_GroupTaskSyncState', 'task_state'],
      ['GNRL_EV_VIRUS_FOUND', 'detection'],
      ['GNRL_EV_VIRUS_FOUND_BY_KSN', 'detection'],
      ['GNRL_EV_SUSPICIOUS_OBJECT_FOUND', 'detection'],
      ['GNRL_EV_VIRUS_OUTBREAK', 'detection'],
      ['GNRL_EV_OBJECT_CURED', 'object_action'],
      ['GNRL_EV_OBJECT_SOMETHING_NEW', 'object_action'],
      ['GNRL_EV_ATTACK_DETECTED', 'attack'],
      ['GNRL_EV_APPLICATION_LAUNCH_DENIED', 'application_control'],
      ['GNRL_EV_APPLICATION_LAUNCH_DENIE', 'application_control'], // a cut MSGID
      ['GNRL_EV_WEB_URL_BLOCKED_BY_KSN', 'web'],
      ['GNRL_EV_DEVCTRL_DEV_PLUG_DENIED', 'device_control'],
      ['KLNAG_EV_DEVICE_ARRIVAL', 'device_control'],
      ['KLSRV_HOST_STATUS_CRITICAL', 'device_status'],
      ['KLSRV_EVENT_HOSTS_NEW_DETECTED', 'device_status'],
      ['KLSRV_INVISIBLE_HOSTS_REMOVED', 'device_status'],
      ['KLNAG_EV_INV_APP_INSTALLED', 'inventory'],
      ['KLSRV_UPD_BASES_UPDATED', 'update'],
      ['KLSRV_EV_UPDATES_DOWNLOADED', 'update'],
      ['KLNAG_EV_PATCH_INSTALLED_SUCCESSFULLY', 'update'],
      ['KLSRV_EV_LICENSE_CHECK_90', 'license'],
      ['GNRL_EV_LICENSE_EXPIRATION', 'license'],
      ['KLAUD_EV_OBJECTMODIFY', 'audit'],
      ['KLAUD_EV_TASK_STATE_CHANGED', 'audit'],
      ['KLSRV_RUNTIME_ERROR', 'infrastructure'],
      ['KSNPROXY_STARTED_CON_CHK_OK', 'infrastructure'],
      ['000000cc', 'other'],
      ['', 'other'],
    ];
    for (const [t, c] of table) expect(typeInfo(t).category, t).toBe(c);
    expect(typeInfo(undefined).category).toBe('other');
  });

  test('families apply in the order of docs/ksc-normalizer.md: device_status and inventory before update (`_UPD`)', () => {
    for (const [t, c] of [
      ['KLNAG_EV_INV_APP_UPDATED', 'inventory'],
      ['KLSRV_HOST_UPDATED_STATUS', 'device_status'],
      ['KLSRV_HOSTS_UPDATE_FAILED', 'device_status'],
      ['KLSRV_EVENT_HOSTS_UPDATED', 'device_status'],
      ['KLSRV_UPD_BASES_UPDATED', 'update'],
    ] as const) {
      expect(typeInfo(t).category, t).toBe(c);
    }
  });

  test('the display name never decides: a Russian Name gives the same category as an English one', () => {
    const ru = norm(cef('GNRL_EV_VIRUS_FOUND', 'dhost=a', '4', 'Обнаружен вредоносный объект')).ksc;
    const en = norm(cef('GNRL_EV_VIRUS_FOUND', 'dhost=a', '4', 'Malicious object detected')).ksc;
    expect(ru.category).toBe('detection');
    expect({ ...ru, eventName: undefined }).toEqual({ ...en, eventName: undefined });
  });
});

describe('syslog format', () => {
  const sd = (params: string, msgid = 'X', msg = 'm') => `<10>1 2024-02-19T13:18:51.000Z WS-1.corp.example KES|11.0.0.0 - ${msgid} [event@23668 ${params}] ${msg}`;

  test('the event type is et, not the cut MSGID; MSGID is used only without et', () => {
    expect(norm(sd('et="GNRL_EV_APPLICATION_LAUNCH_DENIED"', 'GNRL_EV_APPLICATION_LAUNCH_DENIE')).ksc.eventType).toBe('GNRL_EV_APPLICATION_LAUNCH_DENIED');
    const r = norm('<10>1 2024-02-19T13:18:51.000Z h KES|11.0.0.0 - GNRL_EV_APPLICATION_LAUNCH_DENIE - text');
    expect(r.ksc.eventType).toBe('GNRL_EV_APPLICATION_LAUNCH_DENIE');
    expect(r.ksc.category).toBe('application_control');
    expect(r.ksc.format).toBe('syslog_nosd');
    expect(r.warnings[0]!.message).toContain('may be cut at 32 characters');
  });

  test('MSG is split on the literal 4-char \\r\\n only: unescaped backslashes stay intact', () => {
    const { ksc: k } = norm(sd('et="X"', 'X', 'Path: C:\\Windows\\Temp\\rm.bat\\r\\nUser: NT AUTHORITY\\SYSTEM\\r\\n\\r\\nLast\\r\\n\\r\\n'));
    expect(k.messageLines).toEqual(['Path: C:\\Windows\\Temp\\rm.bat', 'User: NT AUTHORITY\\SYSTEM', '', 'Last']);
  });

  test('attack: p6 empty, absent or not an address gives hip, as the CEF form gives dst; p4 must be a port', () => {
    const hip = 'hip="10.7.14.13"';
    for (const p6 of ['p6=""', '', 'p6="x"']) {
      const r = norm(sd(`p1="Bruteforce" p3="168234606" p4="3389" ${p6} et="GNRL_EV_ATTACK_DETECTED" ${hip}`));
      expect(r.ksc.attack, p6).toEqual({ name: 'Bruteforce', sourceIp: '10.7.14.110', targetIp: '10.7.14.13', port: 3389 });
      expect(r.warnings.map((w) => [w.code, w.key]), p6).toEqual(p6 === 'p6="x"' ? [['ksc_bad_number', 'p6']] : []);
    }
    // A dotted address is read as the CEF path reads one: checked, not taken as is.
    expect(norm(sd('p3="10.7.14.110" p6="10.7.14.13" et="GNRL_EV_ATTACK_DETECTED"')).ksc.attack).toEqual({ sourceIp: '10.7.14.110', targetIp: '10.7.14.13' });
    const bad = norm(sd(`p3="10.7.14.999" p4="70000" et="GNRL_EV_ATTACK_DETECTED" ${hip}`));
    expect(bad.ksc.attack).toEqual({ targetIp: '10.7.14.13' });
    expect(bad.warnings.map((w) => [w.code, w.key])).toEqual([
      ['ksc_bad_number', 'p3'],
      ['ksc_bad_number', 'p4'],
    ]);
  });

  test('attack: decimal IPv4 in p3/p6 converted; bad values warn and are left out', () => {
    const { ksc: k } = norm(sd('p1="Bruteforce" p2="TCP" p3="168234606" p4="3389" p6="168234509" et="GNRL_EV_ATTACK_DETECTED"'));
    expect(k.attack).toEqual({ name: 'Bruteforce', protocol: 'TCP', sourceIp: '10.7.14.110', targetIp: '10.7.14.13', port: 3389 });
    const bad = norm(sd('p3="4294967296" p4="x" p6="-1" et="GNRL_EV_ATTACK_DETECTED"'));
    expect(bad.ksc.attack).toEqual({});
    expect(bad.warnings.map((w) => [w.code, w.key])).toEqual([
      ['ksc_bad_number', 'p3'],
      ['ksc_bad_number', 'p6'],
      ['ksc_bad_number', 'p4'],
    ]);
  });

  test('p9 md5 is read defensively: broken JSON never throws and gives no md5', () => {
    for (const p9 of ['{\\"md5\\":\\"44D88612FEA8A8F36DE82E1278ABB02F\\"}', '{\\"md5\\": \\"44d88612fea8a8f36de82e1278abb02f\\" }']) {
      expect(norm(sd(`p9="${p9}" et="GNRL_EV_VIRUS_FOUND"`)).ksc.threat?.md5).toBe('44d88612fea8a8f36de82e1278abb02f');
    }
    for (const p9 of ['{', '{\\"md5\\":', '{\\"md5\\":1}', '{\\"md5\\":\\"xyz\\"}', 'not json', '{\\"md5\\":\\"44D8', '']) {
      expect(norm(sd(`p9="${p9}" et="GNRL_EV_VIRUS_FOUND"`)).ksc.threat, p9).toEqual({ action: 'detected' });
    }
  });

  test('hdn/hip are the host, HOSTNAME becomes fqdn when it is a dotted name, kscfqdn the server', () => {
    const { ksc: k } = norm(sd('et="X" hdn="WS-1" hip="127.0.0.1" gn="G" kscfqdn="ksc.example"'));
    expect(k.host).toEqual({ name: 'WS-1', ip: '127.0.0.1', fqdn: 'WS-1.corp.example' });
    expect(k.server).toEqual({ name: 'ksc.example' });
    expect(k.group).toBe('G');
    expect(k.product).toEqual({ name: 'KES', version: '11.0.0.0' });
    const ip = norm('<10>1 2024-02-19T13:18:51.000Z 10.0.0.1 KES|11.0.0.0 - X [event@23668 et="X"] m').ksc;
    expect(ip.host).toEqual({ name: '10.0.0.1' });
  });

  test('params keep every SD param as sent, in a copy', () => {
    const event = decode(sd('p1="a" et="X" engine="1"'));
    normalizeEvent(event, [ksc]);
    const k = kscView(event)!;
    expect(k.params).toEqual({ p1: 'a', et: 'X', engine: '1' });
    expect(k.params).not.toBe(event.syslog!.structuredData!['event@23668']);
  });
});

describe('purity', () => {
  test('normalize does not change the event; the runner only adds ksc and warnings', () => {
    for (const line of [
      cef('KLPRCI_TaskState', 'cs10=T cs10Label=TaskName cs10=U cn1=9 cn1Label=TaskNewState cs5=x cs6Label=Y cs1=a cs1Label=L cs2=b cs2Label=L'),
      '<10>1 2024-02-19T13:18:51.000Z h KES|11.0.0.0 - X [event@23668 p3="x" et="GNRL_EV_ATTACK_DETECTED"] a\\r\\nb',
    ]) {
      const event = decode(line);
      const before = structuredClone(event);
      const out = ksc.normalize(event);
      expect(out).not.toBeNull();
      expect(event).toEqual(before);
      normalizeEvent(event, [ksc]);
      const { ksc: added, warnings, ...rest } = event;
      const { ksc: _k, warnings: beforeWarnings, ...restBefore } = before;
      expect(rest).toEqual(restBefore);
      expect(added).toBeDefined();
      expect(warnings!.slice(0, beforeWarnings?.length ?? 0)).toEqual(beforeWarnings ?? []);
    }
  });

  test('the runner reports the category as the type', () => {
    const event = decode(cef('GNRL_EV_ATTACK_DETECTED', 'dhost=a'));
    expect(normalizeEvent(event, [ksc])).toEqual({ kind: 'normalized', normalizer: 'ksc', type: 'attack' });
  });
});

describe('the benchmark workload (../shared/bench-peer/gen-ksc.mjs layout)', () => {
  test('states on swapped slots and host-bitmask codes; CEF escapes in values', () => {
    const line =
      '<14>1 2026-11-28T10:00:00.000Z ksc01 KSC - - - CEF:0|KasperskyLab|SecurityCenter|14.2.0.26967|KLPRCI_TaskState|Failed|3|rt=1795860000000 dhost=WS-0001 dst=10.1.0.16 cs1=KES cs1Label=ProductName cs2=12.3.0.493 cs2Label=ProductVersion cs3=Update databases cs3Label=TaskName cn1=8 cn1Label=TaskNewState cn2=2 cn2Label=TaskOldState cs5=CORP\\\\jdoe cs5Label=TaskOwner msg=Task "Update databases" failed on WS-0001; path\\=C:\\\\ProgramData';
    const { ksc: k, warnings } = norm(line);
    expect(k.task).toEqual({ name: 'Update databases', oldState: 'suspended', oldStateCode: 2, newState: 'unknown', newStateCode: 8 });
    expect(k.labels['TaskOwner']).toBe('CORP\\jdoe');
    // CEF: the message is in cef.extensions.message (decoded); ksc does not repeat it.
    expect(k.messageLines).toBeUndefined();
    expect(k.severity).toBe('error');
    expect(codes(warnings)).toEqual(['ksc_unknown_state']);
  });
});

describe('helpers', () => {
  test('ipv4FromDecimal', () => {
    expect(ipv4FromDecimal('168234606')).toBe('10.7.14.110');
    expect(ipv4FromDecimal('0')).toBe('0.0.0.0');
    expect(ipv4FromDecimal('4294967295')).toBe('255.255.255.255');
    for (const s of ['4294967296', '', '1.2', '-1', '12345678901', ' 1']) expect(ipv4FromDecimal(s), s).toBeUndefined();
  });

  test('parseInteger', () => {
    expect(parseInteger('42')).toBe(42);
    expect(parseInteger('-7')).toBe(-7);
    for (const s of ['', '-', '4.0', ' 1', '1e3', '0x10', '1234567890123456']) expect(parseInteger(s), s).toBeUndefined();
  });

  test('jsonStringMember', () => {
    expect(jsonStringMember('{"a":1,"md5":"x"}', 'md5')).toBe('x');
    expect(jsonStringMember('{"md5" : "x"}', 'md5')).toBe('x');
    expect(jsonStringMember('{"md5":"x\\"y"}', 'md5')).toBeUndefined();
    expect(jsonStringMember('{"md5":null}', 'md5')).toBeUndefined();
  });

  test('kscAppNameBar', () => {
    expect(kscAppNameBar('KES|11.0.0.0')).toBe(3);
    expect(kscAppNameBar('1093|1.0.0.0')).toBe(4);
    for (const s of [undefined, 'KES', 'KES|', '|1.0', 'KES|11', 'K S|1.0', 'KES|1.0a', 'KES|a.1']) expect(kscAppNameBar(s), String(s)).toBe(-1);
  });
});

describe('task lifecycles (fixtures/ksc/lifecycles)', () => {
  const DIR = fileURLToPath(new URL('../../../fixtures/ksc/lifecycles/', import.meta.url));
  const expected: Record<string, string[]> = {
    'created-running-completed.txt': ['created', 'running', 'completed'],
    'running-failed.txt': ['created', 'running', 'failed'],
    'running-suspended-running-completed.txt': ['created', 'running', 'suspended', 'running', 'completed'],
    'running-failed-timeout.txt': ['created', 'running', 'failed_timeout'],
  };

  test('every sequence file has an expectation', () => {
    expect(readdirSync(DIR).sort()).toEqual(Object.keys(expected).sort());
  });

  for (const [file, states] of Object.entries(expected)) {
    test(file, () => {
      const lines = readFileSync(`${DIR}${file}`, 'utf8').split('\n').filter((l) => l !== '' && !l.startsWith('#'));
      const results = lines.map((l) => norm(l));
      const tasks = results.map((r) => r.ksc.task!);
      // Each event continues the previous one: its old state is the previous new state.
      const chain = [tasks[0]!.oldState, ...tasks.map((t) => t.newState)];
      expect(chain).toEqual(states);
      for (let i = 1; i < tasks.length; i++) expect(tasks[i]!.oldStateCode).toBe(tasks[i - 1]!.newStateCode);
      // One task on one device, and no warnings.
      expect(new Set(tasks.map((t) => `${t.name}/${t.id}`)).size).toBe(1);
      expect(new Set(results.map((r) => r.ksc.host.name)).size).toBe(1);
      expect(results.flatMap((r) => r.warnings)).toEqual([]);
      expect(results.every((r) => r.type === 'task_state')).toBe(true);
    });
  }
});
