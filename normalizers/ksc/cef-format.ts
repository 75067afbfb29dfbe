/**
 * KSC CEF export (`CEF:0|KasperskyLab|SecurityCenter|<KSC version>|<event type>|<name>|<1-4>|...`)
 * → the `ksc` object. docs/reference/ksc-format.md §3.
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
import { isThreatCategory, readState } from './derive.js';
import { customSlot, customSlotOfShort, resolveDuplicates, SLOTS, slotName, slotValue, type Labels } from './labels.js';
import { severityName, severityWord, typeInfo, type TypeInfo } from './tables.js';
import { hexOrUndefined, ipv4Text, parseInteger, portNumber } from './text.js';
import type { KscAttack, KscCategory, KscLean, KscObject, KscSeverity, KscTask, KscThreat, KscWarning } from './types.js';

// Indexes of the well-known labels in Known (primary names, then the aliases read when the
// primary is absent: third-party parsers' names, FORMAT.md §3.2).
const TASK_NAME = 0, TASK_ID = 1, TASK_OLD = 2, TASK_NEW = 3, GROUP = 4, PRODUCT_NAME = 5, PRODUCT_VERSION = 6, COMPONENT = 7;
const VIRUS_NAME = 8, OBJECT_NAME = 9, USER_NAME = 10, SHA256 = 11, MD5 = 12, ATTACK_NAME = 13, ATTACK_PROTOCOL = 14;
const ATTACKER_IP = 15, ATTACKED_IP = 16, ATTACKED_PORT = 17;
const THREAT_NAME = 18, OBJECT_PATH = 19, FILE_PATH = 20, FILE_NAME = 21, URL = 22, USER = 23, FILE_SHA256 = 24, FILE_MD5 = 25;
const ATTACKER_IP_ALIAS = 26, LOCAL_IPV4 = 27, PROTOCOL = 28, PORT = 29;
const KNOWN_COUNT = 30;

const KNOWN_LABELS: ReadonlyArray<readonly [string, number]> = [
  ['TaskName', TASK_NAME], ['TaskId', TASK_ID], ['TaskOldState', TASK_OLD], ['TaskNewState', TASK_NEW], ['GroupName', GROUP],
  ['ProductName', PRODUCT_NAME], ['ProductVersion', PRODUCT_VERSION], ['Component', COMPONENT], ['VirusName', VIRUS_NAME],
  ['ObjectName', OBJECT_NAME], ['UserName', USER_NAME], ['SHA256', SHA256], ['MD5', MD5], ['AttackName', ATTACK_NAME],
  ['AttackedProtocol', ATTACK_PROTOCOL], ['AttackerIPv4', ATTACKER_IP], ['AttackedIPv4', ATTACKED_IP], ['AttackedPort', ATTACKED_PORT],
  ['ThreatName', THREAT_NAME], ['ObjectPath', OBJECT_PATH], ['FilePath', FILE_PATH], ['FileName', FILE_NAME], ['Url', URL],
  ['User', USER], ['FileSHA256', FILE_SHA256], ['FileMD5', FILE_MD5], ['AttackerIP', ATTACKER_IP_ALIAS], ['LocalIPv4', LOCAL_IPV4],
  ['Protocol', PROTOCOL], ['Port', PORT],
];

/**
 * A label as compared with the well-known ones: lower case, without spaces, `_` and `-`.
 * KSC's labels come from `siem_conversion_rules.xml`, which admins edit, and KSC's own
 * attribute names vary in case (`usrName`/`UsrName`, `EVC_EV_FILE_Name`: FORMAT.md §3.2),
 * so `taskname`, `TASKNAME`, `Task Name` and `task_name` all read as TaskName. `labels`
 * keeps each label as sent.
 */
export function canonicalLabel(label: string): string {
  let out = '';
  for (let i = 0; i < label.length; i++) {
    const c = label.charCodeAt(i);
    if (c !== 32 && c !== 9 && c !== 95 /* _ */ && c !== 45 /* - */) out += label[i];
  }
  return out.toLowerCase();
}

const KNOWN_INDEX = new Map<string, number>(KNOWN_LABELS.map(([l, i]) => [canonicalLabel(l), i]));

/** Known index of labels read from `cef.extensions` (custom_fields: pairs), bounded like customKeys. */
const knownOfLabel = new Map<string, number>();

/**
 * Values of the well-known labels, filled during the pass, each with its slot: when two
 * labels read as the same one (`TaskName` on cs10, `taskname` on cs5), the lower slot
 * wins, whatever the order they came in, as for a label sent twice. One object, reset per
 * event (normalize is synchronous and never re-entered; nothing keeps it).
 */
class Known {
  readonly v: (string | number | undefined)[] = new Array<string | number | undefined>(KNOWN_COUNT).fill(undefined);
  readonly slot: number[] = new Array<number>(KNOWN_COUNT).fill(SLOTS);
  /** The indexes set since the last reset (a few per event): reset clears only those, not all KNOWN_COUNT twice. */
  private readonly touched: number[] = new Array<number>(KNOWN_COUNT).fill(0);
  private nTouched = 0;

