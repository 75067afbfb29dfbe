/**
 * `cefd buffers [--config F] [--json]`: every disk buffer and spill file in the state
 * directory, whether a configured output uses it, and what it holds (src/buffer/inventory.ts).
 * `cefd buffers drop NAME [--config F]`: deletes an orphaned one (a buffer no configured
 * output uses), never one in use, never while a daemon runs on the state directory: it
 * holds the state directory's lock while it deletes (src/state-dir.ts), so no daemon can
 * start meanwhile either. Exit 0, 1 when refused or not found, 78 on a configuration error.
 */
import fs from 'node:fs';
import { relative } from 'node:path';
import type { Config } from '../config/types.js';
import { EXIT } from '../errors.js';
import { listBuffers, type BufferEntry } from '../buffer/inventory.js';
import { StateDirLockedError, lockStateDir, type StateDirLock } from '../state-dir.js';

export interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
}

async function config(file: string | undefined, io: Io): Promise<{ c: Config; owners: Set<string> } | number> {
  const { loadConfig, ConfigError } = await import('../config/load.js');
  const { diskBufferOwners } = await import('../topology.js');
  try {
    const c = loadConfig(file);
    return { c, owners: diskBufferOwners(c) };
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    io.err(`${e.message}\n`);
    return EXIT.config;
  }
}

/** Whether the output is configured at all (with a disk buffer or not). */
function configured(c: Config, name: string): boolean {
  return name === 'dead_letter' || c.outputs.some((o) => o.name === name);
}

function state(c: Config, owners: Set<string>, e: BufferEntry): string {
  if (owners.has(e.output)) return 'in use';
  return configured(c, e.output) ? 'orphaned (buffer.type memory)' : 'orphaned';
}

/** The buffers in `stateDir`, or an exit code after saying why they cannot be read (permissions: run as cefd's user). */
function read(stateDir: string, io: Io): BufferEntry[] | number {
  try {
    return listBuffers(stateDir);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    io.err(`cefd buffers: cannot read the disk buffers in ${stateDir}: ${err.code ?? ''} ${err.message} (run as the user cefd runs as)\n`);
    return EXIT.failure;
  }
}

export async function buffersList(file: string | undefined, json: boolean, io: Io): Promise<number> {
  const got = await config(file, io);
  if (typeof got === 'number') return got;
  const { c, owners } = got;
  const list = read(c.state_dir, io);
  if (typeof list === 'number') return list;
  const paths = (e: BufferEntry) => [e.dir, e.spill].filter((p) => p !== undefined).map((p) => relative(c.state_dir, p));
  if (json) {
    for (const e of list) {
      io.out(
        `${JSON.stringify({
          output: e.output,
          configured: configured(c, e.output),
          in_use: owners.has(e.output),
          records: e.records,
          bytes: e.bytes,
          disk_bytes: e.diskBytes,
          oldest: e.oldestMs !== undefined ? new Date(e.oldestMs).toISOString() : null,
          paths: paths(e),
        })}\n`,
      );
    }
    return EXIT.ok;
  }
  io.out(`state_dir ${c.state_dir}: ${list.length === 0 ? 'no disk buffers' : `${list.length} disk buffer${list.length === 1 ? '' : 's'}`}\n`);
  if (list.length === 0) return EXIT.ok;
  const rows = [['OUTPUT', 'STATE', 'RECORDS', 'BYTES', 'OLDEST', 'FILES'], ...list.map((e) => [e.output, state(c, owners, e), String(e.records), String(e.bytes), e.oldestMs !== undefined ? new Date(e.oldestMs).toISOString() : '-', paths(e).join(' ')])];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) io.out(`${r.map((v, i) => (i === r.length - 1 ? v : v.padEnd(widths[i]!))).join('  ')}\n`);
  const orphans = list.filter((e) => !owners.has(e.output) && e.records > 0);
  if (orphans.length > 0) {
    io.out(`\n${orphans.length} orphaned buffer${orphans.length === 1 ? ' holds' : 's hold'} undelivered events no configured output delivers: add the output back under its name to deliver them, or delete with cefd buffers drop NAME (docs/reliability.md).\n`);
  }
  return EXIT.ok;
}

export async function buffersDrop(file: string | undefined, name: string, io: Io): Promise<number> {
  const got = await config(file, io);
  if (typeof got === 'number') return got;
  const { c, owners } = got;
  if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
    io.err(`cefd buffers drop: ${JSON.stringify(name)} is not an output name\n`);
    return EXIT.usage;
  }
  const list = read(c.state_dir, io);
  if (typeof list === 'number') return list;
  const e = list.find((b) => b.output === name);
  if (e === undefined) {
    io.err(`cefd buffers drop: no disk buffer or spill file of output ${name} in ${c.state_dir} (cefd buffers lists them)\n`);
    return EXIT.failure;
  }
  if (owners.has(name)) {
    io.err(`cefd buffers drop: output ${name} is configured with a disk buffer: its buffer is in use and is not deleted. Remove the output from the configuration first.\n`);
    return EXIT.failure;
  }
  let lock: StateDirLock;
  try {
    lock = lockStateDir(c.state_dir);
  } catch (err) {
    if (err instanceof StateDirLockedError) {
      io.err(`cefd buffers drop: cefd${err.holder !== null ? ` (pid ${err.holder})` : ''} runs on ${c.state_dir}: stop it first (systemctl stop cefd).\n`);
      return EXIT.failure;
    }
    io.err(`cefd buffers drop: ${(err as Error).message}\n`);
    return EXIT.failure;
  }
  try {
    for (const p of [e.dir, e.spill, e.spill !== undefined ? `${e.spill}.tmp` : undefined]) if (p !== undefined) fs.rmSync(p, { recursive: true, force: true });
  } finally {
    lock.release();
  }
  io.out(`deleted the disk buffer of output ${name}: ${e.records} undelivered events (${e.bytes} bytes; ${e.diskBytes} bytes on disk freed)\n`);
  return EXIT.ok;
}
