/**
 * Routes (router.ts) and per-output encodings: outputs that share an encoding share one
 * encoded record; each output's file holds its own encoding, on the decode workers and on
 * the main thread alike; `cefd parse --encoding` prints the same records.
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { compileRoutes, routeMask } from '../../src/pipeline/router.js';
import { FrameCounts, processFrame, type IngestEnv } from '../../src/pipeline/ingest.js';
import { readNdjson, sendTcp, startDaemon, waitFor, type TestDaemon } from '../helpers/daemon.js';
import { runCli } from '../helpers/ksc-daemon.js';
import { ConfigError, loadConfigText } from '../../src/config/load.js';
import type { CefdEvent } from '../../src/event.js';

const DETECTION = 'CEF:0|KasperskyLab|SecurityCenter|14.2|GNRL_EV_VIRUS_FOUND|Virus found|4|rt=1795860000004 dhost=WS-1 dst=10.4.21.31 cs1=KES cs1Label=ProductName';
const OTHER = 'CEF:0|Security|threatmanager|1.0|100|worm stopped|10|src=10.0.0.1 dst=2.1.2.2';

describe('compileRoutes', () => {
  test('outputs with the same encoding share one encoder; field options make another', () => {
    const r = compileRoutes([
      {},
      { filter: 'cef.deviceVendor == "KasperskyLab"', encoding: { codec: 'native' } },
      { encoding: { codec: 'native', only_fields: ['id', 'cef.name'] } },
    ]);
    expect(r.encoders.map((e) => e.key)).toEqual(['["native",[],[],null]', '["native",["id","cef.name"],[],null]']);
    expect(r.encoderOf).toEqual([0, 0, 1]);
    expect(r.encoderMasks).toEqual([0b011, 0b100]);
    const ev = { timestamp: 't', received: 't', cef: { version: '0', deviceVendor: 'Other', extensions: {}, typed: {} } } as CefdEvent;
    expect(routeMask(r, ev)).toBe(0b101);
  });

  test('the sharing key is unambiguous: a path holding `,` or `|` is not two paths', () => {
    const r = compileRoutes([
      { encoding: { codec: 'native', except_fields: ['x,y'] } },
      { encoding: { codec: 'native', except_fields: ['x', 'y'] } },
      { encoding: { codec: 'native', only_fields: ['a|b'] } },
      { encoding: { codec: 'native', only_fields: ['a'], except_fields: ['b'] } },
    ]);
    expect(r.encoderOf).toEqual([0, 1, 2, 3]);
    const ev = { timestamp: 't', received: 't', x: 1, y: 2, a: 3, b: 4 } as unknown as CefdEvent;
    expect(JSON.parse(r.encoders[r.encoderOf[1]!]!.encode(ev))).toEqual({ timestamp: 't', received: 't', a: 3, b: 4 });
    expect(JSON.parse(r.encoders[r.encoderOf[3]!]!.encode(ev))).toEqual({ a: 3 });
  });

  test('an unknown encoder is refused', () => {
    expect(() => compileRoutes([{ encoding: { codec: 'nope' } }])).toThrow(/unknown encoder "nope"/);
  });

  test('processFrame encodes once per encoder that a routed output uses', () => {
    const routes = compileRoutes([
      { filter: 'cef.deviceVendor == "KasperskyLab"' },
      { filter: 'cef.deviceVendor == "KasperskyLab"', encoding: { codec: 'native', only_fields: ['cef.name'] } },
      { filter: 'cef.deviceVendor == "Security"', encoding: { codec: 'native', except_fields: ['cef'] } },
    ]);
    const calls: string[] = [];
    const counted = { ...routes, encoders: routes.encoders.map((e) => ({ ...e, encode: (ev: CefdEvent) => (calls.push(e.key), e.encode(ev)) })) };
    const env: IngestEnv = { defaultZone: 'UTC', includeRaw: false, routes: counted };
    const enc: string[] = [];
    const mask = processFrame(Buffer.from(DETECTION), false, 0, 'l', 'p', [], 'x-1', env, new FrameCounts(), enc);
    expect(mask).toBe(0b011);
    expect(calls).toEqual(['["native",[],[],null]', '["native",["cef.name"],[],null]']);
    expect(JSON.parse(enc[1]!)).toEqual({ cef: { name: 'Virus found' } });
    expect(JSON.parse(enc[0]!)).toMatchObject({ id: 'x-1', listener: 'l', peer: 'p', cef: { name: 'Virus found' } });
  });
});

test('processFrame: outputs in native and ecs get different records, each encoder run once for the event', () => {
  const routes = compileRoutes([{}, { encoding: { codec: 'ecs' } }, {}, { encoding: { codec: 'ecs' } }]);
  expect(routes.encoders.map((e) => e.codec)).toEqual(['native', 'ecs']);
  expect(routes.encoderOf).toEqual([0, 1, 0, 1]);
  const calls: string[] = [];
  const counted = { ...routes, encoders: routes.encoders.map((e) => ({ ...e, encode: (ev: CefdEvent) => (calls.push(e.codec), e.encode(ev)) })) };
  const enc: string[] = [];
  const mask = processFrame(Buffer.from(DETECTION), false, 0, 'l', 'p', [], 'x-1', { defaultZone: 'UTC', includeRaw: false, routes: counted }, new FrameCounts(), enc);
  expect(mask).toBe(0b1111);
  expect(calls).toEqual(['native', 'ecs']);
  expect(enc[0]).not.toBe(enc[1]);
  expect(JSON.parse(enc[0]!)).toMatchObject({ id: 'x-1', cef: { deviceEventClassId: 'GNRL_EV_VIRUS_FOUND' } });
  expect(JSON.parse(enc[1]!)).toMatchObject({ event: { id: 'x-1', code: 'GNRL_EV_VIRUS_FOUND' }, ecs: { version: expect.any(String) } });
});

describe('per-output encodings in the daemon', () => {
  let d: TestDaemon | undefined;
  afterEach(async () => {
    await d?.stop();
    if (d !== undefined) rmSync(d.dir, { recursive: true, force: true });
    d = undefined;
  });

  for (const workers of [2, 0]) {
    test(`each output's file holds its own encoding (decode_workers: ${workers})`, async () => {
      d = await startDaemon(`state_dir: {dir}/state
decode_workers: ${workers}
listeners: [ { name: tcp, type: tcp, host: 127.0.0.1, port: 0, normalizers: [ksc] } ]
outputs:
  - { name: full, type: file, path: {dir}/full.ndjson }
  - { name: full2, type: file, path: {dir}/full2.ndjson, filter: 'exists ksc' }
  - { name: slim, type: file, path: {dir}/slim.ndjson, encoding: { only_fields: [id, ksc.category] } }
  - { name: nocef, type: file, path: {dir}/nocef.ndjson, encoding: { except_fields: [cef, syslog] } }
dead_letter: { path: {dir}/dead.ndjson }
metrics: { enabled: false }
`);
      await sendTcp(d.port('tcp'), [`${DETECTION}\n${OTHER}\n${DETECTION}\n`]);
      const dir = d.dir;
      await waitFor(() => readNdjson(join(dir, 'slim.ndjson'), { tolerateTornTail: true }).length === 3 && readNdjson(join(dir, 'nocef.ndjson'), { tolerateTornTail: true }).length === 3 && readNdjson(join(dir, 'full2.ndjson'), { tolerateTornTail: true }).length === 2, 30_000, 'the events in every output');
      await waitFor(() => readNdjson(join(dir, 'full.ndjson'), { tolerateTornTail: true }).length === 3, 30_000, 'the events in full');
      const full = readNdjson(join(dir, 'full.ndjson'));
      const slim = readNdjson(join(dir, 'slim.ndjson'));
      const nocef = readNdjson(join(dir, 'nocef.ndjson'));
      expect(full.map((e) => (e['cef'] as { deviceVendor: string }).deviceVendor)).toEqual(['KasperskyLab', 'Security', 'KasperskyLab']);
      expect(slim).toEqual([
        { id: full[0]!['id'], ksc: { category: 'detection' } },
        { id: full[1]!['id'] },
        { id: full[2]!['id'], ksc: { category: 'detection' } },
      ]);
      for (const [i, e] of nocef.entries()) {
        expect(e['cef']).toBeUndefined();
        expect(e['syslog']).toBeUndefined();
        expect(e['id']).toBe(full[i]!['id']);
      }
      expect(readNdjson(join(dir, 'full2.ndjson'))).toEqual([full[0], full[2]]);
    });
  }
});

/** The lines of a file, complete ones only (a record is written with its newline). */
function lines(file: string): string[] {
  if (!existsSync(file)) return [];
  const all = readFileSync(file, 'utf8').split('\n');
  all.pop();
  return all;
}

