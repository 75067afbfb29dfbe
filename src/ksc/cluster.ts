/**
 * Processors that share KSC work (docs/cluster.md, "KSC: one owner per KSC connection").
 *
 * Several processors read one durable consumer of the raw-frame stream, so each event
 * reaches ONE of them, not necessarily the one that owns its KSC connection. So:
 *
 * 1. Every processor publishes what its KSC watch found and the trust check let through (a
 *    rule trigger: rule, KSC host id, event id; a task state) to the work stream `CEFD_KSC`,
 *    subject `cefd.ksc.<connection key>`, with `Nats-Msg-Id` derived from the event id:
 *    an event delivered again (its processor died before acknowledging it) gives the same
 *    message, stored once within the stream's duplicate window. The raw frames are
 *    acknowledged only after these publishes were acknowledged (`settled()`, awaited by the
 *    `nats` source), so a finding is never lost between the two streams.
 * 2. Per KSC connection, one processor holds the lease (lease.ts; bucket `cefd_ksc_owner`,
 *    key = connection key, value = processor id). Only the holder reads the connection's
 *    work (a durable consumer per connection, filtered on its subject) and acts: rule
 *    triggers go to its response rules, task states to its task runs. A work message is
 *    acknowledged after the action's outcome is known (a task start: after RunTask).
 * 3. A task start is claimed right before RunTask in bucket `cefd_ksc_starts` (key: hash of
 *    rule and event id, `create` = compare-and-set on "no value"): a work message delivered
 *    again (the owner died between RunTask and the acknowledgement, and another processor
 *    took over) finds the claim and does not start the task again. The claim is made only
 *    while the lease is held.
 *
 * Processors share nothing else: each has its own KSC store (connections, assets, runs),
 * and connections are matched by tenant and name, assets by their KSC host id.
 */
import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { AckPolicy, DeliverPolicy, RetentionPolicy, StorageType, headers as natsHeaders, nanos, type JsMsg, type KV, type NatsConnection } from 'nats';
import { NatsLink, jsErrCode, natsErrorText, type NatsConnectionConfig } from '../nats/connection.js';
import type { KscClusterConfig } from './config/types.js';
import { KscRefusedError } from './errors.js';
import { KvLease, type LeaseChange } from './lease.js';
import type { KscLogger } from './secrets.js';
import type { TaskStateEvent } from './tasks.js';

export const WORK_STREAM = 'CEFD_KSC';
export const WORK_SUBJECT = 'cefd.ksc';
export const OWNER_BUCKET = 'cefd_ksc_owner';
export const STARTS_BUCKET = 'cefd_ksc_starts';
/** Work given back (not acted on now) comes again after this, not in a tight loop. */
const NAK_DELAY_MS = 1000;

/** A piece of KSC work for a connection's owner. */
export type WorkItem = { kind: 'trigger'; rule: string; host: string; eventId?: string } | { kind: 'task_state'; ts: TaskStateEvent };

/** What the owner did with a work message: acknowledge it, or give it back (`nak`: delivered again, to whoever owns the connection then). */
export type WorkOutcome = 'ack' | 'nak';

const SAFE = /^[A-Za-z0-9_-]+$/;
const enc = (s: string): string => (SAFE.test(s) ? s : `=${Buffer.from(s, 'utf8').toString('base64url')}`);

/**
 * A connection's key: a KV key and two subject tokens (`<tenant>.<name>`); a tenant or name
 * with other characters than letters, digits, `_` and `-` is written `=<base64url>`.
 */
export function connectionKey(tenant: string, name: string): string {
  return `${enc(tenant)}.${enc(name)}`;
}

const hash = (...parts: string[]): string => createHash('sha256').update(parts.join('\0')).digest('hex').slice(0, 32);

/** The id of this process among processors: host, pid and start time. */
export function processorId(): string {
  return `${hostname()}:${process.pid}:${Date.now().toString(36)}`;
}

export interface KscClusterCounters {
  changes: Map<LeaseChange, number>;
  published: Map<string, number>;
  work: Map<string, number>;
  claims: Map<string, number>;
}

