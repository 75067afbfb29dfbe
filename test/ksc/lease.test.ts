/**
 * The KSC owner lease (src/ksc/lease.ts) on a real nats-server's key-value bucket: one
 * holder at a time, renewal, take-over after expiry, step-down when a renewal fails or the
 * lease time passes without one, release at stop.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { connect, type KV, type NatsConnection } from 'nats';
import { KvLease, type LeaseChange } from '../../src/ksc/lease.js';
import { KscCluster } from '../../src/ksc/cluster.js';
import { natsServer, stopAllNats, type NatsServer } from '../helpers/nats-server.js';
import { waitFor } from '../helpers/daemon.js';

let server: NatsServer;
let nc: NatsConnection;
let bucket = 0;

beforeAll(async () => {
  server = await natsServer();
  nc = await connect({ servers: server.url });
});

afterAll(async () => {
  // The server is stopped even when closing the connection fails (or beforeAll did).
  try {
    await nc?.close();
  } finally {
    await stopAllNats();
  }
});

/** A fresh bucket whose entries expire after `ttlMs` (the lease time). */
async function kv(ttlMs: number): Promise<KV> {
  return nc.jetstream().views.kv(`lease_test_${++bucket}`, { history: 1, ttl: ttlMs });
}

/** The KV seen by one holder, whose calls can be made to fail or to hang (a processor cut off from NATS, or frozen). */
function faulty(real: KV) {
  const f = { fail: false, hang: false, release: () => {} };
  let gate: Promise<void> = Promise.resolve();
  const call = async <T>(fn: () => Promise<T>): Promise<T> => {
    if (f.hang) {
      gate = new Promise<void>((r) => (f.release = r));
      f.hang = false;
      await gate;
    }
    if (f.fail) throw new Error('no connection to NATS (test)');
    return fn();
  };
  const kvOf = {
    get: (k: string) => call(() => real.get(k)),
    create: (k: string, d: Uint8Array) => call(() => real.create(k, d)),
    update: (k: string, d: Uint8Array, v: number) => call(() => real.update(k, d, v)),
    delete: (k: string, o?: { previousSeq?: number }) => call(() => real.delete(k, o)),
  } as unknown as KV;
  return { f, kv: kvOf };
}

function holder(kvx: Pick<KV, 'get' | 'create' | 'update' | 'delete'>, id: string, ttlMs: number, o: { now?: () => number } = {}) {
  const changes: { change: LeaseChange; reason?: string }[] = [];
  const lease = new KvLease({ kv: kvx, key: 'tenant.conn', holder: id, ttlMs, onChange: (change, d) => changes.push({ change, ...(d.reason !== undefined ? { reason: d.reason } : {}) }), ...(o.now ? { now: o.now } : {}) });
  return { lease, changes };
}

test('two holders: one takes the key, renews it past the lease time, and the other never gets it', async () => {
  // 3 s, not 1 s: the holder renews every second, so a test process or nats-server starved
  // for a second on a loaded machine does not miss the lease time (the holder would rightly
  // step down, and the other take the key).
  const b = await kv(3000);
  const a = holder(b, 'p1', 3000);
  const c = holder(b, 'p2', 3000);
  await a.lease.start();
  await c.lease.start();
  expect(a.lease.held).toBe(true);
  expect(c.lease.held).toBe(false);
  expect((await b.get('tenant.conn'))!.string()).toBe('p1');
  expect(c.lease.owner).toBe('p1');
  // Three lease times: only renewals keep the entry, and p2 tries every third of one.
  const first = (await b.get('tenant.conn'))!.revision;
  await waitFor(async () => ((await b.get('tenant.conn'))?.revision ?? 0) >= first + 6, 30_000, 'six renewals');
  expect(a.lease.held).toBe(true);
  expect(c.lease.held).toBe(false);
  expect(c.changes).toEqual([]);
  expect(a.changes).toEqual([{ change: 'acquired' }]);
  await a.lease.stop();
  await c.lease.stop();
});

