/**
 * KSC CEF export (`CEF:0|KasperskyLab|SecurityCenter|<KSC version>|<event type>|<name>|<1-4>|...`)
 * → the `ksc` object. ../shared/ksc/FORMAT.md §3.
 *
 * Everything KSC-specific is read from the labels (labels.ts), never from slot numbers.
 * Standard CEF keys are read where KSC uses them: dhost/dst (the managed device,
 * FORMAT.md §7 item 5), duser, act, msg, and as fallbacks a few that other exports carry
 * (filePath, requestUrl, fileName, fileHash, proto, src, dpt).
 *
 * Speed (about a microsecond per event, bench/ksc-normalize.mjs): one `for...in` over the
 * extensions, reading each value once; custom key names are decoded without allocating
 * (customSlot); well-known labels and keys are picked up by `switch` as they pass, so there
 * are no later lookups on the label map.
 */
import { isIP } from 'node:net';
import type { CefRecord } from '../../src/event.js';
import { isThreatCategory, labelTextOf, readState } from './derive.js';
import { customSlot, customSlotOfShort, resolveDuplicate, slotName, slotValue, type Labels } from './labels.js';
import { severityName, typeInfo, type TypeInfo } from './tables.js';
import { hexOrUndefined, ipv4Text, parseInteger } from './text.js';
import type { KscAttack, KscObject, KscSeverity, KscTask, KscThreat, KscWarning } from './types.js';

/** Values of the well-known labels (primary names), filled during the pass. */
class Known {
  taskName: string | number | undefined = undefined;
  taskId: string | number | undefined = undefined;
  taskOld: string | number | undefined = undefined;
  taskNew: string | number | undefined = undefined;
  group: string | number | undefined = undefined;
  productName: string | number | undefined = undefined;
  productVersion: string | number | undefined = undefined;
  component: string | number | undefined = undefined;
  virusName: string | number | undefined = undefined;
  objectName: string | number | undefined = undefined;
  userName: string | number | undefined = undefined;
  sha256: string | number | undefined = undefined;
  md5: string | number | undefined = undefined;
  attackName: string | number | undefined = undefined;
  attackProtocol: string | number | undefined = undefined;
  attackerIp: string | number | undefined = undefined;
  attackedIp: string | number | undefined = undefined;
  attackedPort: string | number | undefined = undefined;

  set(label: string, v: string | number): void {
    switch (label) {
      case 'TaskName': this.taskName = v; break;
      case 'TaskId': this.taskId = v; break;
      case 'TaskOldState': this.taskOld = v; break;
      case 'TaskNewState': this.taskNew = v; break;
      case 'GroupName': this.group = v; break;
      case 'ProductName': this.productName = v; break;
      case 'ProductVersion': this.productVersion = v; break;
      case 'Component': this.component = v; break;
      case 'VirusName': this.virusName = v; break;
      case 'ObjectName': this.objectName = v; break;
      case 'UserName': this.userName = v; break;
      case 'SHA256': this.sha256 = v; break;
      case 'MD5': this.md5 = v; break;
      case 'AttackName': this.attackName = v; break;
      case 'AttackedProtocol': this.attackProtocol = v; break;
      case 'AttackerIPv4': this.attackerIp = v; break;
      case 'AttackedIPv4': this.attackedIp = v; break;
      case 'AttackedPort': this.attackedPort = v; break;
    }
  }
}

// Alias labels from third-party parsers (FORMAT.md §3.2), read only when the primary is absent.
const VIRUS_NAME_ALIASES = ['ThreatName'];
const OBJECT_ALIASES = ['ObjectPath', 'FilePath', 'FileName', 'Url', 'URL'];
const USER_ALIASES = ['User'];
const SHA256_ALIASES = ['Sha256', 'FileSHA256'];
const MD5_ALIASES = ['Md5', 'FileMD5'];
const ATTACKER_ALIASES = ['AttackerIP'];
const ATTACKED_ALIASES = ['LocalIPv4'];
const PROTOCOL_ALIASES = ['Protocol'];
const PORT_ALIASES = ['Port'];

// Scratch for the pass (normalize is synchronous and never re-entered).
const lSlot: number[] = [];
const lText: string[] = [];
const vSlot: number[] = [];
const vKey: string[] = [];
const vRaw: (string | number)[] = [];
/** Per value: 0 no label seen, 1 paired, 2 its label is empty. */
const vState: number[] = [];

const text = (v: string | number | undefined): string | undefined => (v === undefined || typeof v === 'string' ? v : String(v));

