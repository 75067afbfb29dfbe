/**
 * The KSC work sharing across a configuration reload (docs/cluster.md, "Reload and stop"):
 * two KSC extensions in this process, as two processors would run them, with their own
 * stores, a real nats-server 2.9 and the KSC emulator. The daemon around each is the
 * part a test drives by hand: findings are handed to the extension as the pipeline would
 * (onFindings), and the acknowledgement of their frames waits as the nats source would
 * (the holds the extension registered, Pipeline.acksHeld).
 *
 * - A processor that does not own the connection is reloaded with other cluster settings,
 *   and a rule trigger arrives while its work sharing is stopped and started again: it is
 *   held, its frames are not acknowledged, it goes to the owner once the new one runs, and
 *   the reloaded processor starts no task.
 * - The owner is reloaded while KSC is answering one of its starts: the start finishes and
 *   its work is acknowledged before the lease is given back, so nobody gets it again (no
 *   duplicate claim after ack_wait).
 * - NATS is down when a processor is reloaded: the trigger held meanwhile cannot be
 *   published, its frames are given back (not acknowledged), nothing starts, and the failure
 *   is logged (ksc_work_publish_failed) and counted.
 */
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import { afterAll, afterEach, expect, test } from 'vitest';
import { connect } from 'nats';
import { loadConfigText } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import type { DaemonContext } from '../../src/extensions/extension.js';
import type { EventOrigin } from '../../src/event.js';
import { KscExtension } from '../../src/ksc/extension.js';
import type { FindingsHandler, KscFindings } from '../../src/ksc/watch.js';
import { Telemetry } from '../../src/telemetry/telemetry.js';
import { LogCapture, tempDir, waitFor } from '../helpers/daemon.js';
import { runCli } from '../helpers/ksc-daemon.js';
import { natsServer, stopAllNats, type NatsServer } from '../helpers/nats-server.js';
import { startKscEmulator, defaultModel, NAGENT, KES_WIN, type KscEmulator } from '../helpers/ksc-emulator/index.js';

const PASSWORD = 'S3cret-KSC-pass!w0rd';
const HOST = '00000001-1111-4222-8333-000000000001';
const TASK = 'KUMA scan WS-1001';
/** The origin the trust check lets act on connection `main` (the receiver's listener `ksc`). */
const ORIGIN: EventOrigin = { listener: 'ksc', peer: '127.0.0.1:40000' };

interface Processor {
  ext: KscExtension;
  logs: LogCapture;
  telemetry: Telemetry;
  dir: string;
  /** Hands findings over as the pipeline does; returns what the frames' acknowledgement waits for (undefined: nothing). */
  find(f: KscFindings): Promise<void> | undefined;
  /** What the acknowledgement of a batch without findings waits for. */
  acks(): Promise<void> | undefined;
  metric(name: string): Promise<number>;
  config(leaseTtl: string, mode?: 'off'): Config;
}