test('the holder stops renewing (frozen): the key expires, the other takes over, and the old holder steps down when its renewal fails the compare-and-set', async () => {
  const b = await kv(1000);
  const fa = faulty(b);
  const a = holder(fa.kv, 'p1', 1000);
  const c = holder(b, 'p2', 1000);
  await a.lease.start();
  await c.lease.start();
  expect(a.lease.held).toBe(true);
  // p1's next call hangs: no renewal reaches the server.
  fa.f.hang = true;
  await waitFor(() => c.lease.held, 30_000, 'p2 takes the expired key');
  expect((await b.get('tenant.conn'))!.string()).toBe('p2');
  // p1 counts itself owner no longer than the lease time after its last renewal was sent.
  expect(a.lease.held).toBe(false);
  expect(a.changes.at(-1)).toEqual({ change: 'lost', reason: 'no renewal within the lease time' });
  // Its frozen renewal goes on now: the compare-and-set on p1's old revision is refused,
  // p2's entry stays; p1's next attempt is a take, which finds p2 there.
  fa.f.release();
  await a.lease.tick();
  expect((await b.get('tenant.conn'))!.string()).toBe('p2');
  expect(a.lease.held).toBe(false);
  await a.lease.tick();
  expect(a.lease.held).toBe(false);
  expect(a.lease.owner).toBe('p2');
  expect(c.lease.held).toBe(true);
  await a.lease.stop();
  await c.lease.stop();
});

test('a renewal refused by the server (another holder wrote the key) steps down at once', async () => {
  const b = await kv(60_000);
  const a = holder(b, 'p1', 60_000);
  await a.lease.start();
  expect(a.lease.held).toBe(true);
  // Someone else overwrote the key (an operator, a holder with a wrong clock): the compare-and-set fails.
  await b.put('tenant.conn', new TextEncoder().encode('intruder'));
  await a.lease.tick();
  expect(a.lease.held).toBe(false);
  expect(a.changes.at(-1)!.change).toBe('lost');
  expect(a.changes.at(-1)!.reason).toMatch(/renewal failed/);
  await a.lease.tick();
  expect(a.lease.owner).toBe('intruder');
  expect(a.lease.held).toBe(false);
  await a.lease.stop();
});

test('a renewal that cannot reach NATS steps down; the holder takes the key again once NATS answers', async () => {
  const b = await kv(60_000);
  const fa = faulty(b);
  const a = holder(fa.kv, 'p1', 60_000);
  await a.lease.start();
  expect(a.lease.held).toBe(true);
  fa.f.fail = true;
  await a.lease.tick();
  expect(a.lease.held).toBe(false);
  expect(a.changes.at(-1)!.reason).toMatch(/no connection to NATS/);
  // Its own entry is still there (the lease time is long): it cannot take it back before it expires.
  fa.f.fail = false;
  await a.lease.tick();
  expect(a.lease.held).toBe(false);
  expect(a.lease.owner).toBe('p1');
  await b.delete('tenant.conn');
  await a.lease.tick();
  expect(a.lease.held).toBe(true);
  expect(a.changes.map((x) => x.change)).toEqual(['acquired', 'lost', 'acquired']);
  await a.lease.stop();
});

test('the local deadline: no successful renewal within the lease time means not holder, whatever the timer did', async () => {
  const b = await kv(60_000);
  let now = 1_000_000;
  const a = holder(b, 'p1', 60_000, { now: () => now });
  await a.lease.start();
  expect(a.lease.held).toBe(true);
  now += 59_999;
  expect(a.lease.held).toBe(true);
  now += 1;
  expect(a.lease.held).toBe(false);
  expect(a.changes.at(-1)).toEqual({ change: 'lost', reason: 'no renewal within the lease time' });
  await a.lease.stop();
});

test('stop releases the key: the other holder takes it at its next attempt', async () => {
  const b = await kv(60_000);
  const a = holder(b, 'p1', 60_000);
  const c = holder(b, 'p2', 60_000);
  await a.lease.start();
  await c.lease.start();
  expect(c.lease.held).toBe(false);
  await a.lease.stop();
  expect(a.changes.at(-1)!.change).toBe('released');
  await c.lease.tick();
  expect(c.lease.held).toBe(true);
  expect((await b.get('tenant.conn'))!.string()).toBe('p2');
  await c.lease.stop();
});

test('two holders racing for a free key: exactly one wins (compare-and-set on "no value")', async () => {
  const b = await kv(60_000);
  const hs = Array.from({ length: 5 }, (_, i) => holder(b, `p${i}`, 60_000));
  await Promise.all(hs.map((h) => h.lease.start()));
  expect(hs.filter((h) => h.lease.held)).toHaveLength(1);
  const winner = hs.find((h) => h.lease.held)!;
  expect((await b.get('tenant.conn'))!.string()).toBe(winner.lease.owner);
  await Promise.all(hs.map((h) => h.lease.stop()));
});

