import { test, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import {
  chmodSync, closeSync, constants as fsConstants, existsSync, openSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync,
  renameSync, rmSync, statSync, utimesSync, writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileOutput, type FsyncPolicy } from '../../src/outputs/file/file.js';
import { FILE_FIELDS } from '../../src/outputs/file/config.js';
import { loadFields } from '../../src/config/load.js';
import { listRotated, rotatedPath, rotationStamp } from '../../src/outputs/file/rotate.js';
import type { Batch } from '../../src/outputs/types.js';
import { waitFor } from '../helpers/daemon.js';

let root: string;
let seq = 0;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'cefd-output-file-'));
});
afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

/** A fresh directory per test. */
function dir(): string {
  const d = join(root, `t${++seq}`);
  mkdirSync(d);
  return d;
}

/** `n` records of about `size` bytes each, with multi-byte UTF-8 in them. */
function records(n: number, tag: string, size = 700): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const base = { tag, i, msg: 'Détection: 木马 🐛 "quoted" \\ back', pad: '' };
    const len = Buffer.byteLength(JSON.stringify(base));
    base.pad = 'x'.repeat(Math.max(0, size - len));
    out.push(JSON.stringify(base));
  }
  return out;
}
const batch = (r: string[]): Batch => ({ records: r });
const ndjson = (r: string[]) => r.map((x) => x + '\n').join('');
const read = (p: string) => readFileSync(p, 'utf8');

/** The options as a config file would give them: checked and defaulted by the schema. */
const cfg = (raw: Record<string, unknown>) => loadFields(FILE_FIELDS, raw);

async function started(raw: Record<string, unknown>, now?: () => number): Promise<FileOutput> {
  const out = new FileOutput('test', cfg(raw), now ? { now } : {});
  await out.start();
  return out;
}

/** All lines of the rotated files (oldest first) then the current file. */
async function allWritten(path: string): Promise<string> {
  const rotated = await listRotated(path);
  return rotated.map((f) => read(f.path)).join('') + (existsSync(path) ? read(path) : '');
}

function expectWholeLines(text: string): void {
  expect(text === '' || text.endsWith('\n')).toBe(true);
  for (const line of text.split('\n').slice(0, -1)) expect(() => JSON.parse(line)).not.toThrow();
}

test('writes every record once, in order, byte-exact, creating parent directories', async () => {
  const path = join(dir(), 'a', 'b', 'events.ndjson');
  const out = await started({ path });
  const a = records(500, 'a');
  const b = records(3, 'b', 50);
  expect(await out.send(batch(a))).toEqual({ status: 'delivered' });
  expect(await out.send(batch([]))).toEqual({ status: 'delivered' });
  expect(await out.send(batch(b))).toEqual({ status: 'delivered' });
  await out.close();
  const bytes = readFileSync(path);
  expect(bytes.equals(Buffer.from(ndjson([...a, ...b]), 'utf8'))).toBe(true);
  expect(statSync(path).mode & 0o777).toBe(0o640 & ~process.umask());
});

test('the mode option sets the permissions of a new file', async () => {
  const path = join(dir(), 'events.ndjson');
  const out = await started({ path, mode: 0o600 });
  await out.send(batch(records(1, 'x')));
  await out.close();
  expect(statSync(path).mode & 0o777).toBe(0o600 & ~process.umask());
});

test('appends across restarts and keeps what the file held', async () => {
  const path = join(dir(), 'events.ndjson');
  writeFileSync(path, '{"before":true}\n');
  const a = records(10, 'a');
  const b = records(10, 'b');
  const first = await started({ path });
  expect((await first.send(batch(a))).status).toBe('delivered');
  await first.close();
  const second = await started({ path });
  expect((await second.send(batch(b))).status).toBe('delivered');
  await second.close();
  expect(read(path)).toBe('{"before":true}\n' + ndjson([...a, ...b]));
});

