/**
 * The datagrams the kernel dropped for one UDP socket because its receive buffer was full:
 * the `drops` column of /proc/self/net/udp (udp6 for IPv6 sockets), found by the socket's inode
 * (/proc/self/fd/<fd> names it `socket:[inode]`). Linux only; elsewhere, or when the
 * socket's descriptor cannot be found, there is no reader. The column counts from the
 * socket's creation, so a socket systemd kept across restarts carries its earlier drops.
 */
import { readFileSync, readlinkSync } from 'node:fs';
import type dgram from 'node:dgram';

/** A reader of `socket`'s kernel drop count, or undefined where it cannot be read. */
export function kernelDropReader(socket: dgram.Socket, family: 4 | 6): (() => number) | undefined {
  // The descriptor of a bound socket (Node keeps it on its handle; there is no public API).
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return undefined;
  let inode: string;
  try {
    const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
    if (m === null) return undefined;
    inode = m[1]!;
  } catch {
    return undefined;
  }
  // /proc/self/net, not /proc/net: the unit's ProcSubset=pid hides /proc/net (deploy/cefd.service).
  const table = family === 6 ? '/proc/self/net/udp6' : '/proc/self/net/udp';
  if (dropsIn(table, inode) === undefined) return undefined;
  let last = 0;
  return () => {
    // Once the socket is gone from the table (closed), its last count stays.
    last = dropsIn(table, inode) ?? last;
    return last;
  };
}

/** The `drops` column (the last) of the row of `inode` in a /proc/net/udp table. */
export function dropsIn(table: string, inode: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(table, 'utf8');
  } catch {
    return undefined;
  }
  // Columns: sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ref pointer drops
  for (const line of text.split('\n')) {
    const cols = line.trim().split(/\s+/);
    if (cols.length >= 13 && cols[9] === inode) {
      const n = Number(cols[cols.length - 1]);
      return Number.isFinite(n) ? n : undefined;
    }
  }
  return undefined;
}