describe('the daemon writes what cefd parse prints with the same encoding and event options', () => {
  let d: TestDaemon | undefined;
  afterEach(async () => {
    await d?.stop();
    if (d !== undefined) rmSync(d.dir, { recursive: true, force: true });
    d = undefined;
  });

  for (const workers of [2, 0]) {
    test(`native, ecs and cef outputs, event: { ksc: full, custom_fields: pairs } (decode_workers: ${workers})`, async () => {
      d = await startDaemon(`state_dir: {dir}/state
decode_workers: ${workers}
event: { ksc: full, custom_fields: pairs }
listeners: [ { name: tcp, type: tcp, host: 127.0.0.1, port: 0, normalizers: [ksc] } ]
outputs:
  - { name: native, type: file, path: {dir}/native.ndjson }
  - { name: ecs, type: file, path: {dir}/ecs.ndjson, encoding: { codec: ecs } }
  - { name: cef, type: file, path: {dir}/cef.log, encoding: { codec: cef } }
dead_letter: { path: {dir}/dead.ndjson }
metrics: { enabled: false }
`);
      // Both with a time of their own (`rt`): without one the event's time is the time of reading.
      const input = `${DETECTION}\n${OTHER} rt=1795860000005\n`;
      await sendTcp(d.port('tcp'), [input]);
      const dir = d.dir;
      await waitFor(() => lines(join(dir, 'native.ndjson')).length === 2 && lines(join(dir, 'ecs.ndjson')).length === 2 && lines(join(dir, 'cef.log')).length === 2, 30_000, 'two records in every output');
      const parse = async (...args: string[]): Promise<string[]> => {
        const r = await runCli(['parse', '--ksc', 'full', '--custom-fields', 'pairs', ...args], { input });
        expect(r.code).toBe(0);
        return r.stdout.split('\n').filter((l) => l !== '');
      };
      // What the daemon adds (id, listener, peer) and the time of reading differ; nothing else.
      const native = lines(join(dir, 'native.ndjson')).map((l) => JSON.parse(l) as Record<string, unknown>);
      for (const e of native) {
        expect(e).toMatchObject({ listener: 'tcp', id: expect.any(String), peer: expect.any(String) });
        for (const k of ['id', 'listener', 'peer', 'received']) delete e[k];
      }
      expect(native).toEqual((await parse()).map((l) => ({ ...(JSON.parse(l) as Record<string, unknown>), received: undefined })).map(({ received: _, ...e }) => e));
      expect(JSON.stringify(native[0])).toContain('"deviceCustomString1Label":"ProductName"');
      expect((native[0]!['ksc'] as Record<string, unknown>)['eventType']).toBe('GNRL_EV_VIRUS_FOUND');
      const ecsOf = (l: string) => {
        const e = JSON.parse(l) as { event: Record<string, unknown> };
        delete e.event['id'];
        delete e.event['created'];
        return e;
      };
      const ecs = lines(join(dir, 'ecs.ndjson'));
      expect(ecs.map(ecsOf)).toEqual((await parse('--encoding', 'ecs')).map(ecsOf));
      expect(ecs[0]).not.toBe(lines(join(dir, 'native.ndjson'))[0]);
      expect(lines(join(dir, 'cef.log'))).toEqual(await parse('--encoding', 'cef'));
    });
  }
});