export interface KscClusterOptions {
  nats: NatsConnectionConfig;
  config: KscClusterConfig;
  id?: string;
  log: KscLogger;
  /** The keys of the connections this processor may own (its enabled connections). */
  connections(): string[];
  /** Acts on a work message (as owner of `key`). */
  act(key: string, item: WorkItem): Promise<WorkOutcome>;
  /** Counters to add to (those of the cluster this one replaces, so a reload does not reset them). */
  counters?: KscClusterCounters;
}

interface Owned {
  lease: KvLease;
  loop: Promise<void> | null;
}

interface Setup {
  nc: NatsConnection;
  owner: KV;
  starts: KV;
  /** The lease time in use: min(lease_ttl, the owner bucket's ttl). */
  leaseMs: number;
  /** How long a claim is kept: the starts bucket's ttl (0: for ever). */
  claimMs: number;
}

export class KscCluster {
  readonly id: string;
  readonly counters: KscClusterCounters;
  private readonly link: NatsLink;
  private setup: Setup | null = null;
  private settingUp: Promise<void> | null = null;
  private readonly leases = new Map<string, Owned>();
  /** Publishes not yet collected by settled(). */
  private inflight = new Set<Promise<void>>();
  /** Publishes not yet answered (collected or not): stop() waits for them before closing. */
  private readonly unanswered = new Set<Promise<void>>();
  /** Work messages being acted on: stop() lets them finish and acknowledges them on this connection. */
  private readonly acting = new Set<Promise<void>>();
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  /** Claims whose create failed without an answer (they may be stored): this processor's, not a duplicate, when seen again. */
  private readonly uncertainClaims = new Set<string>();
  private lastProblem = '';
  private setupError = '';
  private leaseNc: NatsConnection | null = null;
  /** The bucket ttls last logged about (owner/starts, ms). */
  private ttlsSeen = '';

  constructor(private readonly o: KscClusterOptions) {
    this.id = o.id ?? processorId();
    this.counters = o.counters ?? { changes: new Map(), published: new Map(), work: new Map(), claims: new Map() };
    this.link = new NatsLink(o.nats, `cefd ksc ${this.id}`);
  }

  private add(m: Map<string, number>, k: string): void {
    m.set(k, (m.get(k) ?? 0) + 1);
  }

  /** Connects (in the background when NATS is down) and starts taking leases. */
  async start(): Promise<void> {
    this.stopped = false;
    await this.link.start();
    await this.maintain();
  }

  /** Connections this processor owns now. */
  owned(): string[] {
    return [...this.leases].filter(([, x]) => x.lease.held).map(([k]) => k);
  }

  isOwner(key: string): boolean {
    return this.leases.get(key)?.lease.held === true;
  }

  private problem(text: string): void {
    if (text === this.lastProblem) return;
    this.lastProblem = text;
    this.o.log.warn({ code: 'ksc_work_publish_failed', err: text }, `KSC work sharing: ${text}`);
  }