  reset(): void {
    for (let k = 0; k < this.nTouched; k++) {
      const i = this.touched[k]!;
      this.v[i] = undefined;
      this.slot[i] = SLOTS;
    }
    this.nTouched = 0;
  }

  /** `i`: the label's known index (-1: not a well-known label). An empty value is no value (it stays in `labels`). */
  set(i: number, v: string | number, slot: number): void {
    if (i < 0 || v === '') return;
    const was = this.slot[i]!;
    if (slot > was) return;
    if (was === SLOTS) this.touched[this.nTouched++] = i;
    this.v[i] = v;
    this.slot[i] = slot;
  }

  text(i: number): string | undefined {
    return text(this.v[i]);
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
    c = { slot: s >> 1, name: slotName(s >> 1), label, knownIndex: knownIndex(label) };
  }
  if (customKeys.size >= CUSTOM_KEYS_MAX) customKeys.clear();
  customKeys.set(key, c);
  return c;
}

/** KNOWN_LABELS index of a label from `cef.extensions` (a value under its full name). */
function knownIndex(label: string): number {
  let i = knownOfLabel.get(label);
  if (i === undefined) {
    i = KNOWN_INDEX.get(canonicalLabel(label)) ?? -1;
    if (knownOfLabel.size >= CUSTOM_KEYS_MAX) knownOfLabel.clear();
    knownOfLabel.set(label, i);
  }
  return i;
}

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

/** A value as text; an empty one is no value (the field is left out, as when it is not sent). */
const text = (v: string | number | undefined): string | undefined => (v === undefined || v === '' ? undefined : typeof v === 'string' ? v : String(v));

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
      case 'destinationHostName': fromExt.hostName = ext[key] || undefined; break;
      case 'destinationAddress': fromExt.dst = ext[key] || undefined; break;
      case 'destinationUserName': fromExt.duser = ext[key] || undefined; break;
      case 'deviceAction': fromExt.act = ext[key] || undefined; break;
      case 'filePath': fromExt.filePath = ext[key] || undefined; break;
      case 'requestUrl': fromExt.requestUrl = ext[key] || undefined; break;
      case 'fileName': fromExt.fileName = ext[key] || undefined; break;
      case 'fileHash': fromExt.fileHash = ext[key] || undefined; break;
      case 'transportProtocol': fromExt.proto = ext[key] || undefined; break;
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
    known.set(k === -2 ? knownIndex(label) : k, v, slot);
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
    // resolveDuplicates sorts each group by slot: its first entry is the winner's slot.
    for (const [label, value] of resolveDuplicates(cef, labels, groups, warnings)) known.set(knownIndex(label), value, groups.get(label)![0]!.slot);
  }
}

/**
 * The KSC importance name of the CEF severity (its code 1-4). The CEF words (Low, Medium,
 * High, Very-High, any case) give a name without a code; other text warns.
 */
function severityOf(cef: CefRecord, warnings: KscWarning[]): KscSeverity {
  const sev = cef.severity;
  if (sev === undefined) return 'unknown';
  const code = parseInteger(sev);
  if (code !== undefined) return severityName(code);
  const word = severityWord(sev);
  if (word === undefined) {
    warnings.push({ code: 'ksc_bad_number', key: 'severity', message: `CEF severity ${JSON.stringify(sev)} is not a KSC importance (1-4)` });
  }
  return word ?? 'unknown';
}

/** The task of a task event, or of any event with task labels (after readRecord). */
function taskOf(category: KscCategory, warnings: KscWarning[]): KscTask | undefined {
  const k = known.v;
  if (category !== 'task_state' && k[TASK_NAME] === undefined && k[TASK_ID] === undefined && k[TASK_OLD] === undefined && k[TASK_NEW] === undefined) {
    return undefined;
  }
  const task: KscTask = {
    name: text(k[TASK_NAME]),
    id: text(k[TASK_ID]),
    oldState: undefined,
    newState: undefined,
    oldStateCode: undefined,
    newStateCode: undefined,
  };
  readState(k[TASK_OLD], 'TaskOldState', task, 'old', warnings);
  readState(k[TASK_NEW], 'TaskNewState', task, 'new', warnings);
  return task;
}