test('send before start and after close report retry, never throw', async () => {
  const path = join(dir(), 'events.ndjson');
  const out = new FileOutput('early', cfg({ path }));
  const before = await out.send(batch(records(1, 'x')));
  expect(before.status).toBe('retry');
  await out.start();
  await out.close();
  const after = await out.send(batch(records(1, 'x')));
  expect(after.status).toBe('retry');
  if (after.status === 'retry') expect(after.error).toMatch(/closed/);
  expect(read(path)).toBe('');
});

test('size rotation: no record split or lost, timestamped names with counters', async () => {
  const d = dir();
  const path = join(d, 'events.ndjson');
  const t = Date.UTC(2026, 10, 28, 10, 15, 0);
  const max = 5000;
  const out = await started({ path, rotate_max_bytes: max }, () => t);
  const all: string[] = [];
  const sizes = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3];
  for (let k = 0; k < sizes.length; k++) {
    const r = records(sizes[k]!, `s${k}`);
    all.push(...r);
    expect((await out.send(batch(r))).status).toBe('delivered');
  }
  await out.close();

  expect(await allWritten(path)).toBe(ndjson(all));
  const rotated = await listRotated(path);
  expect(rotated.length).toBeGreaterThanOrEqual(4);
  expect(rotated[0]!.path).toBe(join(d, 'events-20261128T101500Z.ndjson'));
  expect(rotated[1]!.path).toBe(join(d, 'events-20261128T101500Z-1.ndjson'));
  expect(rotated[2]!.path).toBe(join(d, 'events-20261128T101500Z-2.ndjson'));
  for (const f of [...rotated.map((x) => x.path), path]) {
    const text = read(f);
    expectWholeLines(text);
    // Only a file holding a single batch may exceed the limit (the 9-record batch).
    const size = Buffer.byteLength(text);
    if (size > max) expect(text.split('\n').length - 1).toBe(9);
  }
});

test('a batch larger than rotate_max_bytes is written whole to one file', async () => {
  const path = join(dir(), 'events.ndjson');
  const out = await started({ path, rotate_max_bytes: 1000 });
  const small = records(1, 'small', 300);
  const big = records(20, 'big');
  await out.send(batch(small));
  expect((await out.send(batch(big))).status).toBe('delivered');
  await out.close();
  expect(read(path)).toBe(ndjson(big));
  const rotated = await listRotated(path);
  expect(rotated.map((f) => read(f.path))).toEqual([ndjson(small)]);
});

test('max_files keeps the newest rotated files and touches nothing else', async () => {
  const d = dir();
  const path = join(d, 'events.ndjson');
  const unrelated = ['events-notes.txt', 'other-20261128T101500Z.ndjson', 'events-20261128T101500Z.ndjson.gz', 'events.ndjson.1'];
  for (const u of unrelated) writeFileSync(join(d, u), 'keep me');
  let t = Date.UTC(2026, 10, 28, 10, 0, 0);
  const out = await started({ path, rotate_max_bytes: 1, max_files: 2 }, () => t);
  const batches: string[][] = [];
  for (let k = 0; k < 6; k++) {
    t += 1000;
    const r = records(2, `m${k}`, 100);
    batches.push(r);
    expect((await out.send(batch(r))).status).toBe('delivered');
  }
  await out.close();
  const rotated = await listRotated(path);
  expect(rotated.map((f) => f.path)).toEqual([
    join(d, 'events-20261128T100005Z.ndjson'),
    join(d, 'events-20261128T100006Z.ndjson'),
  ]);
  expect(rotated.map((f) => read(f.path))).toEqual([ndjson(batches[3]!), ndjson(batches[4]!)]);
  expect(read(path)).toBe(ndjson(batches[5]!));
  for (const u of unrelated) expect(read(join(d, u))).toBe('keep me');
});

test('max_files also prunes at start', async () => {
  const d = dir();
  const path = join(d, 'events.ndjson');
  for (let s = 0; s < 5; s++) writeFileSync(rotatedPath(path, rotationStamp(Date.UTC(2026, 0, 1, 0, 0, s))), `${s}\n`);
  writeFileSync(rotatedPath(path, rotationStamp(Date.UTC(2026, 0, 1, 0, 0, 4)), 1), '4-1\n');
  const out = await started({ path, max_files: 3 });
  await out.close();
  expect((await listRotated(path)).map((f) => read(f.path))).toEqual(['3\n', '4\n', '4-1\n']);
});

