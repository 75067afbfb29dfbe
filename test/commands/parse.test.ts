/**
 * `cefd parse` (src/commands/parse.ts) as a child process on real files: an input that ends
 * right after an octet count is reported as the daemon dead-letters the same bytes at a
 * connection's end (frame_incomplete_at_close, the count as the raw bytes), not dropped.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { CLI } from '../helpers/child.js';
import { readNdjson, sendTcp, startDaemon, tempDir, waitFor, type TestDaemon } from '../helpers/daemon.js';

const FRAME = '<14>1 2026-11-28T10:00:00.000Z ksc01 - - - - CEF:0|KasperskyLab|SecurityCenter|14.2|KLPRCI_TaskState|Running|1|cnt=1';
const octet = (s: string) => `${Buffer.byteLength(s)} ${s}`;

let daemons: TestDaemon[] = [];
afterEach(async () => {
  await Promise.all(daemons.map((d) => d.stop()));
  daemons = [];
});

function parse(files: string[]): { status: number | null; records: Record<string, unknown>[]; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, 'parse', '--no-normalize', ...files], { encoding: 'utf8' });
  return { status: r.status, stderr: r.stderr, records: r.stdout.trim().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>) };
}

test('a file ending right after an octet count: the count is reported as frame_incomplete_at_close, exit 1; each input on its own', () => {
  const dir = tempDir();
  const cut = join(dir, 'cut.log');
  // One whole octet-counted frame, then the count of a frame whose bytes never came.
  writeFileSync(cut, `${octet(FRAME)}${Buffer.byteLength(FRAME)} `);
  const r = parse([cut]);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(1);
  expect(r.records).toHaveLength(2);
  expect((r.records[0]!['cef'] as Record<string, unknown>)['name']).toBe('Running');
  expect(r.records[1]).toEqual({
    error: { code: 'frame_incomplete_at_close', message: 'the input ended after an octet count, before its frame' },
    truncated: true,
    raw: `${Buffer.byteLength(FRAME)} `,
  });

  // The next file is framed afresh: the count left at the end of the first is not joined to it.
  const whole = join(dir, 'whole.log');
  writeFileSync(whole, octet(FRAME));
  const both = parse([cut, whole]);
  expect(both.status).toBe(1);
  expect(both.records.map((x) => (x['error'] as { code?: string } | undefined)?.code ?? 'event')).toEqual(['event', 'frame_incomplete_at_close', 'event']);

  // Only whole frames: exit 0, nothing reported.
  const ok = parse([whole]);
  expect(ok.status).toBe(0);
  expect(ok.records).toHaveLength(1);
});

test('the daemon dead-letters the same bytes with the same code and raw bytes', async () => {
  const d = await startDaemon(`
state_dir: "{dir}/state"
decode_workers: 0
listeners: [ { name: tcp, type: tcp, host: 127.0.0.1, port: 0 } ]
outputs: [ { name: events, type: file, path: "{dir}/events.ndjson" } ]
dead_letter: { path: "{dir}/dead.ndjson" }
metrics: { enabled: false }
`);
  daemons.push(d);
  const bytes = `${octet(FRAME)}${Buffer.byteLength(FRAME)} `;
  await sendTcp(d.port('tcp'), [bytes]);
  await waitFor(() => readNdjson(join(d.dir, 'dead.ndjson'), { tolerateTornTail: true }).length === 1, 30_000, 'the dead letter');
  const dead = readNdjson(join(d.dir, 'dead.ndjson'))[0]!;
  const file = join(d.dir, 'same.log');
  writeFileSync(file, bytes);
  const parsed = parse([file]).records[1]!;
  expect(parsed['error']).toMatchObject({ code: dead['reason'] });
  expect(parsed['raw']).toBe(dead['raw']);
  expect(parsed['truncated']).toBe(dead['truncated']);
});
