/**
 * The CEF record KSC's own CEF export would have sent for a KSC event that came another
 * way: KSC's "Syslog" format (values in the `event@23668` parameters) or a row of KSC's
 * database (the `sql` source). The `cef` and `kuma` encoders write such an event from this
 * record, so it reaches another SIEM (or KUMA) with the fields a CEF event of the same
 * type has: the threat, object, user, hashes, group, product, task, attack, and the
 * description as `msg`.
 *
 * Keys and labels are those of KSC's CEF export (fixtures/ksc, docs/reference/ksc-format.md):
 * the managed device as `dhost`/`dst`, the user as `duser`, everything else as custom
 * fields by label (`cs1=EICAR-Test-File cs1Label=VirusName`), the task states as
 * `cn1`/`cn2` codes. Slots follow KSC's where its samples show one (GroupName cs9,
 * ProductName cs2, ProductVersion cs3, TaskName cs10, TaskId cs4, VirusName cs1,
 * ObjectName cs5); the others take the next free one. The ksc normalizer reads labels,
 * not slots, so the record normalizes back to the same values.
 */
import type { CefRecord, CefdEvent } from '../../event.js';
import { SEVERITIES } from '../../../normalizers/ksc/tables.js';
import type { KscObject } from '../../../normalizers/ksc/types.js';
import { epochMs } from './encoder.js';

/** KSC importance for the header (KSC's CEF severity is the importance code 1-4, SEVERITIES' index). */
function severityOf(k: KscObject): string {
  if (k.severityCode !== undefined) return String(k.severityCode);
  const i = SEVERITIES.indexOf(k.severity);
  return i >= 1 ? String(i) : 'Unknown';
}

/** Label, value, and KSC's slot for it when its samples show one. */
type Field = [label: string, value: string | undefined, slot?: number];

export function kscCefRecord(k: KscObject, event: CefdEvent): CefRecord {
  const ext: Record<string, string> = {};
  // A user normalizer may have left the event without its timestamp.
  const ms = epochMs(event.timestamp);
  if (ms !== undefined) ext['deviceReceiptTime'] = String(ms);
  if (k.host.name !== undefined) ext['destinationHostName'] = k.host.name;
  if (k.host.ip !== undefined) ext['destinationAddress'] = k.host.ip;
  if (k.threat?.user !== undefined) ext['destinationUserName'] = k.threat.user;
  // The description with real line breaks, as KSC's CEF `msg` carries them (`\r\n`
  // escapes); the Syslog format sends them as the 4 characters `\r\n` (messageLines).
  const msg = k.messageLines !== undefined ? k.messageLines.join('\r\n') : event.message;
  if (msg !== undefined && msg !== '') ext['message'] = msg;

  const t = k.threat;
  const a = k.attack;
  const fields: Field[] = [
    ['GroupName', k.group, 9],
    ['ProductName', k.product?.name, 2],
    ['ProductVersion', k.product?.version, 3],
    ['TaskName', k.task?.name, 10],
    ['TaskId', k.task?.id, 4],
    ['Component', k.component],
    ['VirusName', t?.name, 1],
    ['ObjectName', t?.objectPath, 5],
    ['SHA256', t?.sha256],
    ['MD5', t?.md5],
    ['AttackName', a?.name],
    ['AttackedProtocol', a?.protocol],
    ['AttackerIPv4', a?.sourceIp],
    ['AttackedIPv4', a?.targetIp],
    ['AttackedPort', a?.port !== undefined ? String(a.port) : undefined],
  ];
  const present = fields.filter((f) => f[1] !== undefined && f[1] !== '');
  const taken = new Set<number>();
  for (const f of present) if (f[2] !== undefined) taken.add(f[2]);
  const custom: Record<string, string | number> = {};
  let next = 1;
  for (const [label, value, slot] of present) {
    let n = slot;
    if (n === undefined) {
      while (taken.has(next)) next++;
      n = next;
      taken.add(n);
    }
    // Ten cs slots: more values than that (never in KSC's events) stay out.
    if (n <= 10) custom[`cs${n}:${label}`] = value!;
  }
  if (k.task?.oldStateCode !== undefined) custom['cn1:TaskOldState'] = k.task.oldStateCode;
  if (k.task?.newStateCode !== undefined) custom['cn2:TaskNewState'] = k.task.newStateCode;

  // Header fields cefd does not know stay absent (the cef encoder writes them empty).
  const rec: CefRecord = { version: '0', deviceVendor: 'KasperskyLab', deviceProduct: 'SecurityCenter', severity: severityOf(k), extensions: ext };
  if (k.server?.version !== undefined) rec.deviceVersion = k.server.version;
  if (k.eventType !== undefined) rec.deviceEventClassId = k.eventType;
  const name = k.eventName ?? k.eventType;
  if (name !== undefined) rec.name = name;
  if (Object.keys(custom).length > 0) rec.custom = custom;
  return rec;
}