test('a renewal answered after the local deadline: the holder stepped down meanwhile, then owns the key again and says so (its work loop restarts on "acquired")', async () => {
  const b = await kv(60_000);
  const { f, kv: slow } = faulty(b);
  let t = 0;
  const a = holder(slow, 'p1', 60_000, { now: () => t });
  await a.lease.start();
  expect(a.changes).toEqual([{ change: 'acquired' }]);
  // The next renewal hangs (a JetStream leader change) while the local deadline passes.
  t = 40_000;
  f.hang = true;
  const renewal = a.lease.tick();
  t = 60_001;
  expect(a.lease.held).toBe(false);
  expect(a.changes.map((c) => c.change)).toEqual(['acquired', 'lost']);
  // The answer comes: the compare-and-set went through, nobody wrote the key since.
  f.release();
  await renewal;
  expect(a.lease.held).toBe(true);
  expect(a.changes.map((c) => c.change)).toEqual(['acquired', 'lost', 'acquired']);
  expect((await b.get('tenant.conn'))!.string()).toBe('p1');
  await a.lease.stop();
});

test('processors whose lease_ttl differs from the owner bucket\'s ttl: each holds the lease for the bucket\'s (shorter) ttl and renews every third of it, so no second owner takes the key; the difference is logged', async () => {
  // p1 (lease_ttl 3 s, claim_ttl 1 h) makes the buckets and stops; p2 (lease_ttl 10 s: a
  // rolling change, or a reload that keeps the old bucket) takes the lease; p3 (3 s) waits.
  // Before, p2 renewed every 3.3 s while the server removed the key after 3 s: p3 took it
  // while p2 still counted itself owner.
  const warns: string[] = [];
  const log = { debug() {}, info() {}, error() {}, warn: (_o: unknown, m?: string) => void warns.push(m ?? '') };
  const mk = (id: string, lease_ttl: number, claim_ttl = 3600) =>
    new KscCluster({
      id,
      nats: { servers: [server.url], connect_timeout: 5, reconnect_wait: 0.2 } as unknown as ConstructorParameters<typeof KscCluster>[0]['nats'],
      config: { mode: 'auto', lease_ttl, ack_wait: 60, replicas: 1, duplicate_window: 600, claim_ttl } as ConstructorParameters<typeof KscCluster>[0]['config'],
      log,
      connections: () => ['t.main'],
      act: async () => 'ack',
    });
  const p1 = mk('p1', 3);
  await p1.start();
  await waitFor(() => p1.isOwner('t.main'), 30_000, 'p1 owns');
  await p1.stop();
  const p2 = mk('p2', 10, 7200);
  await p2.start();
  await waitFor(() => p2.isOwner('t.main'), 30_000, 'p2 owns');
  const p3 = mk('p3', 3);
  await p3.start();
  try {
    expect(p2.leaseMs()).toBe(3000);
    expect(warns.join('\n')).toContain('bucket cefd_ksc_owner keeps a lease for 3s (the ttl it was made with), ksc.cluster.lease_ttl is 10s: the lease is held for 3s');
    // The claim lasts what the starts bucket keeps it, not p2's claim_ttl.
    expect(p2.claimMs()).toBe(3_600_000);
    expect(warns.join('\n')).toContain('bucket cefd_ksc_starts keeps a start\'s claim for 3600s (the ttl it was made with), ksc.cluster.claim_ttl is 7200s');
    // Three bucket ttls of renewals (p2 renews every second): p3 never gets the key.
    const owner = await nc.jetstream().views.kv('cefd_ksc_owner');
    const first = (await owner.get('t.main'))!.revision;
    await waitFor(async () => ((await owner.get('t.main'))?.revision ?? 0) >= first + 9 || p3.isOwner('t.main'), 60_000, 'nine renewals, or p3 took the key');
    expect(p3.counters.changes.get('acquired') ?? 0).toBe(0);
    expect(p2.counters.changes.get('lost') ?? 0).toBe(0);
    expect(p2.isOwner('t.main')).toBe(true);
  } finally {
    await p2.stop();
    await p3.stop();
  }
});