export function normalizeCef(cef: CefRecord, warnings: KscWarning[]): KscObject {
  const ext = cef.extensions;
  let nl = 0;
  let nv = 0;
  let hostName: string | undefined;
  let dst: string | undefined;
  let duser: string | undefined;
  let act: string | undefined;
  let filePath: string | undefined;
  let requestUrl: string | undefined;
  let fileName: string | undefined;
  let fileHash: string | undefined;
  let proto: string | undefined;
  // Custom fields with their Label, as the decoder folds them (`cs3:TaskName`).
  const custom = cef.custom;
  if (custom !== undefined) {
    for (const key in custom) {
      const colon = key.indexOf(':');
      const s = colon === -1 ? -1 : customSlotOfShort(key.slice(0, colon));
      if (s === -1) continue;
      const slot = s >> 1;
      lSlot[nl] = slot;
      lText[nl] = key.slice(colon + 1);
      nl++;
      vSlot[nv] = slot;
      vKey[nv] = slotName(slot);
      vRaw[nv] = custom[key]!;
      vState[nv] = 0;
      nv++;
    }
  }
  for (const key in ext) {
    const s = customSlot(key);
    if (s !== -1) {
      if ((s & 1) === 1) {
        lSlot[nl] = s >> 1;
        lText[nl] = ext[key]!;
        nl++;
      } else {
        vSlot[nv] = s >> 1;
        vKey[nv] = key;
        vRaw[nv] = ext[key]!;
        vState[nv] = 0;
        nv++;
      }
      continue;
    }
    switch (key) {
      case 'destinationHostName': hostName = ext[key]; break;
      case 'destinationAddress': dst = ext[key]; break;
      case 'destinationUserName': duser = ext[key]; break;
      case 'deviceAction': act = ext[key]; break;
      case 'filePath': filePath = ext[key]; break;
      case 'requestUrl': requestUrl = ext[key]; break;
      case 'fileName': fileName = ext[key]; break;
      case 'fileHash': fileHash = ext[key]; break;
      case 'transportProtocol': proto = ext[key]; break;
    }
  }

  const labels = Object.create(null) as Labels;
  const known = new Known();
  let dups: string[] | undefined;
  for (let i = 0; i < nl; i++) {
    const slot = lSlot[i]!;
    const label = lText[i]!;
    let j = 0;
    while (j < nv && vSlot[j] !== slot) j++;
    if (j === nv) {
      const name = slotName(slot);
      warnings.push({ code: 'ksc_unpaired_label', key: `${name}Label`, message: `label ${JSON.stringify(label)} has no value (${name})` });
      continue;
    }
    if (label === '') {
      vState[j] = 2;
      continue;
    }
    vState[j] = 1;
    if (labels[label] !== undefined) {
      if (dups === undefined) dups = [label];
      else if (!dups.includes(label)) dups.push(label);
      continue;
    }
    const v = slotValue(cef, vKey[j]!, vRaw[j]!, slot, warnings);
    labels[label] = v;
    known.set(label, v);
  }
  for (let j = 0; j < nv; j++) {
    if (vState[j] === 1) continue;
    const key = vKey[j]!;
    warnings.push({
      code: 'ksc_unpaired_value',
      key,
      message: vState[j] === 0 ? `${key} has no label; kept under ${key}` : `${key} has an empty label; kept under ${key}`,
    });
    labels[key] = slotValue(cef, key, vRaw[j]!, vSlot[j]!, warnings);
  }
  if (dups !== undefined) {
    for (const label of dups) {
      const slots: { slot: number; raw: string | number }[] = [];
      for (let i = 0; i < nl; i++) {
        if (lText[i] !== label) continue;
        for (let j = 0; j < nv; j++) if (vSlot[j] === lSlot[i]) slots.push({ slot: vSlot[j]!, raw: vRaw[j]! });
      }
      known.set(label, resolveDuplicate(cef, labels, label, slots, warnings));
    }
  }

  const eventType = cef.deviceEventClassId;
  const info = typeInfo(eventType);
  const category = info.category;

  let severity: KscSeverity = 'unknown';
  let severityCode: number | undefined;
  if (cef.severity !== undefined) {
    severityCode = parseInteger(cef.severity);
    if (severityCode === undefined) {
      warnings.push({ code: 'ksc_bad_number', key: 'severity', message: `CEF severity ${JSON.stringify(cef.severity)} is not a KSC importance (1-4)` });
    } else {
      severity = severityName(severityCode);
    }
  }

  let ip: string | undefined;
  if (dst !== undefined) {
    ip = dst;
  }
  const productName = text(known.productName);
  const productVersion = text(known.productVersion);

  const out: KscObject = {
    format: 'cef',
    eventType,
    eventName: cef.name,
    category,
    severity,
    severityCode,
    host: { name: hostName, ip, fqdn: undefined },
    group: text(known.group),
    product: productName !== undefined || productVersion !== undefined ? { name: productName, version: productVersion } : undefined,
    server: cef.deviceVersion !== undefined ? { name: undefined, version: cef.deviceVersion } : undefined,
    component: text(known.component),
    task: undefined,
    threat: undefined,
    attack: undefined,
    labels,
    params: undefined,
    // Not for CEF: `msg` is decoded with its real line breaks in cef.extensions.message
    // already; repeating it split would double the largest field of the event. (The
    // Syslog format needs it: its MSG holds the literal text `\r\n`.)
    messageLines: undefined,
  };

  if (category === 'task_state' || known.taskName !== undefined || known.taskId !== undefined || known.taskOld !== undefined || known.taskNew !== undefined) {
    const task: KscTask = {
      name: text(known.taskName),
      id: text(known.taskId),
      oldState: undefined,
      newState: undefined,
      oldStateCode: undefined,
      newStateCode: undefined,
    };
    readState(known.taskOld, 'TaskOldState', task, 'old', warnings);
    readState(known.taskNew, 'TaskNewState', task, 'new', warnings);
    out.task = task;
  }

  const virusName = text(known.virusName) ?? (isThreatCategory(category) ? labelTextOf(labels, VIRUS_NAME_ALIASES) : undefined);
  if (virusName !== undefined || isThreatCategory(category)) {
    out.threat = threat(labels, known, info, virusName, duser, act, filePath ?? requestUrl ?? fileName, fileHash);
  }
  if (category === 'attack' || known.attackName !== undefined) {
    out.attack = attack(labels, known, cef, proto, warnings);
  }
  return out;
}