export function normalizeCef(cef: CefRecord, warnings: KscWarning[]): KscObject {
  const labels = Object.create(null) as Labels;
  readRecord(cef, warnings, labels);
  const eventType = cef.deviceEventClassId || undefined;
  const info = typeInfo(eventType);
  const category = info.category;
  const severity = severityOf(cef, warnings);
  const code = cef.severity !== undefined ? parseInteger(cef.severity) : undefined;
  const productName = known.text(PRODUCT_NAME);
  const productVersion = known.text(PRODUCT_VERSION);

  const out: KscObject = {
    format: 'cef',
    eventType,
    eventName: cef.name || undefined,
    category,
    severity,
    severityCode: code,
    host: { name: fromExt.hostName, ip: fromExt.dst, fqdn: undefined },
    group: known.text(GROUP),
    product: productName !== undefined || productVersion !== undefined ? { name: productName, version: productVersion } : undefined,
    server: cef.deviceVersion ? { name: undefined, version: cef.deviceVersion } : undefined,
    component: known.text(COMPONENT),
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
  const virusName = known.text(VIRUS_NAME) ?? (isThreatCategory(category) ? known.text(THREAT_NAME) : undefined);
  if (virusName !== undefined || isThreatCategory(category)) {
    out.threat = threat(known, info, virusName, fromExt.duser, fromExt.act, fromExt.filePath ?? fromExt.requestUrl ?? fromExt.fileName, fromExt.fileHash);
  }
  if (category === 'attack' || known.v[ATTACK_NAME] !== undefined) {
    out.attack = attack(known, cef, fromExt.proto, warnings);
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
  const severity = severityOf(cef, warnings);
  const t = taskOf(category, warnings);
  // The whole object has a threat when the category is a threat category or a VirusName
  // label came; its action is the lean object's.
  const action = info.action ?? fromExt.act;
  return {
    category,
    severity,
    task: t !== undefined && (t.oldState !== undefined || t.newState !== undefined) ? { oldState: t.oldState, newState: t.newState } : undefined,
    threat: action !== undefined && (known.v[VIRUS_NAME] !== undefined || isThreatCategory(category)) ? { action } : undefined,
    attack: category === 'attack' || known.v[ATTACK_NAME] !== undefined ? attack(known, cef, fromExt.proto, warnings) : undefined,
    messageLines: undefined,
  };
}

function threat(
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
    objectPath: known.text(OBJECT_NAME) ?? known.text(OBJECT_PATH) ?? known.text(FILE_PATH) ?? known.text(FILE_NAME) ?? known.text(URL) ?? extObject,
    user: known.text(USER_NAME) ?? known.text(USER) ?? duser,
    action: info.action ?? act,
    sha256: hexOrUndefined(known.text(SHA256) ?? known.text(FILE_SHA256) ?? fileHash, 64),
    md5: hexOrUndefined(known.text(MD5) ?? known.text(FILE_MD5), 32),
  };
  if (t.name === undefined && t.objectPath === undefined && t.user === undefined && t.action === undefined && t.sha256 === undefined && t.md5 === undefined) {
    return undefined;
  }
  return t;
}

function attack(known: Known, cef: CefRecord, proto: string | undefined, warnings: KscWarning[]): KscAttack {
  const a: KscAttack = {
    name: known.text(ATTACK_NAME),
    protocol: known.text(ATTACK_PROTOCOL) ?? known.text(PROTOCOL) ?? proto,
    sourceIp: undefined,
    targetIp: undefined,
    port: undefined,
  };
  // A label value that is not an address (or port) is warned about and the standard key
  // is used instead, as when the label is not sent.
  const src = known.text(ATTACKER_IP) ?? known.text(ATTACKER_IP_ALIAS);
  if (src !== undefined) a.sourceIp = ipv4(src, 'AttackerIPv4', warnings);
  if (a.sourceIp === undefined) {
    const s = cef.extensions['sourceAddress'];
    if (s !== undefined && isIP(s) !== 0) a.sourceIp = s;
  }
  const dst = known.text(ATTACKED_IP) ?? known.text(LOCAL_IPV4);
  if (dst !== undefined) a.targetIp = ipv4(dst, 'AttackedIPv4', warnings);
  if (a.targetIp === undefined) {
    // The attacked address is the managed device's: CEF dst, as the Syslog format's p6 is
    // its hip (FORMAT.md §2.3). So both formats give the same attack.
    const d = fromExt.dst;
    if (d !== undefined && isIP(d) !== 0) a.targetIp = d;
  }
  const port = known.v[ATTACKED_PORT] ?? known.v[PORT];
  if (port !== undefined) {
    a.port = portNumber(port);
    if (a.port === undefined) warnings.push({ code: 'ksc_bad_number', key: 'AttackedPort', message: `port ${JSON.stringify(port)} is not a port number (an integer 0-65535)` });
  }
  if (a.port === undefined) {
    const p = cef.typed?.['destinationPort'];
    if (typeof p === 'number') a.port = portNumber(p);
  }
  return a;
}

function ipv4(value: string, key: string, warnings: KscWarning[]): string | undefined {
  const v = ipv4Text(value);
  if (v === undefined) warnings.push({ code: 'ksc_bad_number', key, message: `${JSON.stringify(value)} is neither a dotted nor a decimal IPv4 address` });
  return v;
}