  /** The work stream and the two buckets on the live connection (created when missing). */
  private async ensureSetup(): Promise<Setup | null> {
    const nc = this.link.current;
    if (nc === null) return null;
    if (this.setup !== null && this.setup.nc === nc) return this.setup;
    if (this.settingUp !== null) {
      await this.settingUp;
      return this.setup !== null && this.setup.nc === nc ? this.setup : null;
    }
    const c = this.o.config;
    this.settingUp = (async () => {
      const jsm = await nc.jetstreamManager();
      const have = await jsm.streams.info(WORK_STREAM).catch(() => null);
      if (have !== null && !(have.config.subjects ?? []).includes(`${WORK_SUBJECT}.>`)) {
        throw new Error(`stream ${WORK_STREAM} exists without subject ${WORK_SUBJECT}.> (made by something else than cefd?)`);
      }
      if (have === null) {
        await jsm.streams
          .add({
            name: WORK_STREAM,
            subjects: [`${WORK_SUBJECT}.>`],
            retention: RetentionPolicy.Workqueue,
            storage: StorageType.File,
            num_replicas: c.replicas,
            duplicate_window: nanos(Math.round(c.duplicate_window * 1000)),
            max_age: nanos(7 * 24 * 3_600_000),
          })
          .catch(async (e) => {
            // Another processor created it at the same moment.
            await jsm.streams.info(WORK_STREAM).catch(() => Promise.reject(e));
          });
      }
      const js = nc.jetstream();
      // An existing bucket is bound as it is: its ttl (max_age) is the one it was made with,
      // by whichever processor came first, whatever this processor's config says.
      const owner = await js.views.kv(OWNER_BUCKET, { history: 1, ttl: Math.round(c.lease_ttl * 1000), replicas: c.replicas, storage: StorageType.File });
      const starts = await js.views.kv(STARTS_BUCKET, { history: 1, ttl: Math.round(c.claim_ttl * 1000), replicas: c.replicas, storage: StorageType.File });
      const setup = { nc, owner, starts, leaseMs: 0, claimMs: 0 };
      await this.readBucketTtls(setup);
      this.setup = setup;
      this.setupError = '';
      this.lastProblem = '';
    })()
      .catch((e) => {
        this.setupError = `cannot set up the work stream ${WORK_STREAM} and buckets ${OWNER_BUCKET}, ${STARTS_BUCKET}: ${natsErrorText(e)}`;
        this.problem(this.setupError);
      })
      .finally(() => (this.settingUp = null));
    await this.settingUp;
    return this.setup !== null && this.setup.nc === nc ? this.setup : null;
  }

  /**
   * The buckets' real ttls (their streams' max_age, which nats.js does not change when it
   * binds an existing bucket). A lease is held for min(lease_ttl, owner bucket's ttl) and
   * renewed every third of that: the server removes the key after the bucket's ttl, so a
   * holder counting on its own longer lease_ttl would still act after another processor
   * took the key. A claim lasts what the starts bucket keeps it. A difference is logged
   * (once per value seen); the buckets are not changed (see docs/cluster.md).
   */
  private async readBucketTtls(s: Setup): Promise<void> {
    const c = this.o.config;
    const wantLease = Math.round(c.lease_ttl * 1000);
    const wantClaim = Math.round(c.claim_ttl * 1000);
    const [o, st] = await Promise.all([s.owner.status(), s.starts.status()]);
    // KvStatus.ttl is in ms (nats.js 2.29: millis(max_age)); 0: entries never expire.
    const ownerTtl = Math.round(o.ttl);
    const startsTtl = Math.round(st.ttl);
    s.leaseMs = ownerTtl > 0 ? Math.min(wantLease, ownerTtl) : wantLease;
    s.claimMs = startsTtl;
    const seen = `${ownerTtl}/${startsTtl}`;
    if (seen === this.ttlsSeen) return;
    this.ttlsSeen = seen;
    const secs = (ms: number) => `${ms / 1000}s`;
    if (ownerTtl !== wantLease) {
      this.o.log.warn(
        { bucket: OWNER_BUCKET, processor: this.id, leaseTtlMs: wantLease, bucketTtlMs: ownerTtl },
        ownerTtl === 0
          ? `KSC work sharing: bucket ${OWNER_BUCKET} keeps its keys for ever (no ttl), not ksc.cluster.lease_ttl ${secs(wantLease)}: the lease is held for ${secs(s.leaseMs)}, but the key of an owner that dies is never removed, so no other processor takes over; delete the bucket (nats kv rm ${OWNER_BUCKET}) so that it is made again with lease_ttl`
          : `KSC work sharing: bucket ${OWNER_BUCKET} keeps a lease for ${secs(ownerTtl)} (the ttl it was made with), ksc.cluster.lease_ttl is ${secs(wantLease)}: the lease is held for ${secs(s.leaseMs)} and renewed every third of it${ownerTtl > wantLease ? `; an owner that dies is replaced after up to ${secs(ownerTtl)}` : ''}. To use lease_ttl, stop the processors and delete the bucket (nats kv rm ${OWNER_BUCKET}), or set its max_age (nats stream edit KV_${OWNER_BUCKET} --max-age ${secs(wantLease)}) while no processor runs`,
      );
    }
    if (startsTtl !== wantClaim) {
      this.o.log.warn(
        { bucket: STARTS_BUCKET, processor: this.id, claimTtlMs: wantClaim, bucketTtlMs: startsTtl },
        `KSC work sharing: bucket ${STARTS_BUCKET} keeps a start's claim for ${startsTtl === 0 ? 'ever' : secs(startsTtl)} (the ttl it was made with), ksc.cluster.claim_ttl is ${secs(wantClaim)}: an event delivered again is recognised by its claim within ${startsTtl === 0 ? 'any time' : secs(startsTtl)}${startsTtl !== 0 && startsTtl < wantClaim ? ', not claim_ttl' : ''}. To use claim_ttl, set the bucket's max_age (nats stream edit KV_${STARTS_BUCKET} --max-age ${secs(wantClaim)})`,
      );
    }
  }

