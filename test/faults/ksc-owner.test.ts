/**
 * One owner per KSC connection across processors (docs/cluster.md, "KSC: one owner per KSC
 * connection"), end to end with real processes: a real nats-server 2.9, a cefd receiver,
 * two cefd processors with the same KSC connection and response rule, and the KSC
 * emulator (counting every Tasks.RunTask and sending KLPRCI_TaskState lines back to the
 * receiver, as KSC's SIEM export would). Detection events stream in; the owning processor
 * is killed with SIGKILL while task starts are in flight (RunTask answers slowly here), then
 * restarted. Every triggering event must have started its task exactly once, and the
 * task-state events must have completed the runs.
 */
import { join } from 'node:path';
import { rmSync, writeFileSync } from 'node:fs';
import { afterAll, afterEach, expect, test } from 'vitest';
import { connect } from 'nats';
import { readNdjson, scrape, sendTcp, tempDir, waitFor } from '../helpers/daemon.js';
import { freePort, runCefd, type ChildDaemon } from '../helpers/child.js';
import { runCli } from '../helpers/ksc-daemon.js';
import { natsServer, stopAllNats } from '../helpers/nats-server.js';
import { startKscEmulator, defaultModel, NAGENT, KES_WIN, type KscEmulator } from '../helpers/ksc-emulator/index.js';

const PASSWORD = 'S3cret-KSC-pass!w0rd';
/** Devices, each with its own KUMA task (a task whose scope is that device alone), so every start names its device. */
const N = 40;

