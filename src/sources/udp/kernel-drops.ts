/**
 * The datagrams the kernel dropped for one UDP socket because its receive buffer was full:
 * the `drops` column of /proc/self/net/udp (udp6 for IPv6 sockets), in the row of the
 * socket's port whose inode is one of this process's descriptors (/proc/self/fd/<fd> names
 * them `socket:[inode]`). Linux only; elsewhere there is no reader (and the reason why). The column
 * counts from the socket's creation, so a socket systemd kept across restarts carries its
 * earlier drops.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/** A reader of the kernel drop count of this process's UDP socket bound to `port`, or why there can be none. */
export function kernelDropReader(port: number, family: 4 | 6): { read: () => number } | { why: string } {
  // This process's sockets (their inodes), so that another process's socket on the same
  // port (SO_REUSEPORT) is not taken for ours.
  const own = new Set<string>();
  try {
    for (const fd of readdirSync('/proc/self/fd')) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
        if (m !== null) own.add(m[1]!);
      } catch {
        // Closed meanwhile.
      }
    }
  } catch (e) {
    return { why: `cannot list /proc/self/fd: ${(e as Error).message}` };
  }
  // /proc/self/net, not /proc/net: the unit's ProcSubset=pid hides /proc/net (deploy/cefd.service).
  // A dual-stack IPv6 socket is listed in udp6; look in both, the family's first.
  const tables = family === 6 ? ['/proc/self/net/udp6', '/proc/self/net/udp'] : ['/proc/self/net/udp', '/proc/self/net/udp6'];
  for (const table of tables) {
    const inode = inodeOnPort(table, port, own);
    if (inode === undefined) continue;
    let last = 0;
    return {
      read: () => {
        // Once the socket is gone from the table (closed), its last count stays.
        last = dropsIn(table, inode) ?? last;
        return last;
      },
    };
  }
  return { why: `no socket of this process on port ${port} in ${tables.join(' or ')}` };
}

/** The inode of the row of `table` whose local port is `port` and whose inode is one of `own`. */
function inodeOnPort(table: string, port: number, own: ReadonlySet<string>): string | undefined {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  return rowsOf(table)?.find((cols) => cols[1]!.endsWith(`:${hexPort}`) && own.has(cols[9]!))?.[9];
}

/** The `drops` column (the last) of the row of `inode` in a /proc/net/udp table. */
function dropsIn(table: string, inode: string): number | undefined {
  const row = rowsOf(table)?.find((cols) => cols[9] === inode);
  const n = row === undefined ? NaN : Number(row[row.length - 1]);
  return Number.isFinite(n) ? n : undefined;
}

/**
 * The socket rows of a /proc/net/udp table, split into columns (sl local_address
 * rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ref pointer
 * drops); undefined when it cannot be read.
 */
function rowsOf(table: string): string[][] | undefined {
  let text: string;
  try {
    text = readFileSync(table, 'utf8');
  } catch {
    return undefined;
  }
  return text
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter((cols) => cols.length >= 13);
}
