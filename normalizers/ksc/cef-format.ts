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
 * (customSlot) and `cef.custom` keys once per slot and label (customKey, which also keeps
 * the label string, so `labels` is keyed by the same strings event after event);
 * well-known labels and keys are picked up as they pass, so there are no later lookups
 * on the label map.
 */
import { isIP } from 'node:net';
import type { CefRecord } from '../../src/event.js';
import { isThreatCategory, labelTextOf, readState } from './derive.js';
import { customSlot, customSlotOfShort, resolveDuplicates, SLOTS, slotName, slotValue, type Labels } from './labels.js';
import { severityName, typeInfo, type TypeInfo } from './tables.js';
import { hexOrUndefined, ipv4Text, parseInteger } from './text.js';
import type { KscAttack, KscCategory, KscLean, KscObject, KscSeverity, KscTask, KscThreat, KscWarning } from './types.js';

/** The well-known labels (primary names), each an index into Known's values. */
const KNOWN_LABELS = [
  'TaskName', 'TaskId', 'TaskOldState', 'TaskNewState', 'GroupName', 'ProductName', 'ProductVersion', 'Component', 'VirusName',
  'ObjectName', 'UserName', 'SHA256', 'MD5', 'AttackName', 'AttackedProtocol', 'AttackerIPv4', 'AttackedIPv4', 'AttackedPort',
] as const;
const KNOWN_INDEX = new Map<string, number>(KNOWN_LABELS.map((l, i) => [l, i]));

/**
 * Values of the well-known labels, filled during the pass. One object, reset per event
 * (normalize is synchronous and never re-entered; nothing keeps it).
 */
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

  reset(): void {
    this.taskName = this.taskId = this.taskOld = this.taskNew = this.group = this.productName = undefined;
    this.productVersion = this.component = this.virusName = this.objectName = this.userName = this.sha256 = undefined;
    this.md5 = this.attackName = this.attackProtocol = this.attackerIp = this.attackedIp = this.attackedPort = undefined;
  }

  /** `i`: the label's index in KNOWN_LABELS (-1: not a well-known label). */
  set(i: number, v: string | number): void {
    switch (i) {
      case 0: this.taskName = v; break;
      case 1: this.taskId = v; break;
      case 2: this.taskOld = v; break;
      case 3: this.taskNew = v; break;
      case 4: this.group = v; break;
      case 5: this.productName = v; break;
      case 6: this.productVersion = v; break;
      case 7: this.component = v; break;
      case 8: this.virusName = v; break;
      case 9: this.objectName = v; break;
      case 10: this.userName = v; break;
      case 11: this.sha256 = v; break;
      case 12: this.md5 = v; break;
      case 13: this.attackName = v; break;
      case 14: this.attackProtocol = v; break;
      case 15: this.attackerIp = v; break;
      case 16: this.attackedIp = v; break;
      case 17: this.attackedPort = v; break;
    }
  }
}

const known = new Known();

/** A `cef.custom` key read once: its slot, the slot's value key name, the label and its Known index. */
interface CustomKey {
  readonly slot: number;
  readonly name: string;
  readonly label: string;
  readonly knownIndex: number;
}

/**
 * `cef.custom` keys (`cs3:TaskName`) → what they say, null for a key that is not a
 * custom slot. The keys repeat from event to event (one per slot and label); the cache is
 * emptied when full, so labels that never repeat cannot grow it.
 */
const customKeys = new Map<string, CustomKey | null>();
const CUSTOM_KEYS_MAX = 4096;

function customKey(key: string): CustomKey | null {
  let c = customKeys.get(key);
  if (c !== undefined) return c;
  const colon = key.indexOf(':');
  const s = colon === -1 ? -1 : customSlotOfShort(key.slice(0, colon));
  if (s === -1) c = null;
  else {
    const label = key.slice(colon + 1);
    c = { slot: s >> 1, name: slotName(s >> 1), label, knownIndex: KNOWN_INDEX.get(label) ?? -1 };
  }
  if (customKeys.size >= CUSTOM_KEYS_MAX) customKeys.clear();
  customKeys.set(key, c);
  return c;
}

