/**
 * Sockets handed over by systemd (socket activation, sd_listen_fds(3)): with
 * deploy/cefd.socket, systemd holds the listening sockets, so connections that arrive
 * while cefd restarts or is upgraded wait in the kernel's backlog (UDP datagrams in the
 * socket's receive buffer) instead of being refused.
 *
 * The protocol: LISTEN_PID is our pid, LISTEN_FDS the number of sockets, passed as file
 * descriptors 3, 4, ...; LISTEN_FDNAMES (optional) their names, colon-separated
 * (FileDescriptorName= in the socket unit). A listener takes the socket named like it
 * (and of its protocol); otherwise the socket of its protocol (TCP for tcp and tls, UDP
 * for udp) bound to its port, read from /proc/self/net. Each socket is taken once: closing it
 * (a listener stopped) closes cefd's only copy, while systemd keeps the port bound, so a
 * reload that would reopen such a listener is refused (see holdsInheritedSocket).
 */
import { readFileSync, readlinkSync } from 'node:fs';

const SD_LISTEN_FDS_START = 3;

interface Inherited {
  fd: number;
  name: string;
  /** From /proc/self/net: protocol, family and port; undefined where /proc cannot tell. */
  proto?: 'tcp' | 'udp';
  family?: 4 | 6;
  port?: number;
  /** The listener that took it (empty: none yet). */
  takenBy: string;
}

let inherited: Inherited[] | undefined;

/**
 * Socket inodes in /proc/self/net/{tcp,tcp6,udp,udp6}: inode -> protocol, family, local
 * port. /proc/self/net, not /proc/net: deploy/cefd.service mounts /proc with
 * ProcSubset=pid, which hides every top-level entry but the process folders and self, so
 * /proc/net (a symlink to self/net) does not exist there.
 */
function procSockets(): Map<string, { proto: 'tcp' | 'udp'; family: 4 | 6; port: number }> {
  const out = new Map<string, { proto: 'tcp' | 'udp'; family: 4 | 6; port: number }>();
  for (const [file, proto, family] of [['tcp', 'tcp', 4], ['tcp6', 'tcp', 6], ['udp', 'udp', 4], ['udp6', 'udp', 6]] as const) {
    let text: string;
    try {
      text = readFileSync(`/proc/self/net/${file}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
      if (f.length < 10) continue;
      const port = parseInt(f[1]!.split(':')[1] ?? '', 16);
      if (Number.isInteger(port)) out.set(f[9]!, { proto, family, port });
    }
  }
  return out;
}

/** Reads and then unsets the environment (as sd_listen_fds(unset_environment=1) does). */
function load(env: NodeJS.ProcessEnv = process.env): Inherited[] {
  const pid = Number(env['LISTEN_PID']);
  const n = Number(env['LISTEN_FDS']);
  const names = (env['LISTEN_FDNAMES'] ?? '').split(':');
  delete env['LISTEN_PID'];
  delete env['LISTEN_FDS'];
  delete env['LISTEN_FDNAMES'];
  if (pid !== process.pid || !Number.isSafeInteger(n) || n <= 0) return [];
  const sockets = procSockets();
  const out: Inherited[] = [];
  for (let i = 0; i < n; i++) {
    const fd = SD_LISTEN_FDS_START + i;
    const s: Inherited = { fd, name: names[i] ?? '', takenBy: '' };
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
      const info = m === null ? undefined : sockets.get(m[1]!);
      if (info !== undefined) Object.assign(s, info);
    } catch {
      // no /proc: the socket can still be matched by name
    }
    out.push(s);
  }
  return out;
}

/**
 * The inherited listening socket for listener `name` (`proto` tcp or udp, `port` from its
 * configuration), or undefined when systemd passed none for it. The caller listens on
 * `{ fd }` instead of binding.
 */
export function inheritedSocket(name: string, proto: 'tcp' | 'udp', port: number): { fd: number; family?: 4 | 6 } | undefined {
  inherited ??= load();
  const free = inherited.filter((s) => s.takenBy === '' && (s.proto === undefined || s.proto === proto));
  const hit = free.find((s) => s.name === name) ?? free.find((s) => s.proto === proto && s.port === port && port !== 0);
  if (hit === undefined) return undefined;
  hit.takenBy = name;
  return hit.family === undefined ? { fd: hit.fd } : { fd: hit.fd, family: hit.family };
}

/** Inherited sockets no listener took (logged at start: a unit and a configuration that disagree). */
export function unusedInheritedSockets(): { fd: number; name: string; proto?: string; port?: number }[] {
  inherited ??= load();
  return inherited.filter((s) => s.takenBy === '').map(({ fd, name, proto, port }) => ({ fd, name, ...(proto === undefined ? {} : { proto }), ...(port === undefined ? {} : { port }) }));
}

/**
 * Whether listener `name` listens on a socket from systemd. Such a listener cannot be
 * reopened by a reload (its socket would be gone and its port still held by systemd):
 * changing it takes a restart, which socket activation makes lossless.
 */
export function holdsInheritedSocket(name: string): boolean {
  return inherited?.some((s) => s.takenBy === name) ?? false;
}
