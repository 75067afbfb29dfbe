/**
 * What an encoding cannot carry (Encoder.problems: `encode_key_dropped` from `cef`,
 * `encode_field_cut` from `kuma`) is counted per output and code in
 * cefd_output_encode_problems_total, from the decode workers and the main thread alike,
 * and only for the outputs that got the record.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { scrape, sendTcp, startDaemon, tempDir, waitFor, type TestDaemon } from '../helpers/daemon.js';

// `app` (applicationProtocol) is 40 characters: KUMA's ApplicationProtocol holds 31.
const LONG_APP = 'CEF:0|Acme|Probe|1.0|100|probe|5|rt=1795860000004 src=10.0.0.1 app=' + 'p'.repeat(40);
const SHORT_APP = 'CEF:0|Acme|Probe|1.0|100|probe|5|rt=1795860000005 src=10.0.0.2 app=http';

// A user normalizer that puts a key CEF cannot write into the extensions (as one may).
const BAD_KEY_NORMALIZER = `export default {
  name: 'badkey',
  accepts: (e) => e.cef !== undefined,
  normalize: (e) => { e.cef.extensions['bad key'] = 'x'; return { data: { seen: true }, type: 'probe' }; },
};
`;

let d: TestDaemon | undefined;
afterEach(async () => {
  await d?.stop();
  if (d !== undefined) rmSync(d.dir, { recursive: true, force: true });
  d = undefined;
});

for (const workers of [2, 0]) {
  test(`encode problems are counted per output and code (decode_workers: ${workers})`, async () => {
    const dir = tempDir();
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'badkey.mjs'), BAD_KEY_NORMALIZER);
    d = await startDaemon(
      `state_dir: {dir}/state
decode_workers: ${workers}
listeners: [ { name: tcp, type: tcp, host: 127.0.0.1, port: 0, normalizers: [./badkey.mjs] } ]
outputs:
  - { name: kuma, type: file, path: {dir}/kuma.ndjson, encoding: { codec: kuma } }
  - { name: kuma_short, type: file, path: {dir}/kuma2.ndjson, filter: 'cef.extensions.sourceAddress == "10.0.0.2"', encoding: { codec: kuma } }
  - { name: cef, type: file, path: {dir}/cef.log, encoding: { codec: cef } }
  - { name: native, type: file, path: {dir}/native.ndjson }
dead_letter: { path: {dir}/dead.ndjson }
metrics: { host: 127.0.0.1, port: 0 }
`,
      { dir },
    );
    await sendTcp(d.port('tcp'), [`${LONG_APP}\n${SHORT_APP}\n${LONG_APP}\n`]);
    const port = d.metricsPort();
    const metric = async (output: string, code: string) => (await scrape(port)).get(`cefd_output_encode_problems_total{output="${output}",code="${code}"}`);
    await waitFor(async () => (await metric('cef', 'encode_key_dropped')) === 3 && (await metric('kuma', 'encode_field_cut')) === 2, 30_000, 'the encode problems counted');
    await waitFor(async () => (await scrape(port)).get('cefd_output_sent_events_total{output="native"}') === 3, 30_000, 'the events delivered');
    const m = await scrape(port);
    // kuma_short shares kuma's encoder but got only the short record: nothing cut for it.
    expect(m.get('cefd_output_encode_problems_total{output="kuma_short",code="encode_field_cut"}')).toBeUndefined();
    expect(m.get('cefd_output_encode_problems_total{output="native",code="encode_key_dropped"}')).toBeUndefined();
    expect([...m.keys()].filter((k) => k.startsWith('cefd_output_encode_problems_total')).sort()).toEqual([
      'cefd_output_encode_problems_total{output="cef",code="encode_key_dropped"}',
      'cefd_output_encode_problems_total{output="kuma",code="encode_field_cut"}',
    ]);
    // Logged (rate-limited) with the output, the code and what happened.
    expect(d.logs.parsed().some((l) => l['code'] === 'encode_field_cut' && l['output'] === 'kuma' && String(l['detail']).includes('cut to 31'))).toBe(true);
  });
}
