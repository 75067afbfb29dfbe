/**
 * One KSC event, two export formats: the CEF ("ArcSight") line and the RFC 5424
 * "Syslog" line of the same event give the same `ksc` object, except for what only one
 * format carries (docs/reference/ksc-format.md §2, §3): `format`, `labels` (CEF), `params` and
 * `messageLines` (Syslog), `severityCode` (CEF header), `server` (CEF Device Version,
 * Syslog kscfqdn) and `host.fqdn` (the Syslog HOSTNAME).
 *
 * The Syslog lines are the public captures of fixtures/ksc/samples.txt and
 * fixtures-draft.txt (the PRI set to `<10>` where the capture's PRI is a test template or
 * was stripped by a relay, so both lines carry the same importance, critical). The CEF
 * lines carry the same values under the labels of FORMAT.md §3.2 (the managed device in
 * dhost/dst, the user in duser).
 */
import { describe, expect, test } from 'vitest';
import { decodeFrame } from '../../../src/codecs/decode.js';
import { normalizeEvent } from '../../../src/pipeline/normalize.js';
import ksc, { kscView, type KscObject } from '../../../normalizers/ksc/index.js';

const RECEIVED_MS = Date.UTC(2024, 5, 1, 12, 0, 0);
const HEAD = 'CEF:0|KasperskyLab|SecurityCenter|13.2.0.1511';

/** The event's lean `ksc`, the whole object, and the normalizer's warnings. */
function run(line: string): { lean: unknown; whole: KscObject; warnings: string[] } {
  const r = decodeFrame(Buffer.from(line), false, RECEIVED_MS);
  if (!r.ok) throw new Error(`not an event: ${r.failure.message}`);
  const before = r.event.warnings?.length ?? 0;
  const out = normalizeEvent(r.event, [ksc]);
  if (out.kind !== 'normalized') throw new Error(`not normalized: ${out.kind}`);
  return { lean: r.event.ksc, whole: kscView(r.event)!, warnings: (r.event.warnings ?? []).slice(before).map((w) => w.code) };
}

/** The fields both formats carry (the file comment lists the others). */
function common(k: KscObject): unknown {
  const { format: _f, labels: _l, params: _p, messageLines: _m, severityCode: _s, server: _v, host, ...rest } = k;
  return JSON.parse(JSON.stringify({ ...rest, host: { name: host.name, ip: host.ip } }));
}

/** The lean object without messageLines (Syslog only; CEF's description is cef.extensions.message). */
function commonLean(lean: unknown): unknown {
  const { messageLines: _m, ...rest } = lean as Record<string, unknown>;
  return JSON.parse(JSON.stringify(rest));
}

/** fixtures-draft.txt line 43: the attacked address is the managed device's, dst. */
const ATTACK_CEF =
  `${HEAD}|GNRL_EV_ATTACK_DETECTED|Network attack detected|4|rt=1690886412000 cs9=Managed devices cs9Label=GroupName dhost=SUP-VM-12 dst=10.7.14.13 ` +
  'cs2=KES cs2Label=ProductName cs3=11.0.0.0 cs3Label=ProductVersion cs10=Network Threat Protection cs10Label=Component cs4=10.7.14.110 cs4Label=AttackerIPv4 ' +
  'cs5=Bruteforce.Generic.Rdp.a cs5Label=AttackName cs6=TCP cs6Label=AttackedProtocol cs7=3389 cs7Label=AttackedPort';