function threat(
  labels: Labels,
  known: Known,
  info: TypeInfo,
  name: string | undefined,
  duser: string | undefined,
  act: string | undefined,
  extObject: string | undefined,
  fileHash: string | undefined,
): KscThreat | undefined {
  const t: KscThreat = {
    name,
    objectPath: text(known.objectName) ?? labelTextOf(labels, OBJECT_ALIASES) ?? extObject,
    user: text(known.userName) ?? labelTextOf(labels, USER_ALIASES) ?? duser,
    action: info.action ?? act,
    sha256: hexOrUndefined(text(known.sha256) ?? labelTextOf(labels, SHA256_ALIASES) ?? fileHash, 64),
    md5: hexOrUndefined(text(known.md5) ?? labelTextOf(labels, MD5_ALIASES), 32),
  };
  if (t.name === undefined && t.objectPath === undefined && t.user === undefined && t.action === undefined && t.sha256 === undefined && t.md5 === undefined) {
    return undefined;
  }
  return t;
}

function attack(labels: Labels, known: Known, cef: CefRecord, proto: string | undefined, warnings: KscWarning[]): KscAttack {
  const a: KscAttack = {
    name: text(known.attackName),
    protocol: text(known.attackProtocol) ?? labelTextOf(labels, PROTOCOL_ALIASES) ?? proto,
    sourceIp: undefined,
    targetIp: undefined,
    port: undefined,
  };
  const src = text(known.attackerIp) ?? labelTextOf(labels, ATTACKER_ALIASES);
  if (src !== undefined) a.sourceIp = ipv4(src, 'AttackerIPv4', warnings);
  else {
    const s = cef.extensions['sourceAddress'];
    if (s !== undefined && isIP(s) !== 0) a.sourceIp = s;
  }
  const dst = text(known.attackedIp) ?? labelTextOf(labels, ATTACKED_ALIASES);
  if (dst !== undefined) a.targetIp = ipv4(dst, 'AttackedIPv4', warnings);
  const port = known.attackedPort ?? labels[PORT_ALIASES[0]!];
  if (port !== undefined) {
    const p = typeof port === 'number' ? port : parseInteger(port);
    if (p === undefined) warnings.push({ code: 'ksc_bad_number', key: 'AttackedPort', message: `port ${JSON.stringify(port)} is not an integer` });
    a.port = p;
  } else {
    const p = cef.typed?.['destinationPort'];
    if (typeof p === 'number') a.port = p;
  }
  return a;
}

function ipv4(value: string, key: string, warnings: KscWarning[]): string | undefined {
  const v = ipv4Text(value);
  if (v === undefined) warnings.push({ code: 'ksc_bad_number', key, message: `${JSON.stringify(value)} is neither a dotted nor a decimal IPv4 address` });
  return v;
}
