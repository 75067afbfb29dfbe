#!/usr/bin/env node
// cluster.mjs: the cluster layout of docs/cluster.md on one host (loopback), runnable:
// haproxy (TCP) in front of 2 receivers (health check: /readyz), a 3-node JetStream
// cluster holding the R3 stream RAW, 2 processors writing events to files.
//
//   node deploy/cluster/cluster.mjs up <dir> [base-port]     write the configs and run everything
//                                                          (foreground; Ctrl-C stops all)
//   node deploy/cluster/cluster.mjs configs <dir> [base-port] only write the configs
//
// Ports (base B, default 24000): syslog in at B (haproxy); NATS clients B+1..3, routes
// B+11..13, monitoring B+21..23; receivers' TCP B+31..32 and metrics B+41..42; processors'
// metrics B+51..52. For several machines, copy the generated files and replace the
// 127.0.0.1 addresses (docs/cluster.md). The tests (test/faults/cluster.test.ts) import this file.
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../../dist/src/cli.js', import.meta.url));
export const NATS_SERVER = process.env.NATS_SERVER ?? '/usr/sbin/nats-server';
export const HAPROXY = process.env.HAPROXY ?? 'haproxy';

/** Writes every config under `dir` and returns the layout (names, ports, files). */
export function writeCluster(dir, base = 24000) {
  dir = resolve(dir);
  const nodes = [1, 2, 3].map((i) => ({ name: `n${i}`, port: base + i, route: base + 10 + i, http: base + 20 + i }));
  const receivers = [1, 2].map((i) => ({ name: `r${i}`, port: base + 30 + i, metrics: base + 40 + i }));
  const processors = [1, 2].map((i) => ({ name: `p${i}`, metrics: base + 50 + i }));
  const servers = nodes.map((n) => `"nats://127.0.0.1:${n.port}"`).join(', ');
  for (const n of nodes) {
    const d = join(dir, n.name);
    mkdirSync(d, { recursive: true });
    const routes = nodes.filter((o) => o !== n).map((o) => `nats-route://127.0.0.1:${o.route}`).join(', ');
    n.conf = join(d, 'nats.conf');
    writeFileSync(
      n.conf,
      `# JetStream node ${n.name} of the 3-node cluster "cefd" (docs/cluster.md)
server_name: ${n.name}
listen: 127.0.0.1:${n.port}
http: 127.0.0.1:${n.http}
jetstream { store_dir: "${join(d, 'store')}" }
cluster {
  name: cefd
  listen: 127.0.0.1:${n.route}
  routes: [ ${routes} ]
}
`,
    );
    n.cmd = [NATS_SERVER, '-c', n.conf];
  }
  for (const r of receivers) {
    const d = join(dir, r.name);
    mkdirSync(d, { recursive: true });
    r.dir = d;
    r.conf = join(d, 'cefd.yaml');
    writeFileSync(
      r.conf,
      `# Receiver ${r.name}: frames syslog/CEF and publishes raw frames to the R3 stream RAW.
mode: receiver
state_dir: ./state
listeners: [ { name: ksc, type: tcp, host: 127.0.0.1, port: ${r.port} } ]
outputs:
  - name: raw
    type: nats
    payload: frame
    servers: [ ${servers} ]
    subject: cefd.raw
    ack_timeout: 5s
    batch_max_events: 500
    retry: { initial_backoff: 100ms, max_backoff: 2s }
    buffer: { type: disk, max_size: 256MiB }
    stream: { create: true, name: RAW, replicas: 3, max_age: 7d, duplicate_window: 10m }
dead_letter: { path: ./dead.ndjson }
metrics: { host: 127.0.0.1, port: ${r.metrics} }
`,
    );
    r.cmd = [process.execPath, CLI, 'run', '--config', r.conf];
  }
  for (const p of processors) {
    const d = join(dir, p.name);
    mkdirSync(d, { recursive: true });
    p.dir = d;
    p.conf = join(d, 'cefd.yaml');
    p.sink = join(d, 'events.ndjson');
    writeFileSync(
      p.conf,
      `# Processor ${p.name}: reads raw frames from RAW (durable consumer "processors", shared), decodes, delivers.
state_dir: ./state
listeners:
  - { name: bus, type: nats, servers: [ ${servers} ], stream: RAW, consumer: processors, batch_size: 256, max_ack_pending: 4096, ack_wait: 30s }
outputs:
  - { name: events, type: file, path: ./events.ndjson, buffer: { type: disk } }
dead_letter: { path: ./dead.ndjson }
metrics: { host: 127.0.0.1, port: ${p.metrics} }
`,
    );
    p.cmd = [process.execPath, CLI, 'run', '--config', p.conf];
  }
  const haproxy = { name: 'haproxy', port: base, conf: join(dir, 'haproxy.cfg'), socket: join(dir, 'haproxy.sock') };
  writeFileSync(
    haproxy.conf,
    `# TCP load balancing of syslog senders over the receivers; a receiver whose /readyz is
# not 200 (starting, stopping, or unable to publish to JetStream) gets no new connections.
global
  maxconn 4000
  # \`show stat\` on this socket says which receivers are UP (the tests wait for both).
  stats socket ${haproxy.socket} mode 600 level operator
defaults
  mode tcp
  timeout connect 5s
  timeout client 1h
  timeout server 1h
  # A connection refused by a dead receiver is tried again on the other one, at once (every
  # retry may go to another receiver), with what the sender already wrote.
  retries 3
  option redispatch 1
frontend syslog
  bind 127.0.0.1:${base}
  default_backend receivers
backend receivers
  balance leastconn
  option httpchk GET /readyz
  http-check expect status 200
  # No on-marked-down shutdown-sessions: it closed a sender's connection that haproxy was
  # still trying to connect to a receiver just killed, with the sender's bytes in its buffer,
  # which the sender cannot tell from a delivery (a fault test lost 1000 events that way); a
  # receiver that is alive but not ready keeps its connections and buffers to disk.
  default-server inter 1s fall 2 rise 2
${receivers.map((r) => `  server ${r.name} 127.0.0.1:${r.port} check port ${r.metrics}`).join('\n')}
`,
  );
  haproxy.cmd = [HAPROXY, '-db', '-f', haproxy.conf];
  return { dir, base, nodes, receivers, processors, haproxy };
}