test('time rotation: a write in a new period rotates first (injected clock)', async () => {
  const d = dir();
  const path = join(d, 'events.ndjson');
  let t = Date.UTC(2026, 10, 28, 10, 15, 0);
  const out = await started({ path, rotate_interval: 3600 }, () => t);
  const a = records(3, 'a');
  const b = records(3, 'b');
  const c = records(3, 'c');
  await out.send(batch(a));
  t = Date.UTC(2026, 10, 28, 10, 59, 59, 999);
  await out.send(batch(b));
  expect(await listRotated(path)).toEqual([]);
  t = Date.UTC(2026, 10, 28, 11, 0, 0);
  await out.send(batch(c));
  await out.close();
  const rotated = await listRotated(path);
  expect(rotated.map((f) => f.path)).toEqual([join(d, 'events-20261128T110000Z.ndjson')]);
  expect(read(rotated[0]!.path)).toBe(ndjson([...a, ...b]));
  expect(read(path)).toBe(ndjson(c));
});

test('time rotation: a file left from an earlier period is rotated at the first write after a restart', async () => {
  const d = dir();
  const path = join(d, 'events.ndjson');
  writeFileSync(path, '{"old":1}\n');
  const mtime = new Date(Date.UTC(2026, 10, 27, 23, 30, 0));
  utimesSync(path, mtime, mtime);
  const t = Date.UTC(2026, 10, 28, 0, 10, 0);
  const out = await started({ path, rotate_interval: 86400 }, () => t);
  const a = records(2, 'a');
  await out.send(batch(a));
  await out.close();
  const rotated = await listRotated(path);
  expect(rotated.map((f) => read(f.path))).toEqual(['{"old":1}\n']);
  expect(read(path)).toBe(ndjson(a));
});

test('time rotation: an idle file is rotated by the timer at the end of its period; an empty one is not', async () => {
  const path = join(dir(), 'events.ndjson');
  const out = await started({ path, rotate_interval: 1 });
  const a = records(2, 'a');
  await out.send(batch(a));
  // The timer renames the file, then opens a new one at `path`: wait for both steps.
  await waitFor(async () => (await listRotated(path)).length > 0 && existsSync(path), 30_000, 'the idle file rotated and a new one open');
  const rotated = await listRotated(path);
  expect(rotated.length).toBe(1);
  expect(read(rotated[0]!.path)).toBe(ndjson(a));
  expect(read(path)).toBe('');
  // Let at least one more period end: the empty file stays.
  await new Promise((r) => setTimeout(r, 1200));
  expect((await listRotated(path)).length).toBe(1);
  const b = records(1, 'b');
  await out.send(batch(b));
  await out.close();
  expect(await allWritten(path)).toBe(ndjson([...a, ...b]));
});

test('reopen after logrotate moved the file: new writes go to a new file, the old one is intact', async () => {
  const d = dir();
  const path = join(d, 'events.ndjson');
  const out = await started({ path });
  const a = records(5, 'a');
  const b = records(5, 'b');
  const c = records(5, 'c');
  await out.send(batch(a));
  renameSync(path, join(d, 'events.ndjson.1'));
  await out.send(batch(b)); // before the SIGHUP: still the moved file
  expect(existsSync(path)).toBe(false);
  await out.reopen();
  await out.send(batch(c));
  await out.close();
  expect(read(join(d, 'events.ndjson.1'))).toBe(ndjson([...a, ...b]));
  expect(read(path)).toBe(ndjson(c));
});

test('size rotation after logrotate moved the file reopens without renaming the moved file', async () => {
  const d = dir();
  const path = join(d, 'events.ndjson');
  const out = await started({ path, rotate_max_bytes: 2000 });
  const a = records(2, 'a');
  const b = records(2, 'b');
  await out.send(batch(a));
  renameSync(path, join(d, 'moved.ndjson'));
  await out.send(batch(b)); // over the limit: rotation finds `path` gone, opens a new one
  await out.close();
  expect(read(join(d, 'moved.ndjson'))).toBe(ndjson(a));
  expect(read(path)).toBe(ndjson(b));
  expect(await listRotated(path)).toEqual([]);
});

