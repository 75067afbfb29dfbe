#!/usr/bin/env node
// Micro-benchmark of the ksc normalizer alone (the budget: ~1-2 µs per event, as
// docs/ksc-normalizer.md says).
//
//   npm run build && node bench/ksc-normalize.mjs [--n 20000] [--rounds 25] [--syslog]
//
// Lines are generated like ../shared/bench-peer/gen-ksc.mjs (same mix: 60% KLPRCI_TaskState,
// 25% GNRL_EV_VIRUS_FOUND, 15% other; RFC 5424 envelope + KSC CEF with escapes; task states
// from the host-task bitmask 1..64, so many get `unknown` + a warning, as in that workload).
// --syslog adds KSC "Syslog"-format lines (event@23668) in the same proportion.
// The lines are decoded once; the timed loop runs only ksc.normalize over the events.
import { decodeFrame } from '../dist/src/codecs/decode.js';
import ksc from '../dist/normalizers/ksc/index.js';

const args = { n: 20000, rounds: 25, syslog: false };
for (let i = 2; i < process.argv.length; i++) {
  const k = process.argv[i];
  if (k === '--n') args.n = Number(process.argv[++i]);
  else if (k === '--rounds') args.rounds = Number(process.argv[++i]);
  else if (k === '--syslog') args.syslog = true;
  else throw new Error(`unknown option ${k}`);
}

// mulberry32, as gen-ksc.mjs
function prng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rnd = prng(42);
const int = (lo, hi) => lo + Math.floor(rnd() * (hi - lo + 1));
const pick = (a) => a[Math.floor(rnd() * a.length)];
const esc = (s) => s.replace(/\\/g, '\\\\').replace(/=/g, '\\=').replace(/\r/g, '\\r').replace(/\n/g, '\\n');
const sdEsc = (s) => s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/]/g, '\\]');

const PRODUCTS = [['KES', '12.3.0.493'], ['KES', '12.5.0.539'], ['KESL', '12.0.0.6672'], ['KSWS', '11.0.1.897'], ['1093', '14.2.0.26967']];
const TASKS = ['Update databases', 'Virus scan', 'Quick scan', 'Full scan', 'Integrity check', 'Inventory', 'Wipe data'];
const STATES = [[1, 'Scheduled'], [2, 'Running'], [4, 'Completed'], [8, 'Failed'], [16, 'Paused'], [64, 'Stopped']];
const VIRUSES = ['EICAR-Test-File', 'HEUR:Trojan.Win32.Generic', 'Trojan-Ransom.Win32.Crypren.gen', 'PDM:Trojan.Win32.Generic'];
const DIRS = ['C:\\Users\\%u\\Downloads', 'C:\\Users\\%u\\AppData\\Local\\Temp', 'D:\\Shares\\Finance\\2026 Q4', '\\\\fs01\\public\\Scans'];
const FILES = ['eicar.com', 'invoice_2026-11.pdf.exe', 'setup (1).exe', 'report.docm'];
const USERS = ['jdoe', 'asmith', 'ivanova.e', 'svc_backup'];
const OTHER = [
  ['KLAUD_EV_OBJECTMODIFY', 'Policy modified', 1, (u) => `suser=${esc(`CORP\\${u}`)} cs3=KES policy cs3Label=PolicyName cs4=Managed devices cs4Label=GroupName msg=${esc('Policy "KES" was modified; settings=Firewall')}`],
  ['KLSRV_EV_LICENSE_CHECK_90', 'License limit has been exceeded', 3, () => `cs3=KESB Select cs3Label=LicenseName cn3=${int(90, 130)} cn3Label=UsagePercent msg=License usage`],
  ['KLNAG_EV_DEVICE_ARRIVAL', 'Device connected', 1, (u) => `cs3=USB Mass Storage Device cs3Label=DeviceName cs4=${esc('USB\\VID_1234&PID_5678')} cs4Label=DeviceId msg=${esc(`Device connected by CORP\\${u}`)}`],
];