/** Starts one component (a node, receiver, processor or haproxy); `log` collects its output. */
export function startComponent(c) {
  const cwd = c.dir ?? undefined;
  const proc = spawn(c.cmd[0], c.cmd.slice(1), { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  c.proc = proc;
  c.log ??= [];
  proc.stdout.on('data', (b) => c.log.push(b.toString()));
  proc.stderr.on('data', (b) => c.log.push(b.toString()));
  c.exit = new Promise((r) => proc.once('exit', r));
  return proc;
}

/** Status of each receiver as haproxy sees it (`UP`, `DOWN`, ...), from its stats socket. */
export function haproxyServers(h) {
  return new Promise((resolve) => {
    const sock = net.connect(h.socket);
    let text = '';
    sock.on('data', (b) => (text += b));
    sock.on('error', () => resolve({}));
    sock.on('end', () => {
      const out = {};
      for (const row of text.split('\n')) {
        const f = row.split(',');
        if (f[0] === 'receivers' && f[1] !== 'BACKEND' && f[1] !== 'FRONTEND' && f[1] !== undefined) out[f[1]] = f[17];
      }
      resolve(out);
    });
    sock.once('connect', () => sock.write('show stat\n'));
  });
}

/** Stops a component with `signal` and waits for it to exit. */
export async function stopComponent(c, signal = 'SIGTERM') {
  const p = c.proc;
  if (p === undefined || p.exitCode !== null || p.signalCode !== null) return;
  p.kill(signal);
  await c.exit;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [cmd, dir, base] = process.argv.slice(2);
  if ((cmd !== 'up' && cmd !== 'configs') || dir === undefined) {
    console.error('usage: cluster.mjs up|configs <dir> [base-port]');
    process.exit(64);
  }
  const l = writeCluster(dir, base === undefined ? 24000 : Number(base));
  console.log(`configs written under ${l.dir}`);
  if (cmd === 'up') {
    const all = [...l.nodes, ...l.receivers, ...l.processors, l.haproxy];
    for (const c of all) {
      startComponent(c);
      c.proc.stdout.pipe(process.stdout);
      c.proc.stderr.pipe(process.stderr);
    }
    console.log(`send syslog to 127.0.0.1:${l.base}; events land in ${l.processors.map((p) => p.sink).join(', ')}`);
    const stop = async () => {
      for (const c of [l.haproxy, ...l.receivers, ...l.processors, ...l.nodes]) await stopComponent(c);
      process.exit(0);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  }
}
