/**
 * The PostgreSQL driver against a peer that stops answering. A real PostgreSQL cannot be
 * made to hang reliably (it cancels a long query itself with statement_timeout, and a
 * stopped process still has its socket answered by the kernel), so this is a stub on a
 * real TCP socket: it speaks the start of the protocol (AuthenticationOk, ReadyForQuery,
 * as PostgreSQL's "Frontend/Backend Protocol" chapter describes them) and then stays
 * silent. The client must give up on its own (query_timeout) and close the socket.
 */
import net from 'node:net';
import { afterEach, describe, expect, test } from 'vitest';
import { DRIVERS, SqlError } from '../../../src/sources/sql/drivers.js';
import { parseDbUrl } from '../../../src/sources/sql/url.js';

/** A server that logs anyone in and then never answers; `closed` counts sockets the client closed. */
async function silentServer(): Promise<{ port: number; closed: () => number; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  let closed = 0;
  const srv = net.createServer((s) => {
    sockets.add(s);
    let started = false;
    s.on('data', () => {
      if (started) return; // the query: no answer, ever
      started = true;
      const auth = Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 0]); // 'R' AuthenticationOk
      const ready = Buffer.from([0x5a, 0, 0, 0, 5, 0x49]); // 'Z' ReadyForQuery, idle
      s.write(Buffer.concat([auth, ready]));
    });
    s.on('error', () => undefined);
    s.on('close', () => {
      closed++;
      sockets.delete(s);
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return {
    port: (srv.address() as net.AddressInfo).port,
    closed: () => closed,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        srv.close(() => r());
      }),
  };
}

describe('PostgreSQL driver and a peer that stops answering', () => {
  const cleanup: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0)) await c();
  });

  test('a query gets a timeout error (not a wait forever), and close() frees the socket', async () => {
    const srv = await silentServer();
    cleanup.push(srv.close);
    const conn = await DRIVERS.postgres.connect({
      target: parseDbUrl(`postgres://u:pw@127.0.0.1:${srv.port}/kav`),
      tls: { mode: 'disable' },
      connectTimeoutMs: 2000,
      queryTimeoutMs: 200,
      applicationName: 'cefd test',
    });
    let guard: NodeJS.Timeout | undefined;
    // Only so that a hang fails this test with a message rather than vitest's timeout.
    const hang = new Promise<'hung'>((r) => (guard = setTimeout(() => r('hung'), 20_000)));
    const got = await Promise.race([conn.query('SELECT 1', []).then(() => 'answered', (e: unknown) => e), hang]);
    clearTimeout(guard);
    expect(got).toBeInstanceOf(SqlError);
    expect((got as SqlError).reason).toBe('timeout');
    await conn.close();
    await expect.poll(() => srv.closed(), { timeout: 5000 }).toBe(1);
  }, 120_000);
});