let clock = Date.parse('2026-11-28T10:00:00.000Z');
function cefLine() {
  clock += int(0, 7);
  const hostNo = int(1, 4000);
  const host = `WS-${String(hostNo).padStart(4, '0')}`;
  const ip = `10.${1 + (hostNo >> 10)}.${(hostNo >> 4) & 63}.${1 + (hostNo & 15) * 15}`;
  const [pn, pv] = pick(PRODUCTS);
  const user = pick(USERS);
  const common = `rt=${clock} dhost=${host} dst=${ip} cs1=${pn} cs1Label=ProductName cs2=${pv} cs2Label=ProductVersion`;
  const r = rnd();
  let id, name, sev, ext;
  if (r < 0.6) {
    const st = pick(STATES);
    const old = pick(STATES);
    const task = pick(TASKS);
    [id, name, sev] = ['KLPRCI_TaskState', st[1], st[0] === 8 ? 3 : 1];
    ext = `${common} cs3=${esc(task)} cs3Label=TaskName cn1=${st[0]} cn1Label=TaskNewState cn2=${old[0]} cn2Label=TaskOldState cs5=${esc(`CORP\\${user}`)} cs5Label=TaskOwner msg=${esc(`Task "${task}" ${st[1].toLowerCase()} on ${host}; result=OK`)}`;
  } else if (r < 0.85) {
    const v = pick(VIRUSES);
    const path = `${pick(DIRS).replace('%u', user)}\\${pick(FILES)}`;
    [id, name, sev] = ['GNRL_EV_VIRUS_FOUND', 'Malicious object detected', 4];
    ext = `${common} cs4=${esc(v)} cs4Label=VirusName filePath=${esc(path)} duser=${esc(`CORP\\${user}`)} act=Deleted cs6=File Threat Protection cs6Label=Component msg=${esc(`Result: Deleted: ${v}\nUser: CORP\\${user} (Active user)\nObject: ${path}`)}`;
  } else {
    const o = pick(OTHER);
    [id, name, sev] = o;
    ext = `${common} ${o[3](user)}`;
  }
  return `<14>1 ${new Date(clock).toISOString()} ksc01 KSC - - - CEF:0|KasperskyLab|SecurityCenter|14.2.0.26967|${id}|${name}|${sev}|${ext}`;
}

function syslogLine() {
  clock += int(0, 7);
  const hostNo = int(1, 4000);
  const host = `WS-${String(hostNo).padStart(4, '0')}`;
  const user = pick(USERS);
  const v = pick(VIRUSES);
  const path = `${pick(DIRS).replace('%u', user)}\\${pick(FILES)}`;
  const sd = `[event@23668 p1="275A021BBFB6489E54D471899F7DB9D1663FC695EC2FE2A2C4538AABF651FD0F" p2="${sdEsc(path)}" p5="${v}" p7="${sdEsc(`CORP\\${user}`)}" p8="60" p9="${sdEsc('{"engine":1,"method":3,"md5":"44D88612FEA8A8F36DE82E1278ABB02F"}')}" et="GNRL_EV_VIRUS_FOUND" tdn="File Threat Protection" etdn="Malicious object detected" hdn="${host}" hip="10.0.12.42" gn="Workstations" kscfqdn="ksc01.corp.example"]`;
  return `<10>1 ${new Date(clock).toISOString()} ${host}.corp.example KES|11.0.0.0 - GNRL_EV_VIRUS_FOUND ${sd} Result description: Detected\\r\\nName: ${v}\\r\\nUser: CORP\\${user} (Active user)\\r\\nObject: ${path}`;
}

const events = [];
for (let i = 0; i < args.n; i++) {
  const line = args.syslog && i % 2 === 1 ? syslogLine() : cefLine();
  const r = decodeFrame(Buffer.from(line), false, 1_800_000_000_000);
  if (!r.ok || !ksc.accepts(r.event)) throw new Error(`bench line not a KSC event: ${line}`);
  events.push(r.event);
}

let sink = 0;
const run = () => {
  for (let i = 0; i < events.length; i++) {
    const ev = events[i];
    if (ksc.accepts(ev)) {
      const out = ksc.normalize(ev);
      if (out !== null) sink += out.type.length;
    }
  }
};
for (let i = 0; i < 5; i++) run(); // warm-up
const times = [];
for (let r = 0; r < args.rounds; r++) {
  const t0 = process.hrtime.bigint();
  run();
  times.push(Number(process.hrtime.bigint() - t0) / 1e9);
}
times.sort((a, b) => a - b);
const median = times[Math.floor(times.length / 2)];
const rate = events.length / median;
console.log(
  JSON.stringify({
    bench: 'ksc-normalize',
    mix: args.syslog ? 'cef+syslog' : 'cef (gen-ksc)',
    events: events.length,
    rounds: args.rounds,
    eventsPerSecond: Math.round(rate),
    nsPerEvent: Math.round(1e9 / rate),
    best: Math.round(events.length / times[0]),
    sink,
  }),
);
