/** The failed sign-in limit (src/console/signin-limit.ts) with a clock of its own: per address and overall. */
import { expect, test } from 'vitest';
import { addressKey, SigninLimiter } from '../../src/console/signin-limit.js';

function clock(): { now: () => number; tick: (ms: number) => void } {
  let t = 1_000_000;
  return { now: () => t, tick: (ms) => (t += ms) };
}

test('per address: free failures, then a lock-out that doubles up to the maximum; a success clears it', () => {
  const c = clock();
  const l = new SigninLimiter({ free: 3, baseMs: 1_000, maxMs: 8_000, now: c.now });
  for (let i = 0; i < 3; i++) {
    expect(l.check('10.0.0.1')).toEqual({ waitMs: 0, scope: null });
    l.failed('10.0.0.1');
  }
  expect(l.check('10.0.0.1').waitMs).toBe(0);
  const waits: number[] = [];
  for (let i = 0; i < 6; i++) {
    l.failed('10.0.0.1');
    const w = l.check('10.0.0.1');
    expect(w.scope).toBe('address');
    waits.push(w.waitMs);
    c.tick(w.waitMs);
    expect(l.check('10.0.0.1').waitMs).toBe(0);
  }
  expect(waits).toEqual([1_000, 2_000, 4_000, 8_000, 8_000, 8_000]);
  // Another address is not held up.
  l.failed('10.0.0.1');
  expect(l.check('10.0.0.1').waitMs).toBe(8_000);
  expect(l.check('10.0.0.2')).toEqual({ waitMs: 0, scope: null });
  // A success starts the address afresh.
  c.tick(8_000);
  l.succeeded('10.0.0.1');
  for (let i = 0; i < 3; i++) l.failed('10.0.0.1');
  expect(l.check('10.0.0.1').waitMs).toBe(0);
});

test('waiting out the longest lock does not reset the address: it is forgotten only after forgetMs idle', () => {
  const c = clock();
  const l = new SigninLimiter({ free: 1, baseMs: 1_000, maxMs: 4_000, forgetMs: 60_000, now: c.now });
  l.failed('a');
  for (const want of [1_000, 2_000, 4_000, 4_000]) {
    l.failed('a');
    expect(l.check('a').waitMs).toBe(want);
    c.tick(want + 1);
  }
  // Idle for longer than the longest lock (but less than forgetMs): still at the cap.
  c.tick(10_000);
  l.failed('a');
  expect(l.check('a').waitMs).toBe(4_000);
  // Idle for longer than forgetMs: starts afresh with its free failure.
  c.tick(60_001);
  l.failed('a');
  expect(l.check('a').waitMs).toBe(0);
});

test('defaults: the longest lock is 15 min, an address is kept for 24 h', () => {
  const c = clock();
  const l = new SigninLimiter({ now: c.now, globalBurst: 1_000 });
  for (let i = 0; i < 5; i++) l.failed('a');
  let wait = 0;
  for (let i = 0; i < 12; i++) {
    l.failed('a');
    wait = l.check('a').waitMs;
    c.tick(wait + 1);
  }
  expect(wait).toBe(15 * 60_000);
  c.tick(15 * 60_000);
  l.failed('a');
  expect(l.check('a').waitMs).toBe(15 * 60_000);
  c.tick(24 * 3_600_000 + 1);
  l.failed('a');
  expect(l.check('a').waitMs).toBe(0);
});

test('overall, for password checks: many addresses empty the bucket; it holds addresses with failures on record, and refills with time', () => {
  const c = clock();
  const l = new SigninLimiter({ free: 100, globalBurst: 5, globalPerMinute: 60, now: c.now });
  for (let i = 0; i < 5; i++) {
    expect(l.checkPassword(`10.0.1.${i}`).waitMs).toBe(0);
    l.failed(`10.0.1.${i}`, { password: true });
  }
  expect(l.checkPassword('10.0.1.0')).toEqual({ waitMs: 1_000, scope: 'global' });
  // The per-address check (the token) and an address that never failed are not held.
  expect(l.check('10.0.1.0')).toEqual({ waitMs: 0, scope: null });
  expect(l.checkPassword('10.0.9.9')).toEqual({ waitMs: 0, scope: null });
  c.tick(500);
  expect(l.checkPassword('10.0.1.0')).toEqual({ waitMs: 500, scope: 'global' });
  c.tick(500);
  expect(l.checkPassword('10.0.1.0')).toEqual({ waitMs: 0, scope: null });
  // A wrong token (no password check) takes nothing from the bucket.
  l.failed('10.0.1.0');
  expect(l.checkPassword('10.0.1.0')).toEqual({ waitMs: 0, scope: null });
  // A success clears the address: it no longer waits for the bucket.
  l.failed('10.0.1.1', { password: true });
  expect(l.checkPassword('10.0.1.1').scope).toBe('global');
  l.succeeded('10.0.1.1');
  expect(l.checkPassword('10.0.1.1')).toEqual({ waitMs: 0, scope: null });
});

test('while the table of addresses is full, every address waits for the bucket', () => {
  const c = clock();
  const l = new SigninLimiter({ free: 100, globalBurst: 3, globalPerMinute: 1, maxAddresses: 3, now: c.now });
  for (const a of ['a', 'b', 'c']) l.failed(a, { password: true });
  expect(l.checkPassword('never-failed')).toEqual({ waitMs: 60_000, scope: 'global' });
  expect(l.check('never-failed')).toEqual({ waitMs: 0, scope: null });
});

test('an IPv6 address counts as its /64; an IPv4-mapped one as its IPv4 address', () => {
  expect(addressKey('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
  expect(addressKey('2001:0db8:0001:0002:ffff:1:2:3')).toBe('2001:db8:1:2::/64');
  expect(addressKey('2001:db8::7')).toBe('2001:db8:0:0::/64');
  expect(addressKey('::1')).toBe('0:0:0:0::/64');
  expect(addressKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
  expect(addressKey('::ffff:10.1.2.3')).toBe('10.1.2.3');
  expect(addressKey('10.1.2.3')).toBe('10.1.2.3');
  const c = clock();
  const l = new SigninLimiter({ free: 2, baseMs: 1_000, now: c.now });
  // Rotating through one /64 does not bring fresh free failures.
  for (let i = 1; i <= 3; i++) l.failed(`2001:db8:1:2::${i.toString(16)}`);
  expect(l.check('2001:db8:1:2:ffff::99')).toEqual({ waitMs: 1_000, scope: 'address' });
  expect(l.check('2001:db8:1:3::1')).toEqual({ waitMs: 0, scope: null });
});

test('the addresses remembered are bounded: the longest idle go first', () => {
  const c = clock();
  const l = new SigninLimiter({ free: 0, baseMs: 1_000, maxMs: 60_000, maxAddresses: 3, globalBurst: 1000, now: c.now });
  for (const a of ['a', 'b', 'c', 'd']) {
    l.failed(a);
    c.tick(1);
  }
  // 'a' was dropped to make room for 'd'; the others are still locked out.
  expect(l.check('a').waitMs).toBe(0);
  expect(l.check('b').scope).toBe('address');
  expect(l.check('d').scope).toBe('address');
});