const cases: { type: string; name?: string; cef: string; syslog: string }[] = [
  {
    type: 'GNRL_EV_VIRUS_FOUND',
    cef:
      `${HEAD}|GNRL_EV_VIRUS_FOUND|Malicious object detected|4|rt=1646063335000 cs9=Matheus - Teste cs9Label=GroupName dhost=SUP-01 dst=10.81.234.7 ` +
      'cs2=KES cs2Label=ProductName cs3=11.0.0.0 cs3Label=ProductVersion cs6=File Threat Protection cs6Label=Component cs1=EICAR-Test-File cs1Label=VirusName ' +
      'cs5=C:\\\\Users\\\\matheus.oliveira\\\\AppData\\\\Local\\\\Temp\\\\Temp1_eicar - Copy.zip\\\\eicar.com cs5Label=ObjectName duser=AIM7\\\\matheus.oliveira ' +
      'cs7=275A021BBFB6489E54D471899F7DB9D1663FC695EC2FE2A2C4538AABF651FD0F cs7Label=SHA256 cs8=44D88612FEA8A8F36DE82E1278ABB02F cs8Label=MD5',
    // samples.txt line 16
    syslog:
      '<10>1 2022-02-28T15:48:55.000Z sup-01.aim7.local KES|11.0.0.0 - GNRL_EV_VIRUS_FOUND [event@23668 p1="275A021BBFB6489E54D471899F7DB9D1663FC695EC2FE2A2C4538AABF651FD0F" ' +
      'p2="C:\\\\Users\\\\matheus.oliveira\\\\AppData\\\\Local\\\\Temp\\\\Temp1_eicar - Copy.zip\\\\eicar.com" p5="EICAR-Test-File" p7="AIM7\\\\matheus.oliveira" p8="60" ' +
      'p9="{\\"engine\\":1,\\"method\\":3,\\"edr_ver\\":1,\\"edr\\": {\\"id\\":\\"93bd30af-5cd5-4325-bb75-31b296d7f257\\"},\\"md5\\":\\"44D88612FEA8A8F36DE82E1278ABB02F\\"}" ' +
      'et="GNRL_EV_VIRUS_FOUND" tdn="File Threat Protection" etdn="Malicious object detected" hdn="SUP-01" hip="10.81.234.7" gn="Matheus - Teste" engine="1" method="3"] ' +
      'Result description: Detected\\r\\nType: Virus',
  },
  {
    type: 'GNRL_EV_OBJECT_NOTCURED',
    cef:
      `${HEAD}|GNRL_EV_OBJECT_NOTCURED|Object not disinfected|4|rt=1651606022000 cs9=SERVIDORES cs9Label=GroupName dhost=ZANGADO dst=127.0.0.1 ` +
      'cs2=WSEE cs2Label=ProductName cs3=10.1.0.0 cs3Label=ProductVersion cs6=Real-Time File Protection cs6Label=Component ' +
      'cs5=C:\\\\Users\\\\Administrator\\\\AppData\\\\Local\\\\Temp\\\\3\\\\Temp1_eicar_com.zip\\\\eicar.com cs5Label=ObjectName duser=ZANGADO\\\\Administrator',
    // samples.txt line 20
    syslog:
      '<10>1 2022-05-03T19:27:02.000Z zangado.aim7.local WSEE|10.1.0.0 - GNRL_EV_OBJECT_NOTCURED [event@23668 p2="C:\\\\Users\\\\Administrator\\\\AppData\\\\Local\\\\Temp\\\\3\\\\Temp1_eicar_com.zip\\\\eicar.com" ' +
      'p6="0" p7="ZANGADO\\\\Administrator" p9="{\\"engine\\":1,\\"method\\":5}" et="GNRL_EV_OBJECT_NOTCURED" tdn="Real-Time File Protection" ' +
      'etdn="Object not disinfected" hdn="ZANGADO" hip="127.0.0.1" gn="SERVIDORES"] Object not disinfected.\\r\\n\\r\\n',
  },
  {
    type: 'GNRL_EV_OBJECT_BLOCKED',
    cef:
      `${HEAD}|GNRL_EV_OBJECT_BLOCKED|Загрузка объекта запрещена|4|rt=1708348731000 cs9=Управляемые устройства cs9Label=GroupName dhost=EXAMPLE-PC dst=10.10.10.10 ` +
      'cs2=KES cs2Label=ProductName cs3=11.0.0.0 cs3Label=ProductVersion cs6=Защита от веб-угроз cs6Label=Component cs1=not-a-virus:HEUR:AdWare.Script.Pusher.gen cs1Label=VirusName ' +
      `cs5=https://BAD.SITE cs5Label=ObjectName duser=DOMAIN\\\\USER cs7=${'1'.repeat(64)} cs7Label=SHA256 cs8=${'1'.repeat(32)} cs8Label=MD5`,
    // samples.txt line 22 (its PRI was stripped by a relay)
    syslog:
      `<10>1 2024-02-19T13:18:51.000Z EXAMPLE-PC KES|11.0.0.0 - GNRL_EV_OBJECT_BLOCKED [event@11111 p1="${'1'.repeat(64)}" p2="https://BAD.SITE" ` +
      'p5="not-a-virus:HEUR:AdWare.Script.Pusher.gen" p7="DOMAIN\\\\USER" p8="65" ' +
      `p9="{\\"engine\\":3,\\"method\\":0,\\"blacklist\\":false,\\"cloud_sb\\":false,\\"md5\\":\\"${'1'.repeat(32)}\\"}" et="GNRL_EV_OBJECT_BLOCKED" tdn="Защита от веб-угроз" ` +
      'etdn="Загрузка объекта запрещена" hdn="EXAMPLE-PC" hip="10.10.10.10" gn="Управляемые устройства" kscfqdn="KES.EXAMPLE"] Описание результата: Запрещено',
  },
  {
    type: 'GNRL_EV_ATTACK_DETECTED',
    cef: ATTACK_CEF,
    // fixtures-draft.txt line 102 (the Wazuh fragment of samples.txt, completed)
    syslog:
      '<10>1 2023-08-01T10:40:12.000Z sup-vm-12.lab-antimalware.local KES|11.0.0.0 - GNRL_EV_ATTACK_DETECTED [event@23668 p1="Bruteforce.Generic.Rdp.a" p2="TCP" ' +
      'p3="168234606" p4="3389" p6="168234509" et="GNRL_EV_ATTACK_DETECTED" tdn="Network Threat Protection" etdn="Network attack detected" hdn="SUP-VM-12" ' +
      'hip="10.7.14.13" gn="Managed devices" kscfqdn="srv-vm-12.lab-antimalware.local"] User: NT AUTHORITY\\SYSTEM (System user)',
  },
  {
    type: 'GNRL_EV_ATTACK_DETECTED',
    name: 'GNRL_EV_ATTACK_DETECTED without the attacked address',
    // The same attack without the attacked address (p6 is often absent, FORMAT.md §2.1):
    // it is the managed device's, dst in CEF and hip in the Syslog format.
    cef: ATTACK_CEF,
    syslog:
      '<10>1 2023-08-01T10:40:12.000Z sup-vm-12.lab-antimalware.local KES|11.0.0.0 - GNRL_EV_ATTACK_DETECTED [event@23668 p1="Bruteforce.Generic.Rdp.a" p2="TCP" ' +
      'p3="168234606" p4="3389" et="GNRL_EV_ATTACK_DETECTED" tdn="Network Threat Protection" etdn="Network attack detected" hdn="SUP-VM-12" ' +
      'hip="10.7.14.13" gn="Managed devices" kscfqdn="srv-vm-12.lab-antimalware.local"] User: NT AUTHORITY\\SYSTEM (System user)',
  },
  {
    type: 'GNRL_EV_OBJECT_SOMETHING_NEW',
    name: 'an object event cefd has no action for, without any object field: no threat in either format',
    cef:
      `${HEAD}|GNRL_EV_OBJECT_SOMETHING_NEW|Something new|3|rt=1690886412000 cs9=Managed devices cs9Label=GroupName dhost=SUP-VM-12 dst=10.7.14.13 ` +
      'cs2=KES cs2Label=ProductName cs3=11.0.0.0 cs3Label=ProductVersion',
    syslog:
      '<11>1 2023-08-01T10:40:12.000Z sup-vm-12.lab-antimalware.local KES|11.0.0.0 - GNRL_EV_OBJECT_SOMETHING [event@23668 et="GNRL_EV_OBJECT_SOMETHING_NEW" ' +
      'etdn="Something new" hdn="SUP-VM-12" hip="10.7.14.13" gn="Managed devices"] Something new',
  },
  {
    type: 'GNRL_EV_APPLICATION_LAUNCH_DENIED',
    cef:
      `${HEAD}|GNRL_EV_APPLICATION_LAUNCH_DENIED|Application startup prohibited|4|rt=1647626887000 cs9=Bourbonnais Medical Plaza cs9Label=GroupName dhost=WS11128 dst=10.21.203.17 ` +
      'cs2=KES cs2Label=ProductName cs3=11.0.0.0 cs3Label=ProductVersion cs6=Application Control cs6Label=Component ' +
      'cs5=C:\\\\Windows\\\\SysWOW64\\\\config\\\\systemprofile\\\\Citrix\\\\UpdaterBinaries\\\\rm.bat cs5Label=ObjectName duser=NT AUTHORITY\\\\SYSTEM ' +
      'cs7=DF4C7A695766C5592C6AAB9BD2D2EB87E0C73EAE9218955F61E507E564F26CFC cs7Label=SHA256',
    // samples.txt line 14 (its PRI <29> is the SC4S test template)
    syslog:
      '<10>1 2022-03-18T18:08:07.000Z WS11128 KES|11.0.0.0 - GNRL_EV_APPLICATION_LAUNCH_DENIE [event@23668 p1="829fdcfa98cbcc63" p2="NT AUTHORITY\\\\SYSTEM" ' +
      'p3="00000000000000000000000000000000" p4="EAC00100000000000000000000000000" p5="{\\"CertSerial\\":\\"\\" ,\\"ParentProcess\\":\\"\\"}" p6="rm.bat" ' +
      'p7="C:\\\\Windows\\\\SysWOW64\\\\config\\\\systemprofile\\\\Citrix\\\\UpdaterBinaries\\\\rm.bat" p8=";DF4C7A695766C5592C6AAB9BD2D2EB87E0C73EAE9218955F61E507E564F26CFC" ' +
      'et="GNRL_EV_APPLICATION_LAUNCH_DENIED" tdn="Application Control" etdn="Application startup prohibited" hdn="WS11128" hip="10.21.203.17" gn="Bourbonnais Medical Plaza"] ' +
      'Event type: Application startup prohibited\\r\\nObject name: rm.bat',
  },
  {
    type: 'KLPRCI_TaskState',
    // No public capture shows task states in the Syslog format (fixtures-draft.txt line 110
    // is speculative: only tdn), so the CEF line carries only what that line has.
    cef:
      `${HEAD}|KLPRCI_TaskState|Completed successfully|1|rt=1714978961000 cs9=Workstations cs9Label=GroupName dhost=WS-0142 dst=10.0.12.42 ` +
      'cs2=KES cs2Label=ProductName cs3=11.0.0.0 cs3Label=ProductVersion cs10=Update cs10Label=TaskName',
    syslog:
      '<14>1 2024-05-06T07:02:41.000Z WS-0142.corp.example KES|11.0.0.0 - KLPRCI_TaskState [event@23668 et="KLPRCI_TaskState" tdn="Update" ' +
      'etdn="Completed successfully" hdn="WS-0142" hip="10.0.12.42" gn="Workstations" kscfqdn="ksc01.corp.example"] Completed successfully',
  },
];

describe('the same KSC event in CEF and in the Syslog format gives the same ksc object', () => {
  for (const c of cases) {
    test(c.name ?? c.type, () => {
      const fromCef = run(c.cef);
      const fromSyslog = run(c.syslog);
      expect(fromCef.warnings).toEqual([]);
      expect(fromSyslog.warnings).toEqual([]);
      expect(fromCef.whole.eventType).toBe(c.type);
      expect(common(fromCef.whole)).toEqual(common(fromSyslog.whole));
      expect(commonLean(fromCef.lean)).toEqual(commonLean(fromSyslog.lean));
    });
  }
});