test('cefd parse --encoding prints what an output with that encoding gets', async () => {
  const r = await runCli(['parse', '--encoding', 'native', '--only-fields', 'cef.name,ksc.category,ksc.eventType'], { input: `${DETECTION}\n` });
  expect(r.code).toBe(0);
  // The lean ksc object (event schema 2) has no eventType.
  expect(JSON.parse(r.stdout)).toEqual({ cef: { name: 'Virus found' }, ksc: { category: 'detection' } });
  // `--ksc full` (config event.ksc) brings it back, and the field options choose among the fields it adds.
  const full = await runCli(['parse', '--ksc', 'full', '--only-fields', 'cef.name,ksc.category,ksc.eventType'], { input: `${DETECTION}\n` });
  expect(full.code).toBe(0);
  expect(JSON.parse(full.stdout)).toEqual({ cef: { name: 'Virus found' }, ksc: { category: 'detection', eventType: 'GNRL_EV_VIRUS_FOUND' } });
  const bad = await runCli(['parse', '--encoding', 'nope'], { input: `${DETECTION}\n` });
  expect(bad.code).toBe(2);
  expect(bad.stderr).toMatch(/unknown encoding nope \(known: native/);
});

test('cefd parse --encoding prints on stderr, after the records, what the encoder dropped, cut or moved; the exit code is unchanged', async () => {
  const line = `CEF:0|V|P|1|C|N|5|app=${'A'.repeat(40)} cn1=12.5 cn1Label=Ratio`;
  const r = await runCli(['parse', '--encoding', 'kuma'], { input: `${line}\n` });
  expect(r.code).toBe(0);
  expect(JSON.parse(r.stdout)['ApplicationProtocol']).toBe('A'.repeat(31));
  expect(r.stderr).toContain('encode_field_cut: 1 (last: ApplicationProtocol: cut to 31 characters)');
  expect(r.stderr).toMatch(/encode_value_moved: 1 \(last: DeviceCustomNumber1: /);
  // The counts are for the whole run, and a failed frame keeps its exit code.
  const two = await runCli(['parse', '--encoding', 'kuma'], { input: `${line}\n${line}\nnot a frame\n` });
  expect(two.code).toBe(1);
  expect(two.stderr).toContain('encode_field_cut: 2 ');
  // Nothing to report: nothing on stderr.
  const clean = await runCli(['parse', '--encoding', 'kuma'], { input: `${DETECTION}\n` });
  expect(clean.code).toBe(0);
  expect(clean.stderr).toBe('');
});

test('field options are refused for cef (its record is one CEF line), by parse and by validate', async () => {
  const r = await runCli(['parse', '--encoding', 'cef', '--except-fields', 'cef.extensions.message'], { input: `${DETECTION}\n` });
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/--encoding cef: only_fields \/ except_fields trim JSON records/);
  let err: unknown;
  try {
    loadConfigText(`outputs:\n  - { name: s, type: syslog, host: 127.0.0.1, encoding: { except_fields: [raw] } }\n`, 'cefd.yaml', {});
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ConfigError);
  expect((err as Error).message).toMatch(/outputs\[0\]\.encoding.*remove them for codec cef/s);
  // With another encoding the same output is fine.
  expect(loadConfigText(`outputs:\n  - { name: s, type: syslog, host: 127.0.0.1, encoding: { codec: kuma, except_fields: [Raw] } }\n`, 'cefd.yaml', {}).outputs[0]!.encoding.except_fields).toEqual(['Raw']);
});

test('validate refuses an unknown encoding with its key and line', () => {
  const yaml = `outputs:\n  - { name: a, type: stdout, encoding: { codec: nope } }\n`;
  let err: unknown;
  try {
    loadConfigText(yaml, 'cefd.yaml', {});
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ConfigError);
  expect((err as Error).message).toMatch(/cefd\.yaml:2.*outputs\[0\]\.encoding\.codec.*native/s);
});