test('reopen while a batch is being written loses nothing', async () => {
  const path = join(dir(), 'events.ndjson');
  const out = await started({ path });
  const a = records(300, 'a');
  const b = records(300, 'b');
  const [ra, , rb] = await Promise.all([out.send(batch(a)), out.reopen(), out.send(batch(b))]);
  expect(ra.status).toBe('delivered');
  expect(rb.status).toBe('delivered');
  await out.close();
  expect(read(path)).toBe(ndjson([...a, ...b]));
});

test('when the path cannot be opened, reopen rejects and send reports retry until it can', async () => {
  const d = dir();
  const sub = join(d, 'sub');
  const path = join(sub, 'events.ndjson');
  const out = await started({ path });
  const a = records(2, 'a');
  const b = records(2, 'b');
  await out.send(batch(a));
  renameSync(sub, join(d, 'sub.old'));
  writeFileSync(sub, 'a file where the directory was');
  await expect(out.reopen()).rejects.toThrow(/cannot reopen .*events\.ndjson/);
  const r = await out.send(batch(b));
  expect(r.status).toBe('retry');
  if (r.status === 'retry') expect(r.error).toMatch(/cannot open.*(ENOTDIR|EEXIST)/);
  rmSync(sub);
  expect((await out.send(batch(b))).status).toBe('delivered');
  await out.close();
  expect(read(join(d, 'sub.old', 'events.ndjson'))).toBe(ndjson(a));
  expect(read(path)).toBe(ndjson(b));
});