/** KNOWN_LABELS index of a label from `cef.extensions` (a value under its full name). */
function knownIndex(label: string): number {
  return KNOWN_INDEX.get(label) ?? -1;
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
/** Per label: its KNOWN_LABELS index, -2 when not looked up yet. */
const lKnown: number[] = [];
const vSlot: number[] = [];
const vKey: string[] = [];
const vRaw: (string | number)[] = [];
/** Per value: 0 no label seen, 1 paired, 2 its label is empty. */
const vState: number[] = [];
/**
 * Values by slot, so pairing is one pass, not a search per label (quadratic: a 150 KB
 * frame of custom fields took 300 ms): the first value index of a slot (-1: none; reset
 * after each record) and the next index with the same slot.
 */
const firstOfSlot = new Int32Array(SLOTS).fill(-1);
const nextOfSlot: number[] = [];
/** Values indexed in firstOfSlot (cleared at the next record's start, even after a throw). */
let indexed = 0;

const text = (v: string | number | undefined): string | undefined => (v === undefined || typeof v === 'string' ? v : String(v));

/**
 * Standard CEF keys KSC uses, picked up in the pass (scratch, reset per event like Known).
 */
class FromExtensions {
  hostName: string | undefined = undefined;
  dst: string | undefined = undefined;
  duser: string | undefined = undefined;
  act: string | undefined = undefined;
  filePath: string | undefined = undefined;
  requestUrl: string | undefined = undefined;
  fileName: string | undefined = undefined;
  fileHash: string | undefined = undefined;
  proto: string | undefined = undefined;

  reset(): void {
    this.hostName = this.dst = this.duser = this.act = this.filePath = undefined;
    this.requestUrl = this.fileName = this.fileHash = this.proto = undefined;
  }
}

const fromExt = new FromExtensions();

/**
 * The pass over the record: custom fields into `labels` (with their warnings), the
 * well-known labels into `known`, the standard keys into `fromExt`.
 */
function readRecord(cef: CefRecord, warnings: KscWarning[], labels: Labels): void {
  const ext = cef.extensions;
  let nl = 0;
  let nv = 0;
  for (let j = 0; j < indexed; j++) firstOfSlot[vSlot[j]!] = -1;
  indexed = 0;
  fromExt.reset();
  // Custom fields with their Label, as the decoder folds them (`cs3:TaskName`).
  const custom = cef.custom;
  if (custom !== undefined) {
    for (const key in custom) {
      const c = customKey(key);
      if (c === null) continue;
      const slot = c.slot;
      lSlot[nl] = slot;
      lText[nl] = c.label;
      lKnown[nl] = c.knownIndex;
      nl++;
      vSlot[nv] = slot;
      vKey[nv] = c.name;
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
        lKnown[nl] = -2;
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
      case 'destinationHostName': fromExt.hostName = ext[key]; break;
      case 'destinationAddress': fromExt.dst = ext[key]; break;
      case 'destinationUserName': fromExt.duser = ext[key]; break;
      case 'deviceAction': fromExt.act = ext[key]; break;
      case 'filePath': fromExt.filePath = ext[key]; break;
      case 'requestUrl': fromExt.requestUrl = ext[key]; break;
      case 'fileName': fromExt.fileName = ext[key]; break;
      case 'fileHash': fromExt.fileHash = ext[key]; break;
      case 'transportProtocol': fromExt.proto = ext[key]; break;
    }
  }

  known.reset();
  for (let j = nv - 1; j >= 0; j--) {
    const slot = vSlot[j]!;
    nextOfSlot[j] = firstOfSlot[slot]!;
    firstOfSlot[slot] = j;
  }
  indexed = nv;
  let dups: Set<string> | undefined;
  for (let i = 0; i < nl; i++) {
    const slot = lSlot[i]!;
    const label = lText[i]!;
    const j = firstOfSlot[slot]!;
    if (j === -1) {
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
      (dups ??= new Set()).add(label);
      continue;
    }
    const v = slotValue(cef, vKey[j]!, vRaw[j]!, slot, warnings);
    labels[label] = v;
    const k = lKnown[i]!;
    known.set(k === -2 ? knownIndex(label) : k, v);
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
    // One grouping pass: each duplicated label's values, in label then value order.
    const groups = new Map<string, { slot: number; raw: string | number }[]>();
    for (const label of dups) groups.set(label, []);
    for (let i = 0; i < nl; i++) {
      const g = groups.get(lText[i]!);
      if (g === undefined) continue;
      for (let j = firstOfSlot[lSlot[i]!]!; j !== -1; j = nextOfSlot[j]!) g.push({ slot: vSlot[j]!, raw: vRaw[j]! });
    }
    for (const [label, value] of resolveDuplicates(cef, labels, groups, warnings)) known.set(knownIndex(label), value);
  }
}

/** The KSC importance code of the CEF severity (a warning when it is not an integer). */
function severityCode(cef: CefRecord, warnings: KscWarning[]): number | undefined {
  if (cef.severity === undefined) return undefined;
  const code = parseInteger(cef.severity);
  if (code === undefined) {
    warnings.push({ code: 'ksc_bad_number', key: 'severity', message: `CEF severity ${JSON.stringify(cef.severity)} is not a KSC importance (1-4)` });
  }
  return code;
}

/** The task of a task event, or of any event with task labels (after readRecord). */
function taskOf(category: KscCategory, warnings: KscWarning[]): KscTask | undefined {
  if (category !== 'task_state' && known.taskName === undefined && known.taskId === undefined && known.taskOld === undefined && known.taskNew === undefined) {
    return undefined;
  }
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
  return task;
}

export function normalizeCef(cef: CefRecord, warnings: KscWarning[]): KscObject {
  const labels = Object.create(null) as Labels;
  readRecord(cef, warnings, labels);
  const eventType = cef.deviceEventClassId;
  const info = typeInfo(eventType);
  const category = info.category;
  const code = severityCode(cef, warnings);
  const severity: KscSeverity = code === undefined ? 'unknown' : severityName(code);
  const productName = text(known.productName);
  const productVersion = text(known.productVersion);

  const out: KscObject = {
    format: 'cef',
    eventType,
    eventName: cef.name,
    category,
    severity,
    severityCode: code,
    host: { name: fromExt.hostName, ip: fromExt.dst, fqdn: undefined },
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

  out.task = taskOf(category, warnings);
  const virusName = text(known.virusName) ?? (isThreatCategory(category) ? labelTextOf(labels, VIRUS_NAME_ALIASES) : undefined);
  if (virusName !== undefined || isThreatCategory(category)) {
    out.threat = threat(labels, known, info, virusName, fromExt.duser, fromExt.act, fromExt.filePath ?? fromExt.requestUrl ?? fromExt.fileName, fromExt.fileHash);
  }
  if (category === 'attack' || known.attackName !== undefined) {
    out.attack = attack(labels, known, cef, fromExt.proto, warnings);
  }
  return out;
}

/**
 * Prototype of the label maps of normalizeCefLean: an empty object without a prototype, so
 * a label such as `constructor` or `__proto__` is an ordinary own key as with
 * Object.create(null), but the map stays a fast object (Object.create(null) makes a
 * dictionary, about twice as slow to fill). Those maps never leave this file.
 */
const LEAN_LABELS: object = Object.freeze(Object.create(null) as object);

/**
 * `leanKsc(normalizeCef(cef, warnings).ksc)` (lean.ts) without building the parts of the
 * whole object the lean one leaves out: the same values and the same warnings, in the
 * same order. test/normalizers/ksc/golden.test.ts holds both to the golden files.
 */
export function normalizeCefLean(cef: CefRecord, warnings: KscWarning[]): KscLean {
  const labels = Object.create(LEAN_LABELS) as Labels;
  readRecord(cef, warnings, labels);
  const info = typeInfo(cef.deviceEventClassId);
  const category = info.category;
  const code = severityCode(cef, warnings);
  const t = taskOf(category, warnings);
  // The whole object has a threat when the category is a threat category or a VirusName
  // label came; its action is the lean object's.
  const action = info.action ?? fromExt.act;
  return {
    category,
    severity: code === undefined ? 'unknown' : severityName(code),
    task: t !== undefined && (t.oldState !== undefined || t.newState !== undefined) ? { oldState: t.oldState, newState: t.newState } : undefined,
    threat: action !== undefined && (known.virusName !== undefined || isThreatCategory(category)) ? { action } : undefined,
    attack: category === 'attack' || known.attackName !== undefined ? attack(labels, known, cef, fromExt.proto, warnings) : undefined,
    messageLines: undefined,
  };
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
