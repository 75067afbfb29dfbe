/**
 * Credentials never reach an output's error texts (retry errors, dead letters), even when
 * the receiver echoes them: the shared HTTP transport's redaction
 * (src/outputs/shared/http-transport.ts) over the bare token in `Splunk <token>` and
 * `ApiKey <key>`, the password a `Basic` header encodes, the texts the elasticsearch and
 * splunk_hec outputs quote from an answer (src/outputs/shared/bulk.ts resultOf), and a
 * secret across the cut of an error body. A plain HTTP server plays the receiver that
 * echoes.
 */
import http from 'node:http';
import { afterEach, expect, test } from 'vitest';
import { loadFields } from '../../../src/config/load.js';
import { ELASTICSEARCH_FIELDS } from '../../../src/outputs/elasticsearch/config.js';
import { ElasticsearchOutput } from '../../../src/outputs/elasticsearch/elasticsearch.js';
import { HTTP_FIELDS } from '../../../src/outputs/http/config.js';
import { HttpOutput } from '../../../src/outputs/http/http.js';
import { headerSecrets } from '../../../src/outputs/shared/http-transport.js';
import { SPLUNK_HEC_FIELDS } from '../../../src/outputs/splunk_hec/config.js';
import { SplunkHecOutput } from '../../../src/outputs/splunk_hec/splunk-hec.js';
import type { Output, SendResult } from '../../../src/outputs/types.js';

const TOKEN = 'tok-SECRET-abc123-hec-0001';
const KEY = 'a2V5LVNFQ1JFVC1lcy0wMDAx';
const PASSWORD = 'pw-SECRET-basic-42';

const closing: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of closing.splice(0).reverse()) await c();
});

/** A receiver that answers every request with `answer(request headers)`. */
async function receiver(answer: (headers: http.IncomingHttpHeaders) => { status: number; body: string }): Promise<string> {
  const srv = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const a = answer(req.headers);
      res.writeHead(a.status, { 'content-type': 'application/json' });
      res.end(a.body);
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  closing.push(() => new Promise((r) => srv.close(r)));
  return `http://127.0.0.1:${(srv.address() as { port: number }).port}`;
}

async function started<T extends Output>(o: T): Promise<T> {
  await o.start();
  closing.push(() => o.close());
  return o;
}

/** Every text of a result. */
function texts(r: SendResult): string {
  return JSON.stringify(r);
}

const rec = JSON.stringify({ '@timestamp': '2026-12-07T10:00:00.000Z', event: { id: 'k-1' }, message: 'm' });

test('headerSecrets: the value, the credential after its scheme, and the password of Basic', () => {
  expect(headerSecrets(`Splunk ${TOKEN}`)).toEqual([`Splunk ${TOKEN}`, TOKEN]);
  const basic = Buffer.from(`elastic:${PASSWORD}`).toString('base64');
  expect(headerSecrets(`Basic ${basic}`)).toEqual([`Basic ${basic}`, basic, PASSWORD]);
  expect(headerSecrets('ab')).toEqual([]);
  // Not a scheme: the value whole only (a word of it would hide that word everywhere).
  expect(headerSecrets('custom value')).toEqual(['custom value']);
});

test('splunk_hec: a HEC answer that echoes the token (a refused token, an event refused) never puts it in an error', async () => {
  let mode = 'token';
  const url = await receiver((h) => {
    const auth = String(h['authorization']);
    const bare = auth.split(' ')[1];
    if (mode === 'token') return { status: 403, body: JSON.stringify({ text: `Invalid token ${bare}`, code: 4 }) };
    return { status: 400, body: JSON.stringify({ text: `Invalid data format (auth was ${auth})`, code: 6, 'invalid-event-number': 0 }) };
  });
  const o = await started(new SplunkHecOutput('hec', loadFields(SPLUNK_HEC_FIELDS, { url, token: TOKEN })));
  const refused = await o.send({ records: [rec] });
  expect(refused.status).toBe('retry');
  mode = 'event';
  const rejected = await o.send({ records: [rec, rec] });
  expect(rejected.status).toBe('partial');
  for (const r of [refused, rejected]) {
    expect(texts(r)).toContain('[redacted]');
    expect(texts(r)).not.toContain(TOKEN);
  }
});

test('elasticsearch: an item reason or an error body that echoes the API key or the Basic password never puts it in an error', async () => {
  const url = await receiver((h) => {
    const auth = String(h['authorization']);
    const bare = auth.split(' ')[1]!;
    const decoded = auth.startsWith('Basic ') ? Buffer.from(bare, 'base64').toString() : bare;
    return {
      status: 200,
      body: JSON.stringify({ errors: true, items: [{ create: { status: 400, error: { type: 'mapper_parsing_exception', reason: `header was ${auth}; key ${bare}; user ${decoded}` } } }] }),
    };
  });
  for (const auth of [{ api_key: KEY }, { headers: { Authorization: `Basic ${Buffer.from(`elastic:${PASSWORD}`).toString('base64')}` } }]) {
    const o = await started(new ElasticsearchOutput('es', loadFields(ELASTICSEARCH_FIELDS, { url, index: 'cefd', ...auth })));
    const r = await o.send({ records: [rec] });
    expect(r.status).toBe('partial');
    expect(texts(r)).toContain('[redacted]');
    expect(texts(r)).not.toContain(KEY);
    expect(texts(r)).not.toContain(PASSWORD);
  }
});

test('http: a secret across the cut of an error body leaves none of its characters', async () => {
  const url = await receiver(() => ({ status: 400, body: `${'x'.repeat(239)}${TOKEN}` }));
  const o = await started(new HttpOutput('h', loadFields(HTTP_FIELDS, { url, bearer_token: TOKEN })));
  const r = await o.send({ records: [rec] });
  expect(r.status).toBe('rejected');
  expect(texts(r)).not.toContain(TOKEN.slice(0, 8));
});
