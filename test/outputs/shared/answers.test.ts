/**
 * Answers a receiver should not give, and what the HTTP outputs make of them
 * (src/outputs/shared/http-transport.ts and the outputs on it): a 2xx answer too large to
 * keep, a 2xx body that never ends, and codes or error types that would make unbounded
 * reason labels. A plain HTTP server plays the receiver.
 */
import http from 'node:http';
import type { Socket } from 'node:net';
import { afterEach, expect, test } from 'vitest';
import { loadFields } from '../../../src/config/load.js';
import { ELASTICSEARCH_FIELDS } from '../../../src/outputs/elasticsearch/config.js';
import { ElasticsearchOutput } from '../../../src/outputs/elasticsearch/elasticsearch.js';
import { HTTP_FIELDS } from '../../../src/outputs/http/config.js';
import { HttpOutput } from '../../../src/outputs/http/http.js';
import { SPLUNK_HEC_FIELDS } from '../../../src/outputs/splunk_hec/config.js';
import { SplunkHecOutput } from '../../../src/outputs/splunk_hec/splunk-hec.js';
import type { Output } from '../../../src/outputs/types.js';
import { waitFor } from '../../helpers/daemon.js';

const closing: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of closing.splice(0).reverse()) await c();
});

async function receiver(handle: (req: http.IncomingMessage, res: http.ServerResponse) => void): Promise<{ url: string; open: Set<Socket> }> {
  const open = new Set<Socket>();
  const srv = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => handle(req, res));
  });
  srv.on('connection', (s: Socket) => {
    open.add(s);
    s.on('close', () => open.delete(s));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  closing.push(() => {
    for (const s of open) s.destroy();
    return new Promise((r) => srv.close(r));
  });
  return { url: `http://127.0.0.1:${(srv.address() as { port: number }).port}`, open };
}

async function started<T extends Output>(o: T): Promise<T> {
  await o.start();
  closing.push(() => o.close());
  return o;
}

const rec = JSON.stringify({ '@timestamp': '2026-12-07T10:00:00.000Z', event: { id: 'k-1' }, message: 'm' });

test('elasticsearch: a 2xx answer larger than the transport keeps (32 MiB) is not read whole: its items are unknown, so the events are sent again', async () => {
  const pad = 'x'.repeat(40 * 1024 * 1024);
  const r = await receiver((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(`{"errors":false,"items":[{"create":{"status":201}}],"pad":"${pad}"}`);
  });
  const o = await started(new ElasticsearchOutput('es', loadFields(ELASTICSEARCH_FIELDS, { url: r.url, index: 'cefd' })));
  const res = await o.send({ records: [rec] });
  expect(res.status).toBe('retry');
  expect(JSON.stringify(res)).toContain('unreadable');
});

test('http: a 2xx whose body never ends does not hold its connection past the timeout', async () => {
  const r = await receiver((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('o'); // and nothing more, ever
  });
  const o = await started(new HttpOutput('h', loadFields(HTTP_FIELDS, { url: r.url, timeout: '2s' })));
  for (let i = 0; i < 3; i++) expect((await o.send({ records: [rec] })).status).toBe('delivered');
  await waitFor(() => r.open.size === 0, 10_000, 'the trickling connections closed by cefd');
});

test('reason labels stay bounded: a HEC code that is not a small whole number is no code; an Elasticsearch error type is cut at 64 characters', async () => {
  const hec = await receiver((_req, res) => {
    res.writeHead(400, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ text: 'odd', code: 4.5 }));
  });
  const h = await started(new SplunkHecOutput('hec', loadFields(SPLUNK_HEC_FIELDS, { url: hec.url, token: 'tok-0123456789' })));
  const hr = await h.send({ records: [rec] });
  expect(hr.status).toBe('partial');
  expect(hr.status === 'partial' ? hr.rejected?.map((x) => x.reason) : []).toEqual(['http_status_400']);

  const es = await receiver((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ errors: true, items: [{ create: { status: 400, error: { type: 'a'.repeat(500), reason: 'r' } } }] }));
  });
  const e = await started(new ElasticsearchOutput('es', loadFields(ELASTICSEARCH_FIELDS, { url: es.url, index: 'cefd' })));
  const er = await e.send({ records: [rec] });
  expect(er.status === 'partial' ? er.rejected?.map((x) => x.reason) : []).toEqual([`elasticsearch_${'a'.repeat(64)}`]);
});