test('fsync interval: a failed fsync is reported for the records it concerns, and the next (healthy) batch is written, not retried', async () => {
  // A FIFO: writes go through, fdatasync fails (EINVAL: a FIFO cannot be synced), a real failing fsync.
  const path = join(dir(), 'fifo.ndjson');
  execFileSync('mkfifo', [path]);
  const reader = openSync(path, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  try {
    const out = await started({ path, fsync: 'interval', fsync_interval: '5ms' });
    let written = 3;
    let reported = 0;
    expect(await out.send(batch(records(3, 'a', 50)))).toEqual({ status: 'delivered' });
    // The interval fsync runs and fails; a later batch is written and carries the report.
    let res: Awaited<ReturnType<FileOutput['send']>> = { status: 'delivered' };
    await waitFor(async () => {
      res = await out.send(batch(records(1, 'b', 50)));
      written++;
      reported += res.problem?.events ?? 0;
      return res.status !== 'delivered' || res.problem !== undefined;
    }, 30_000, 'the fsync failure reported');
    expect(res.status).toBe('delivered');
    expect(res.problem).toMatchObject({ reason: 'file_fsync_failed' });
    expect(res.problem!.error).toMatch(/an fsync failed \(.*EINVAL.*\)/);
    // What was written after that is reported by a later send or at close: each record once.
    const last = await out.send(batch(records(1, 'c', 50)));
    expect(last.status).toBe('delivered');
    written++;
    reported += last.problem?.events ?? 0;
    const report = await out.close();
    expect(report.abandoned).toMatchObject({ reason: 'file_fsync_failed' });
    reported += report.abandoned!.events;
    expect(reported).toBe(written);
  } finally {
    closeSync(reader);
  }
});

for (const fsync of ['never', 'batch', 'interval'] as FsyncPolicy[]) {
  test(`fsync policy ${fsync}: writes, rotation, reopen and close keep every record`, async () => {
    const path = join(dir(), 'events.ndjson');
    const out = await started({ path, fsync, fsync_interval: '5ms', rotate_max_bytes: 20_000, max_files: 0 });
    const all: string[] = [];
    for (let k = 0; k < 12; k++) {
      const r = records(7, `f${k}`);
      all.push(...r);
      expect((await out.send(batch(r))).status).toBe('delivered');
      if (k === 5) await out.reopen();
      if (k % 4 === 0) await new Promise((res) => setTimeout(res, 15)); // let the interval fsync run
    }
    await out.close();
    expect(await allWritten(path)).toBe(ndjson(all));
    expect((await listRotated(path)).length).toBeGreaterThan(0);
  });
}

test('start rejects with a clear message when the path is under a regular file', async () => {
  const d = dir();
  writeFileSync(join(d, 'plain'), 'x');
  const out = new FileOutput('bad', cfg({ path: join(d, 'plain', 'events.ndjson') }));
  await expect(out.start()).rejects.toThrow(/file output bad: cannot open .*plain\/events\.ndjson: .*(ENOTDIR|EEXIST)/);
});

test('a start that fails while removing a torn last line leaves no file descriptor open, and a later start works', async () => {
  const d = dir();
  const path = join(d, 'events.ndjson');
  // A torn last line that cannot be cut: the file is append-only (chattr +a; ext4, as root),
  // so ftruncate fails with EPERM.
  writeFileSync(path, '{"a":1}\n{"b":');
  execFileSync('chattr', ['+a', path]);
  // Descriptors of this process open on the file (other descriptors come and go with the
  // test runner and earlier tests' closes, so a plain count is not exact).
  const fds = () => readdirSync('/proc/self/fd').filter((fd) => {
    try { return readlinkSync(`/proc/self/fd/${fd}`) === path; } catch { return false; }
  }).length;
  try {
    const out = new FileOutput('torn', cfg({ path }));
    for (let i = 0; i < 20; i++) await expect(out.start()).rejects.toThrow(/file output torn: cannot open .*events\.ndjson: .*EPERM/);
    expect(fds()).toBe(0);
    execFileSync('chattr', ['-a', path]);
    await out.start();
    expect(fds()).toBe(1); // the count sees the output's own descriptor
    expect(out.tornBytes).toBe(5);
    expect(await out.send(batch(['{"c":2}']))).toEqual({ status: 'delivered' });
    await out.close();
    expect(read(path)).toBe('{"a":1}\n{"c":2}\n');
    expect(fds()).toBe(0);
  } finally {
    execFileSync('chattr', ['-a', path]);
  }
});

test('invalid options are refused when the config loads', async () => {
  const path = join(dir(), 'events.ndjson');
  // Option kinds and ranges are the schema's (config.ts), checked when the config loads.
  expect(() => cfg({ path, fsync: 'always' })).toThrow(/fsync: expected one of never, batch, interval/);
  expect(() => cfg({ path, rotate_max_bytes: -1 })).toThrow(/rotate_max_bytes: expected a size/);
  expect(() => cfg({ path, max_files: 1.5 })).toThrow(/max_files: expected an integer/);
  expect(() => cfg({ path, fsync_interval: 0 })).toThrow(/fsync_interval: must be at least/);
  expect(() => cfg({ path, mode: 0o1777 })).toThrow(/mode: must be at most/);
  expect(() => cfg({})).toThrow(/path: is required/);
});

test('a full disk (/dev/full) reports retry with ENOSPC', async () => {
  const out = await started({ path: '/dev/full' });
  const r = await out.send(batch(records(10, 'x')));
  expect(r.status).toBe('retry');
  if (r.status === 'retry') expect(r.error).toMatch(/ENOSPC/);
  await out.close();
});

test('a read-only directory: start rejects when not root (as root, the write succeeds)', async () => {
  const d = dir();
  const ro = join(d, 'ro');
  mkdirSync(ro);
  chmodSync(ro, 0o500);
  const out = new FileOutput('ro', cfg({ path: join(ro, 'events.ndjson') }));
  const isRoot = process.getuid?.() === 0;
  if (isRoot) {
    await out.start();
    expect((await out.send(batch(records(1, 'x')))).status).toBe('delivered');
    await out.close();
  } else {
    await expect(out.start()).rejects.toThrow(/EACCES/);
  }
  chmodSync(ro, 0o700);
});

/** Sets this process's soft file-size limit (RLIMIT_FSIZE) with prlimit(1). */
function setFsizeLimit(soft: string): void {
  execFileSync('prlimit', ['--pid', String(process.pid), `--fsize=${soft}:`]);
}

test('a write that fails part-way is truncated away: the retry does not duplicate a partial line', async () => {
  const path = join(dir(), 'events.ndjson');
  const original = execFileSync('prlimit', ['--pid', String(process.pid), '--fsize', '--output=SOFT', '--noheadings'], { encoding: 'utf8' }).trim();
  const out = await started({ path });
  const a = records(50, 'a'); // ~35 kB
  const b = records(50, 'b'); // ~35 kB: crosses the 64 KiB limit part-way
  const c = records(10, 'c'); // ~7 kB: fits below the limit
  expect((await out.send(batch(a))).status).toBe('delivered');
  setFsizeLimit('65536');
  let rb1, rb2, rc;
  try {
    rb1 = await out.send(batch(b));
    rb2 = await out.send(batch(b));
    rc = await out.send(batch(c));
  } finally {
    setFsizeLimit(original);
  }
  expect(rb1.status).toBe('retry');
  if (rb1.status === 'retry') {
    expect(rb1.error).toMatch(/EFBIG/);
    expect(rb1.error).toMatch(/bytes of the batch had been written; removed/);
  }
  expect(rb2.status).toBe('retry');
  expect(rc.status).toBe('delivered');
  expect(read(path)).toBe(ndjson([...a, ...c]));
  // The limit is gone: the runner's next retry of b succeeds, once.
  expect((await out.send(batch(b))).status).toBe('delivered');
  await out.close();
  expect(read(path)).toBe(ndjson([...a, ...c, ...b]));
});

test('a file left with a half-written last record (cefd killed mid-write) is cut back to its last full line at start', async () => {
  const path = join(dir(), 'events.ndjson');
  writeFileSync(path, '{"a":1}\n{"b":2}\n{"c":');
  const out = new FileOutput('t', cfg({ path }));
  await out.start();
  expect(await out.send({ records: ['{"d":4}'] })).toEqual({ status: 'delivered' });
  await out.close();
  expect(readFileSync(path, 'utf8')).toBe('{"a":1}\n{"b":2}\n{"d":4}\n');
  expect(out.tornBytes).toBe(5);
});

test('a disk-buffer batch is written from its bytes: its records are never decoded to strings (not even to count them)', async () => {
  const { BytesBatch } = await import('../../src/buffer/queue.js');
  let decoded = 0;
  class Watched extends BytesBatch {
    override get records(): readonly string[] {
      decoded++;
      return super.records;
    }
  }
  const recs = records(50, 'bytes');
  const bytes = Buffer.from(ndjson(recs));
  const half = bytes.indexOf(0x0a, bytes.length >> 1) + 1;
  const path = join(dir(), 'events.ndjson');
  for (const fsync of ['interval', 'batch', 'never'] as const) {
    const out = await started({ path, fsync });
    expect(await out.send(new Watched(recs.length, [bytes.subarray(0, half), bytes.subarray(half)]))).toEqual({ status: 'delivered' });
    await out.close();
  }
  expect(decoded).toBe(0);
  expect(read(path)).toBe(ndjson([...recs, ...recs, ...recs]));
  // The interval fsync's report counts a disk-buffer batch's records from its count: a FIFO
  // cannot be synced, so every record written is reported, once, at close.
  const fifo = join(dir(), 'fifo.ndjson');
  execFileSync('mkfifo', [fifo]);
  const reader = openSync(fifo, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  try {
    const out = await started({ path: fifo, fsync: 'interval', fsync_interval: '1h' });
    const small = records(30, 'fifo', 100);
    const body = Buffer.from(ndjson(small));
    const res = await out.send(new Watched(small.length, [body]));
    expect(res.status).toBe('delivered');
    const report = await out.close();
    expect(report.abandoned).toMatchObject({ reason: 'file_fsync_failed', events: 30 });
  } finally {
    closeSync(reader);
  }
  expect(decoded).toBe(0);
});