const children: ChildDaemon[] = [];
const dirs: string[] = [];
let emu: KscEmulator | undefined;
afterEach(async () => {
  for (const c of children.splice(0)) c.proc.kill('SIGKILL');
  await emu?.close();
  emu = undefined;
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
afterAll(stopAllNats);

const hostId = (i: number) => `0000${String(i).padStart(4, '0')}-1111-4222-8333-${String(i).padStart(12, '0')}`;
const name = (i: number) => `WS-${String(1000 + i)}`;
const ip = (i: number) => `10.7.${Math.floor(i / 200)}.${(i % 200) + 1}`;
const taskName = (i: number) => `KUMA scan ${name(i)}`;

function detection(i: number): string {
  return (
    `CEF:0|KasperskyLab|SecurityCenter|13.2.0.1511|GNRL_EV_VIRUS_FOUND|Malicious object detected|5|rt=${Date.now()} ` +
    `cs9=Workstations cs9Label=GroupName dhost=${name(i)} dst=${ip(i)} cs2=KES cs2Label=ProductName cs3=11.0.0.0 cs3Label=ProductVersion ` +
    `cs1=EICAR-Test-File cs1Label=VirusName cs4=C:\\\\Users\\\\u\\\\eicar${i}.com cs4Label=ObjectName duser=CORP\\\\u\n`
  );
}

function receiverYaml(port: number, natsUrl: string): string {
  return `mode: receiver
state_dir: ./state
shutdown_timeout: 5s
listeners: [ { name: ksc, type: tcp, host: 127.0.0.1, port: ${port} } ]
outputs:
  - name: raw
    type: nats
    payload: frame
    servers: [ "${natsUrl}" ]
    subject: cefd.raw
    reconnect_wait: 100ms
    buffer: { type: disk }
    stream: { create: true, name: RAW, duplicate_window: 10m }
dead_letter: { path: ./dead.ndjson }
metrics: { enabled: false }
`;
}

/** The receiver's listener is `ksc`: processors check the frames' origin (their headers) against it. */
function processorYaml(natsUrl: string, metrics: number): string {
  return `state_dir: ./state
shutdown_timeout: 5s
listeners: [ { name: bus, type: nats, servers: [ "${natsUrl}" ], stream: RAW, consumer: processors, ack_wait: 3s, batch_size: 8, reconnect_wait: 100ms } ]
outputs: [ { name: events, type: file, path: ./events.ndjson } ]
dead_letter: { path: ./dead.ndjson }
metrics: { enabled: true, host: 127.0.0.1, port: ${metrics} }
logging: { level: info }
ksc:
  sync_on_start: false
  request_timeout: 10s
  retries: 0
  trusted_sources: [ { connection: main, listeners: [ ksc ], cidrs: [ 127.0.0.1/32 ] } ]
  cluster: { lease_ttl: 2s, ack_wait: 4s }
  response_rules:
    - name: scan-on-detection
      type: ksctasks
      tasks: [ ${Array.from({ length: N }, (_, i) => JSON.stringify(taskName(i))).join(', ')} ]
      asset_field: device
      filter: 'ksc.category == "detection"'
      workers: 1
      cooldown: 0s
`;
}

/** A processor's folder with the KSC connection, its assets and its task list, made with the CLI. */
async function preparedProcessor(emulator: KscEmulator): Promise<string> {
  const dir = tempDir();
  dirs.push(dir);
  const sd = ['--state-dir', join(dir, 'state')];
  const add = await runCli(['ksc', 'connections', 'add', '--name', 'main', '--url', emulator.url, '--pin', emulator.cert.fingerprint256, '--user', 'kuma', '--password-stdin', ...sd], { input: `${PASSWORD}\n` });
  expect(add.stderr).toBe('');
  expect(add.code).toBe(0);
  const sync = await runCli(['ksc', 'assets', 'sync', ...sd]);
  expect(sync.code, sync.stderr).toBe(0);
  const tasks = await runCli(['ksc', 'tasks', 'list', '--connection', 'main', '--refresh', ...sd]);
  expect(tasks.code, tasks.stderr).toBe(0);
  return dir;
}

interface Run {
  taskId: string;
  taskName: string;
  state: string;
  origin: string;
}

async function runsIn(dir: string): Promise<Run[]> {
  const r = await runCli(['ksc', 'tasks', 'status', '--json', '--state-dir', join(dir, 'state')]);
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as { runs: Run[] }).runs;
}

/** The last lines of each process's log, printed when the test fails (what went wrong where). */
function tails(): string {
  const wanted = (l: string) => !l.includes('"level":"info"') || /owns it|ownership|started|KSC task/.test(l);
  return children.map((c, i) => `--- process ${i}\n${c.text().split('\n').filter(wanted).slice(-30).join('\n')}`).join('\n');
}

/** KSC with N devices, each with its own KUMA task. */
function fleet(): ReturnType<typeof defaultModel> {
  const model = defaultModel();
  model.groups.push({ id: 9, name: 'Fleet', parentId: 0 });
  for (let i = 0; i < N; i++) {
    model.hosts.push({ id: hostId(i), displayName: name(i), fqdn: `${name(i).toLowerCase()}.corp.example`, domain: 'CORP', ip: ip(i), os: 'Microsoft Windows 10 Pro', groupId: 9, lastVisible: new Date(), nagent: true, nagentConnected: new Date(), products: [NAGENT, KES_WIN] });
    model.tasks.push({ id: String(1000 + i), displayName: taskName(i), taskType: 'ODS', product: 'KES', version: '11.0.0.0', hostIds: [hostId(i)] });
  }
  return model;
}

/**
 * The layout of these tests, started: a nats-server, a receiver (the emulator sends its
 * task-state lines there), and two processors with the same KSC connection: p1 owns it, p2
 * joined after.
 */
async function layout(e: KscEmulator) {
  const nats = await natsServer();
  const rport = await freePort();
  const rdir = tempDir();
  dirs.push(rdir);
  const receiver = runCefd(rdir, receiverYaml(rport, nats.url));
  children.push(receiver);
  await receiver.until('cefd started');
  e.taskEvents = { target: { host: '127.0.0.1', port: rport }, runningAfterMs: 20, finishAfterMs: 50 };
  const d1 = await preparedProcessor(e);
  const d2 = await preparedProcessor(e);
  const m1 = await freePort();
  const m2 = await freePort();
  const p1 = runCefd(d1, processorYaml(nats.url, m1));
  children.push(p1);
  await p1.until('this processor owns it now');
  const p2 = runCefd(d2, processorYaml(nats.url, m2));
  children.push(p2);
  await p2.until('cefd started');
  expect((await scrape(m1)).get('cefd_ksc_owner_connections')).toBe(1);
  expect((await scrape(m2)).get('cefd_ksc_owner_connections')).toBe(0);
  return { nats, rport, d1, d2, m1, m2, p1, p2 };
}

/** Nothing pending or unacknowledged in the raw stream's consumer, and no work left in CEFD_KSC. */
async function streamsDrained(natsUrl: string): Promise<boolean> {
  const nc = await connect({ servers: natsUrl });
  try {
    const jsm = await nc.jetstreamManager({ timeout: 30_000 });
    const raw = await jsm.consumers.info('RAW', 'processors');
    return raw.num_pending === 0 && raw.num_ack_pending === 0 && (await jsm.streams.info('CEFD_KSC')).state.messages === 0;
  } finally {
    await nc.close();
  }
}

/** How many times `text` appears in a process's output. */
const times = (c: ChildDaemon, text: string) => c.text().split(text).length - 1;

test('two processors, one KSC connection: the owner is killed mid-stream, every triggering event starts its task exactly once, task-state events complete the runs', async () => {
  emu = await startKscEmulator({ model: fleet() });
  // KSC answers RunTask slowly after starting the task: the kill below lands while a start
  // has reached KSC and the owner has not heard back (nor acknowledged the work).
  emu.faults.answerDelayMs['Tasks.RunTask'] = 150;
  const l = await layout(emu);
  const { nats, rport, d1, d2, m1, m2, p2 } = l;
  let p1 = l.p1;

  /** waitFor, with what the processes said and counted when it times out. */
  const wait = (check: () => boolean | Promise<boolean>, ms: number, what: string) =>
    waitFor(check, ms, what).catch(async (e: Error) => {
      const metrics = async (port: number) =>
        [...(await scrape(port).catch(() => new Map<string, number>()))].filter(([k]) => /ksc_(owner|task|rule)/.test(k)).map(([k, v]) => `${k} ${v}`).join('\n');
      const starts = Array.from({ length: N }, (_, i) => startsOf(i)).join(',');
      throw new Error(`${e.message}\n${tails()}\n--- p1 metrics\n${await metrics(m1)}\n--- p2 metrics\n${await metrics(m2)}\nstarts per device: ${starts}`);
    });
  const startsOf = (i: number) => emu!.runs.filter((r) => r.taskId === String(1000 + i)).length;
  const started = () => new Set(emu!.runs.map((r) => r.taskId)).size;

  // The first half, one connection per event (haproxy would spread them; here one receiver).
  for (let i = 0; i < N / 2; i++) await sendTcp(rport, [detection(i)]);
  await wait(() => started() >= N / 4, 60_000, `${N / 4} task starts`);
  // Kill the owner while KSC is answering one of its task starts (the task started).
  await wait(() => emu!.calls.some((c) => c.method === 'Tasks.RunTask' && c.status === 0), 30_000, 'a task start in flight');
  p1.proc.kill('SIGKILL');
  const killedAt = emu.runs.length;
  await p1.exit;
  for (let i = N / 2; i < N; i++) await sendTcp(rport, [detection(i)]);
  await p2.until('this processor owns it now', 30_000);
  // The killed processor comes back and joins as a non-owner: it publishes what it finds.
  p1 = runCefd(d1, processorYaml(nats.url, m1));
  children.push(p1);
  await p1.until('cefd started');

  await wait(() => started() === N, 120_000, `a start for each of the ${N} devices`);
  // Everything is done: the raw stream and the KSC work stream have nothing pending or unacknowledged.
  await wait(() => streamsDrained(nats.url), 120_000, 'both streams drained');

  // Exactly once per triggering event.
  const counts = Array.from({ length: N }, (_, i) => startsOf(i));
  expect(counts.filter((c) => c !== 1), `starts per device: ${counts.join(',')}`).toEqual([]);
  expect(emu.runs).toHaveLength(N);
  expect(killedAt).toBeGreaterThan(0);
  expect(killedAt).toBeLessThan(N);

  // The task-state events reached the owner of the moment and completed each device's run
  // (in the store of the processor that started it, or as a run of the task's scope in the
  // new owner's store when the starter was dead by then).
  await wait(
    async () => {
      const runs = [...(await runsIn(d1)), ...(await runsIn(d2))];
      return Array.from({ length: N }, (_, i) => runs.some((r) => r.taskId === String(1000 + i) && r.state === 'completed')).every(Boolean);
    },
    60_000,
    'a completed run of each device\'s task',
  );
  const p2m = await scrape(m2);
  // The start in flight at the kill came to the new owner again and was recognised by its claim.
  expect(p2m.get('cefd_ksc_task_starts_total{rule="scan-on-detection",result="skipped_duplicate"}')).toBeGreaterThanOrEqual(1);
  expect(p2m.get('cefd_ksc_owner_claims_total{result="duplicate"}')).toBeGreaterThanOrEqual(1);
  // ...and logged as a claim its processor never confirmed (it died while KSC was answering).
  expect(p2.text()).toMatch(/"code":"ksc_task_duplicate".*was claimed by processor [^ ]+, which stopped before KSC answered/);
  expect(p2m.get('cefd_ksc_owner_connections')).toBe(1);
  expect(p2m.get('cefd_ksc_owner_changes_total{change="acquired"}')).toBe(1);
  expect(p2m.get('cefd_ksc_task_state_events_total{outcome="updated"}') ?? 0).toBeGreaterThan(0);
  const p1m = await scrape(m1);
  expect(p1m.get('cefd_ksc_owner_connections')).toBe(0);
  // No task start was refused as "not the owner" on the new owner's side, and no work was lost.
  expect(p2m.get('cefd_ksc_owner_work_published_total{kind="trigger",result="failed"}') ?? 0).toBe(0);

  p1.proc.kill('SIGTERM');
  p2.proc.kill('SIGTERM');
  expect(await p1.exit).toBe(0);
  expect(await p2.exit).toBe(0);
});

test('the KSC work cannot be published (the work stream is broken): the raw frames are not acknowledged, and once it is repaired the task starts once', async () => {
  const model = defaultModel();
  model.groups.push({ id: 9, name: 'Fleet', parentId: 0 });
  model.hosts.push({ id: hostId(0), displayName: name(0), domain: 'CORP', ip: ip(0), os: 'Microsoft Windows 10 Pro', groupId: 9, lastVisible: new Date(), nagent: true, nagentConnected: new Date(), products: [NAGENT, KES_WIN] });
  model.tasks.push({ id: '1000', displayName: taskName(0), taskType: 'ODS', product: 'KES', version: '11.0.0.0', hostIds: [hostId(0)] });
  emu = await startKscEmulator({ model });
  const nats = await natsServer();
  const nc = await connect({ servers: nats.url });
  try {
    const jsm = await nc.jetstreamManager({ timeout: 30_000 });
    await jsm.streams.add({ name: 'RAW', subjects: ['cefd.raw'] });
    // Something else made a stream of that name for other subjects: cefd cannot publish its work there.
    await jsm.streams.add({ name: 'CEFD_KSC', subjects: ['elsewhere.>'] });
    const dir = await preparedProcessor(emu);
    const metrics = await freePort();
    const yaml = processorYaml(nats.url, metrics).replace('trusted_sources: [ { connection: main, listeners: [ ksc ], cidrs: [ 127.0.0.1/32 ] } ]', 'trusted_sources: [ { connection: main, listeners: [ bus ] } ]');
    const p = runCefd(dir, yaml);
    children.push(p);
    await p.until('cefd started');
    // A frame without receiver headers: listener `bus`, id RAW-<sequence>.
    await nc.jetstream().publish('cefd.raw', detection(0));
    // (Logged when cefd sets its work sharing up, which can be before its `bus` listener has
    // made the consumer: until then the consumer is not found.)
    await p.until('ksc_work_publish_failed');
    const redelivered = () =>
      jsm.consumers.info('RAW', 'processors').then(
        (c) => c.num_redelivered,
        (err: Error) => {
          if (/consumer not found/i.test(err.message)) return 0;
          throw err;
        },
      );
    await waitFor(async () => (await redelivered()) > 0, 30_000, 'the frame delivered again');
    const held = await jsm.consumers.info('RAW', 'processors');
    // Not acknowledged: waiting for its redelivery, or delivered again and in hand.
    expect(held.num_ack_pending + held.num_pending).toBe(1);
    expect(held.ack_floor.stream_seq).toBe(0);
    expect(emu.runs).toHaveLength(0);
    // Repaired: cefd creates its stream at the next attempt, the frame comes again, the task starts.
    await jsm.streams.delete('CEFD_KSC');
    await waitFor(() => emu!.runs.length >= 1, 60_000, 'the task start');
    await waitFor(
      async () => {
        const raw = await jsm.consumers.info('RAW', 'processors');
        return raw.num_pending === 0 && raw.num_ack_pending === 0 && (await jsm.streams.info('CEFD_KSC')).state.messages === 0;
      },
      60_000,
      'both streams drained',
    );
    expect(emu.runs.map((r) => r.taskId)).toEqual(['1000']);
    const m = await scrape(metrics);
    expect(m.get('cefd_ksc_owner_work_published_total{kind="trigger",result="failed"}')).toBeGreaterThanOrEqual(1);
    expect(m.get('cefd_ksc_owner_work_published_total{kind="trigger",result="ok"}')).toBeGreaterThanOrEqual(1);
    expect(m.get('cefd_ksc_task_starts_total{rule="scan-on-detection",result="started"}')).toBe(1);
    // The event went to the output each time it was decoded, always with the same id.
    const ids = new Set(readNdjson(join(dir, 'events.ndjson')).map((e) => e['id']));
    expect([...ids]).toEqual(['RAW-1']);
    p.proc.kill('SIGTERM');
    expect(await p.exit).toBe(0);
  } finally {
    await nc.close();
  }
});

test('the processor that does not own the connection is reloaded (SIGHUP, other cluster settings) again and again while triggers flow: it never starts a task itself, every device\'s task starts exactly once', async () => {
  emu = await startKscEmulator({ model: fleet() });
  const { nats, rport, d2, m1, m2, p1, p2 } = await layout(emu);

  // One detection per device, 100 ms apart, while the second processor reloads back to back:
  // each reload changes ksc.cluster, so its work sharing stops and starts again.
  let sent = 0;
  const sending = (async () => {
    for (; sent < N; sent++) {
      await sendTcp(rport, [detection(sent)]);
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  let reloads = 0;
  while (sent < N) {
    reloads++;
    writeFileSync(join(d2, 'cefd.yaml'), processorYaml(nats.url, m2).replace('lease_ttl: 2s', reloads % 2 === 1 ? 'lease_ttl: 3s' : 'lease_ttl: 2s'));
    p2.proc.kill('SIGHUP');
    await waitFor(() => times(p2, 'configuration reloaded') === reloads, 30_000, `reload ${reloads} of the second processor`);
  }
  await sending;
  expect(reloads).toBeGreaterThanOrEqual(2);
  // Each reload restarted the sharing (the first start, then once per reload).
  expect(times(p2, 'KSC work is shared with other processors')).toBe(reloads + 1);

  const startsOf = (i: number) => emu!.runs.filter((r) => r.taskId === String(1000 + i)).length;
  await waitFor(() => new Set(emu!.runs.map((r) => r.taskId)).size === N, 120_000, `a start for each of the ${N} devices`);
  await waitFor(() => streamsDrained(nats.url), 120_000, 'both streams drained');
  const counts = Array.from({ length: N }, (_, i) => startsOf(i));
  expect(counts.filter((c) => c !== 1), `starts per device: ${counts.join(',')}`).toEqual([]);
  const started = 'cefd_ksc_task_starts_total{rule="scan-on-detection",result="started"}';
  // The reloaded processor decoded part of the events (it published their work) and acted on none.
  const p2m = await scrape(m2);
  expect(p2m.get(started) ?? 0, tails()).toBe(0);
  expect(p2m.get('cefd_ksc_owner_work_published_total{kind="trigger",result="ok"}') ?? 0).toBeGreaterThan(0);
  expect((await scrape(m1)).get(started)).toBe(N);
  p1.proc.kill('SIGTERM');
  p2.proc.kill('SIGTERM');
  expect(await p1.exit).toBe(0);
  expect(await p2.exit).toBe(0);
});