const running: Processor[] = [];
const dirs: string[] = [];
let emu: KscEmulator | undefined;
afterEach(async () => {
  for (const p of running.splice(0)) await p.ext.stop().catch(() => undefined);
  await emu?.close();
  emu = undefined;
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
afterAll(stopAllNats);

function yaml(dir: string, natsUrl: string, leaseTtl: string, mode = 'auto'): string {
  return `state_dir: ${join(dir, 'state')}
shutdown_timeout: 10s
listeners: [ { name: bus, type: nats, servers: [ "${natsUrl}" ], stream: RAW, consumer: processors, reconnect_wait: 100ms, connect_timeout: 1s } ]
outputs: [ { name: events, type: file, path: ${join(dir, 'events.ndjson')} } ]
dead_letter: { path: ${join(dir, 'dead.ndjson')} }
ksc:
  sync_on_start: false
  request_timeout: 10s
  retries: 0
  trusted_sources: [ { connection: main, listeners: [ ksc ], cidrs: [ 127.0.0.1/32 ] } ]
  cluster: { mode: ${mode}, lease_ttl: ${leaseTtl}, ack_wait: 4s }
  response_rules:
    - { name: scan, type: ksctasks, tasks: [ "${TASK}" ], asset_field: device, filter: 'ksc.category == "detection"', workers: 1, cooldown: 0s }
`;
}

async function emulator(): Promise<KscEmulator> {
  const model = defaultModel();
  model.groups.push({ id: 9, name: 'Fleet', parentId: 0 });
  model.hosts.push({ id: HOST, displayName: 'WS-1001', domain: 'CORP', ip: '10.7.0.1', os: 'Microsoft Windows 10 Pro', groupId: 9, lastVisible: new Date(), nagent: true, nagentConnected: new Date(), products: [NAGENT, KES_WIN] });
  model.tasks.push({ id: '1000', displayName: TASK, taskType: 'ODS', product: 'KES', version: '11.0.0.0', hostIds: [HOST] });
  return startKscEmulator({ model });
}

/** A processor's KSC extension, its store prepared with the CLI (connection, assets, task list), started. */
async function processor(e: KscEmulator, nats: NatsServer): Promise<Processor> {
  const dir = tempDir();
  dirs.push(dir);
  const sd = ['--state-dir', join(dir, 'state')];
  const add = await runCli(['ksc', 'connections', 'add', '--name', 'main', '--url', e.url, '--pin', e.cert.fingerprint256, '--user', 'kuma', '--password-stdin', ...sd], { input: `${PASSWORD}\n` });
  expect(add.code, add.stderr).toBe(0);
  expect((await runCli(['ksc', 'assets', 'sync', ...sd])).code).toBe(0);
  expect((await runCli(['ksc', 'tasks', 'list', '--connection', 'main', '--refresh', ...sd])).code).toBe(0);
  const config = (leaseTtl: string, mode?: 'off') => loadConfigText(yaml(dir, nats.url, leaseTtl, mode), join(dir, 'cefd.yaml'));
  const logs = new LogCapture();
  const telemetry = new Telemetry({ level: 'debug', destination: logs, processMetrics: false, repeatIntervalMs: 0 });
  let onFindings: FindingsHandler | undefined;
  let holds: (() => Promise<void> | undefined)[] = [];
  const ctx: DaemonContext = {
    config: config('2s'),
    telemetry,
    log: telemetry.log,
    addTap: () => () => {},
    watchEvents: (_spec, f) => {
      onFindings = f;
    },
    holdAcks: (h) => {
      holds = [...holds, h];
      return () => {
        holds = holds.filter((x) => x !== h);
      };
    },
  };
  // As Pipeline.acksHeld, right after a batch's findings were handed on.
  const acks = () => {
    const waits = holds.map((h) => h()).filter((w): w is Promise<void> => w !== undefined);
    return waits.length === 0 ? undefined : Promise.all(waits).then(() => undefined);
  };
  const ext = new KscExtension(ctx.config);
  await ext.start(ctx);
  const p: Processor = {
    ext,
    logs,
    telemetry,
    dir,
    config,
    find: (f) => {
      onFindings!(ORIGIN, f);
      return acks();
    },
    acks,
    metric: async (name) => {
      const line = (await telemetry.registry.metrics()).split('\n').find((l) => l.startsWith(`${name} `));
      return line === undefined ? 0 : Number(line.slice(name.length + 1));
    },
  };
  running.push(p);
  return p;
}

/** A rule trigger for the processor's asset of the emulator's host, as the watch reports it for event `eventId`. */
function trigger(p: Processor, eventId: string): KscFindings {
  const asset = p.ext.integration!.store.listAssets().find((a) => a.kscHostId === HOST);
  if (asset === undefined) throw new Error('the asset was not imported');
  return { version: 1, enriched: 1, taskStates: [], taskStatesIgnored: 0, triggers: [{ rule: 'scan', assetId: asset.id, eventId }], noAsset: [] };
}

const started = (p: Processor) => p.ext.ruleViews().find((r) => r.name === 'scan')!.counters.started;
const says = (p: Processor, text: string) => p.logs.lines.some((l) => l.includes(text));

/** Two processors: the first owns connection `main`, the second joins after. */
async function pair(e: KscEmulator, nats: NatsServer): Promise<[Processor, Processor]> {
  const owner = await processor(e, nats);
  await waitFor(() => says(owner, 'this processor owns it now'), 60_000, 'the first processor owning the connection');
  const other = await processor(e, nats);
  expect(await other.metric('cefd_ksc_owner_connections')).toBe(0);
  return [owner, other];
}

async function workStreamEmpty(nats: NatsServer): Promise<boolean> {
  const nc = await connect({ servers: nats.url });
  try {
    return (await (await nc.jetstreamManager({ timeout: 30_000 })).streams.info('CEFD_KSC')).state.messages === 0;
  } finally {
    await nc.close();
  }
}

test('a processor that does not own the connection is reloaded (other cluster settings) while a trigger comes: it is held, not acknowledged, and started once by the owner, not by the reloaded processor', async () => {
  emu = await emulator();
  const nats = await natsServer();
  const [owner, other] = await pair(emu, nats);
  const reloading = other.ext.reload(other.config('3s'));
  // Its work sharing is being stopped and started again now.
  const ack = other.find(trigger(other, 'event-1'));
  expect(ack, 'the frames of a trigger found during the rebuild wait for its work to be published').toBeDefined();
  let acked = false;
  void ack!.then(() => (acked = true));
  await reloading;
  await ack;
  expect(acked).toBe(true);
  await waitFor(() => started(owner) === 1, 30_000, 'the owner starting the task');
  await waitFor(() => workStreamEmpty(nats), 30_000, 'the work stream drained');
  expect(emu.runs.map((r) => r.taskId)).toEqual(['1000']);
  expect(started(other)).toBe(0);
  expect(await other.metric('cefd_ksc_owner_work_published_total{kind="trigger",result="ok"}')).toBe(1);
  // After the reload the same processor still shares, and still does not own.
  expect(says(other, 'KSC work is shared with other processors')).toBe(true);
  expect(await other.metric('cefd_ksc_owner_connections')).toBe(0);
});

test('the owner is reloaded while KSC answers one of its starts: the start finishes and is acknowledged before the lease is given back; nobody gets that work again', async () => {
  emu = await emulator();
  emu.faults.answerDelayMs['Tasks.RunTask'] = 2500;
  const nats = await natsServer();
  const [owner, other] = await pair(emu, nats);
  await other.find(trigger(other, 'event-1'));
  await waitFor(() => emu!.runs.length === 1, 30_000, 'the owner\'s RunTask reaching KSC');
  // KSC has started the task and answers in 2.5 s (longer than a work fetch, 1 s): the owner is reloaded meanwhile.
  await owner.ext.reload(owner.config('3s'));
  // A work message is removed when acknowledged: one left unacknowledged stays until it came
  // again (after ack_wait) to an owner, whose claim check would then count a duplicate.
  await waitFor(() => workStreamEmpty(nats), 30_000, 'the work stream drained');
  await waitFor(async () => (await owner.metric('cefd_ksc_owner_connections')) + (await other.metric('cefd_ksc_owner_connections')) === 1, 30_000, 'a new owner');
  for (const p of [owner, other]) {
    expect(await p.metric('cefd_ksc_owner_claims_total{result="duplicate"}')).toBe(0);
    expect(await p.metric('cefd_ksc_task_starts_total{rule="scan",result="skipped_duplicate"}')).toBe(0);
  }
  expect(owner.logs.lines.filter((l) => l.includes('ksc_task_duplicate'))).toEqual([]);
  expect(emu.runs).toHaveLength(1);
  expect(started(owner)).toBe(1);
  expect(await owner.metric('cefd_ksc_owner_claims_total{result="claimed"}')).toBe(1);
});

test('NATS is down when a processor is reloaded: the trigger held meanwhile cannot be published, its frames are given back, nothing starts, and the failure is logged and counted', async () => {
  emu = await emulator();
  const nats = await natsServer();
  const [, other] = await pair(emu, nats);
  await nats.stop('SIGKILL');
  const reloading = other.ext.reload(other.config('3s'));
  const ack = other.find(trigger(other, 'event-1'));
  expect(ack).toBeDefined();
  // A batch without findings meanwhile holds no work: its frames are acknowledged as usual.
  expect(other.acks()).toBeUndefined();
  await reloading;
  await expect(ack).rejects.toThrow(/not connected to NATS/);
  expect(started(other)).toBe(0);
  expect(emu.runs).toHaveLength(0);
  expect(await other.metric('cefd_ksc_owner_work_published_total{kind="trigger",result="failed"}')).toBe(1);
  expect(other.logs.lines.some((l) => l.includes('"code":"ksc_work_publish_failed"') && l.includes('not connected to NATS'))).toBe(true);
});

test('a reload turns the sharing off: a trigger that came while it was being stopped is acted on here once the configuration is applied', async () => {
  emu = await emulator();
  const nats = await natsServer();
  const [, other] = await pair(emu, nats);
  const reloading = other.ext.reload(other.config('2s', 'off'));
  const ack = other.find(trigger(other, 'event-1'));
  expect(ack).toBeDefined();
  await reloading;
  // Nothing was published: the frames wait for nothing more once it is acted on here.
  await ack;
  await waitFor(() => started(other) === 1, 30_000, 'the task started by this processor, now on its own');
  expect(emu.runs.map((r) => r.taskId)).toEqual(['1000']);
  expect(await other.metric('cefd_ksc_owner_work_published_total{kind="trigger",result="ok"}')).toBe(0);
  // Later findings take the single-node path at once.
  expect(other.acks()).toBeUndefined();
});