  /** The lease time in use (ms): min(lease_ttl, the owner bucket's ttl), once the bucket was read. */
  leaseMs(): number {
    return this.setup?.leaseMs ?? Math.round(this.o.config.lease_ttl * 1000);
  }

  /** How long the starts bucket keeps a claim (ms; 0: for ever), once the bucket was read. */
  claimMs(): number | undefined {
    return this.setup?.claimMs;
  }

  /** Every renewal interval: set up, take leases of new connections, drop removed ones. */
  private async maintain(): Promise<void> {
    if (this.stopped) return;
    try {
      const s = await this.ensureSetup();
      // Stopped while setting up: no lease may start after stop() cleared them.
      if (this.stopped) return;
      if (s !== null && s.nc !== this.leaseNc) {
        // A new connection (the client gave up the old one): leases bound to the old one cannot renew.
        const old = [...this.leases.values()];
        this.leases.clear();
        this.leaseNc = s.nc;
        await Promise.all(old.map((x) => x.lease.stop()));
      }
      // Said at once (a processor started or reloaded while NATS is down), not only when work is published.
      if (s === null && this.link.current === null) this.problem(`not connected to NATS: ${this.link.lastError}`);
      if (s !== null) {
        // The bucket may have been made again (deleted, then made by a processor with
        // another lease_ttl) since it was read: read again, every round.
        await this.readBucketTtls(s).catch(() => undefined);
        if (this.stopped) return;
        for (const x of this.leases.values()) x.lease.setTtl(s.leaseMs);
        const want = new Set(this.o.connections());
        for (const key of want) if (!this.leases.has(key)) this.newLease(key, s.owner, s.leaseMs);
        for (const [key, x] of this.leases) {
          if (want.has(key)) continue;
          this.leases.delete(key);
          void x.lease.stop();
        }
      }
    } catch (e) {
      this.problem(natsErrorText(e));
    }
    if (this.stopped || this.timer !== null) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.maintain();
    }, Math.max(100, Math.floor(this.leaseMs() / 3)));
    this.timer.unref();
  }

  private newLease(key: string, kv: KV, ttlMs: number): void {
    if (this.stopped) return;
    const x: Owned = {
      lease: new KvLease({
        kv,
        key,
        holder: this.id,
        ttlMs,
        onChange: (change, d) => {
          this.add(this.counters.changes, change);
          if (change === 'acquired') {
            this.o.log.info({ connection: key, processor: this.id }, `KSC connection ${key}: this processor owns it now (task starts and task runs happen here)`);
            this.startConsuming(key, x);
          } else if (change === 'lost') {
            this.o.log.warn({ code: 'ksc_lease_lost', connection: key, processor: this.id, reason: d.reason }, `KSC connection ${key}: this processor no longer owns it (${d.reason ?? 'lost'})`);
          } else {
            this.o.log.info({ connection: key, processor: this.id }, `KSC connection ${key}: ownership released`);
          }
        },
      }),
      loop: null,
    };
    this.leases.set(key, x);
    void x.lease.start();
  }

  /** Starts the work loop of a connection whose lease this processor took (again). */
  private startConsuming(key: string, x: Owned): void {
    if (x.loop !== null || this.stopped) return;
    x.loop = this.consume(key, x).finally(() => {
      x.loop = null;
      // Re-acquired while the loop was ending (its `acquired` found the loop still there).
      if (x.lease.held && !this.stopped && this.leases.get(key) === x) this.startConsuming(key, x);
    });
  }

  /** Reads the connection's work while this processor holds its lease. */
  private async consume(key: string, x: Owned): Promise<void> {
    const durable = `ksc_${hash(key).slice(0, 20)}`;
    let consumer: Awaited<ReturnType<ReturnType<NatsConnection['jetstream']>['consumers']['get']>> | null = null;
    let nc: NatsConnection | null = null;
    while (!this.stopped && x.lease.held) {
      const s = this.setup;
      if (s === null || this.link.current !== s.nc) {
        await new Promise((r) => setTimeout(r, 200).unref());
        continue;
      }
      try {
        if (consumer === null || nc !== s.nc) {
          const jsm = await s.nc.jetstreamManager();
          const cfg = {
            durable_name: durable,
            filter_subject: `${WORK_SUBJECT}.${key}`,
            ack_policy: AckPolicy.Explicit,
            deliver_policy: DeliverPolicy.All,
            ack_wait: nanos(Math.round(this.o.config.ack_wait * 1000)),
            max_ack_pending: 1000,
          };
          await jsm.consumers.add(WORK_STREAM, cfg).catch(async (e) => {
            if ((await jsm.consumers.info(WORK_STREAM, durable).catch(() => null)) === null) throw e;
          });
          consumer = await s.nc.jetstream().consumers.get(WORK_STREAM, durable);
          nc = s.nc;
        }
        const it = await consumer.fetch({ max_messages: 100, expires: 1000 });
        for await (const m of it) this.take(key, x, m);
      } catch (e) {
        consumer = null;
        this.problem(`cannot read the work of KSC connection ${key}: ${natsErrorText(e)}`);
        await new Promise((r) => setTimeout(r, 500).unref());
      }
    }
  }

  private take(key: string, x: Owned, m: JsMsg): void {
    if (!x.lease.held) {
      m.nak();
      return;
    }
    let item: WorkItem;
    try {
      item = m.json<WorkItem>();
      if (item === null || typeof item !== 'object' || (item.kind !== 'trigger' && item.kind !== 'task_state')) throw new Error('not a work item');
    } catch {
      // Not written by cefd: it can never be acted on.
      this.add(this.counters.work, 'bad');
      m.term();
      return;
    }
    const done = this.o.act(key, item).then(
      (r) => {
        this.add(this.counters.work, `${item.kind}\t${r}`);
        if (r === 'ack') m.ack();
        else m.nak(NAK_DELAY_MS);
      },
      () => {
        this.add(this.counters.work, `${item.kind}\tnak`);
        m.nak(NAK_DELAY_MS);
      },
    );
    this.acting.add(done);
    void done.finally(() => this.acting.delete(done));
  }

  /**
   * Publishes a piece of work for the owner of `key`. The publish is awaited by `settled()`;
   * `eventId` makes the message id, so the same finding from a redelivered event is stored once.
   */
  publish(key: string, item: WorkItem, eventId: string | undefined): void {
    const p = (async () => {
      const s = await this.ensureSetup();
      if (s === null) throw new Error(this.link.current === null ? `not connected to NATS: ${this.link.lastError}` : this.setupError);
      const h = natsHeaders();
      if (eventId !== undefined) h.set('Nats-Msg-Id', item.kind === 'trigger' ? hash('t', key, item.rule, eventId) : hash('s', key, eventId));
      await s.nc.jetstream().publish(`${WORK_SUBJECT}.${key}`, JSON.stringify(item), { headers: h });
    })().then(
      () => this.add(this.counters.published, `${item.kind}\tok`),
      (e: unknown) => {
        this.add(this.counters.published, `${item.kind}\tfailed`);
        // Set up again before the next publish (the stream may have been deleted or changed).
        this.setup = null;
        this.problem(`cannot publish KSC work for connection ${key}: ${natsErrorText(e)}`);
        throw e;
      },
    );
    this.inflight.add(p);
    this.unanswered.add(p);
    // Kept until settled() collects it; a failure is reported there.
    p.catch(() => undefined).finally(() => this.unanswered.delete(p));
  }

  /**
   * What the raw-frame source awaits before acknowledging: the publishes made so far.
   * Undefined when there are none. Rejects when one failed (the source then gives its
   * messages back instead of acknowledging them).
   */
  settled(): Promise<void> | undefined {
    if (this.inflight.size === 0) return undefined;
    const all = [...this.inflight];
    this.inflight = new Set();
    return Promise.all(all).then(() => undefined);
  }

  /**
   * Claims the start for `rule` and `eventId` (true), or finds it claimed already (false).
   * Throws `ksc_not_owner` when this processor does not own `key` or NATS cannot be asked.
   */
  async claim(key: string, rule: string, eventId: string): Promise<boolean> {
    if (!this.isOwner(key)) throw new KscRefusedError('ksc_not_owner', `this processor does not own KSC connection ${key} (any more)`);
    const s = this.setup;
    if (s === null) throw new KscRefusedError('ksc_not_owner', `cannot claim the start: not connected to NATS (${this.link.lastError})`);
    const k = hash(rule, eventId);
    try {
      await s.starts.create(k, new TextEncoder().encode(`claimed ${this.id}`));
      this.add(this.counters.claims, 'claimed');
      return true;
    } catch (e) {
      const code = jsErrCode(e);
      if (code === 10071 || /wrong last sequence/i.test((e as Error).message)) {
        const v = (await s.starts.get(k).catch(() => null))?.string() ?? '';
        // Our own earlier claim whose answer was lost (a timeout while the server stored
        // it): the start was never made, so it is ours to make now.
        if (v === `claimed ${this.id}` && this.uncertainClaims.delete(k)) {
          this.add(this.counters.claims, 'claimed');
          return true;
        }
        this.add(this.counters.claims, 'duplicate');
        // A claim never confirmed: its owner stopped between the claim and KSC's answer.
        if (v.startsWith('claimed ')) {
          this.o.log.warn(
            { code: 'ksc_task_duplicate', connection: key, rule, event: eventId, claimedBy: v.slice(8) },
            `response rule ${rule}: the start for event ${eventId} was claimed by processor ${v.slice(8)}, which stopped before KSC answered; not started again (KSC may or may not have started it)`,
          );
        }
        return false;
      }
      this.add(this.counters.claims, 'failed');
      // The claim may have been stored even so (a lost answer): remembered, see above.
      this.uncertainClaims.add(k);
      if (this.uncertainClaims.size > 10_000) this.uncertainClaims.delete(this.uncertainClaims.values().next().value!);
      throw new KscRefusedError('ksc_not_owner', `cannot claim the start in bucket ${STARTS_BUCKET}: ${natsErrorText(e)}`);
    }
  }

  /** Marks a claim as started (KSC answered RunTask), for the next owner's log. */
  confirm(rule: string, eventId: string): void {
    void this.setup?.starts.put(hash(rule, eventId), new TextEncoder().encode(`started ${this.id}`)).catch(() => undefined);
  }

  /** Gives a claim back (the start did not reach KSC). */
  release(rule: string, eventId: string): void {
    void this.setup?.starts.delete(hash(rule, eventId)).catch(() => undefined);
  }

  /**
   * Stops in the order that neither repeats nor strands work: no new work is fetched (a
   * fetch under way ends within its 1 s expiry and what it brought is acted on); the work
   * being acted on (a task start waiting for KSC's answer) gets up to `graceMs` to finish
   * and is acknowledged on this connection while the lease is still held, so its start is
   * confirmed and nobody gets it again; then the leases are released (another processor
   * takes over at once), the work publishes still unanswered are awaited (the raw frames
   * they came from wait for them), and the connection closes. Work still being acted on
   * after `graceMs` is not acknowledged: it comes again to the next owner after `ack_wait`,
   * whose claim check finds a start made meanwhile.
   */
  async stop(graceMs = 0): Promise<void> {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    const leases = [...this.leases.values()];
    await Promise.all(leases.map((x) => x.loop));
    if (this.acting.size > 0 && graceMs > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.all([...this.acting]), new Promise<void>((r) => (timer = setTimeout(r, graceMs)))]);
      clearTimeout(timer);
    }
    this.leases.clear();
    await Promise.all(leases.map((x) => x.lease.stop()));
    await Promise.allSettled([...this.unanswered]);
    await this.link.close();
  }
}
