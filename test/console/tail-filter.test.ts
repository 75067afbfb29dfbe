/**
 * A filter in the console (search, live tail) gives the answer an output route gives for the
 * same event, whatever the `event` options: the console keeps and sends the event as native
 * JSON written with those options and tests it read back (src/console/tail.ts,
 * src/workers/recent.ts), while a route tests the event itself (src/pipeline/router.ts).
 */
import { expect, test } from 'vitest';
import { TailHub } from '../../src/console/tail.js';
import { decodeFrame } from '../../src/codecs/decode.js';
import { nativeEncoder, type EventOptions } from '../../src/codecs/encoders/native.js';
import { compileFilter } from '../../src/filter/filter.js';
import type { RecentSink } from '../../src/pipeline/pipeline.js';
import type { CefdEvent } from '../../src/event.js';

const FRAME = 'CEF:0|KasperskyLab|SecurityCenter|14.2|GNRL_EV_VIRUS_FOUND|Virus found|4|rt=1795860000004 dhost=WS-1 cs1=EICAR-1 cs1Label=VirusName cn1=4 cn1Label=Count cn2=+7 cn2Label=Signed cs4=x cs4Label= cs5=unpaired';

function decoded(): CefdEvent {
  const r = decodeFrame(Buffer.from(FRAME), false, Date.UTC(2026, 10, 28));
  if (!r.ok) throw new Error(r.failure.code);
  return { ...r.event, id: 'b-1', listener: 'tcp' } as CefdEvent;
}

const FILTERS = [
  'cef.custom["cs1:VirusName"] == "EICAR-1"',
  'cef.custom["cs1:VirusName"] startswith "EICAR"',
  'cef.custom["cn1:Count"] == 4',
  'cef.custom["cn1:Count"] == "4"',
  'cef.custom["cn1:Count"] in [4, 5]',
  'cef.custom["cn1:Count"] contains "4"',
  'cef.custom["cn2:Signed"] == "+7"',
  'cef.custom["cn2:Signed"] contains "+"',
  'exists cef.custom["cs1:VirusName"]',
  'exists cef.custom["cs4:"]',
  'exists cef.custom["cs5:x"]',
  'exists cef.custom["cs1:Other"]',
  'cef.custom["cs1:VirusName"] != "EICAR-1"',
  'cef.custom["cn1:Count"] > 3',
  'cef.extensions.deviceCustomString1 == "EICAR-1"',
];

async function searchAnswers(options: EventOptions): Promise<boolean[]> {
  let sink: RecentSink | null = null;
  const hub = new TailHub(10, 1024 * 1024, (s) => (sink = s), () => Promise.resolve({ items: [], kept: 0 }), nativeEncoder(options));
  hub.start();
  sink!.event(decoded(), Buffer.from(FRAME));
  const out: boolean[] = [];
  for (const f of FILTERS) out.push((await hub.search({ filter: f, limit: 10 })).entries.length === 1);
  hub.close();
  return out;
}

test.each<[string, EventOptions]>([
  ['defaults', {}],
  ['custom_fields: pairs', { custom_fields: 'pairs' }],
  ['every schema 1 option', { typed: 'all', custom_fields: 'pairs', ksc: 'full', syslog_timestamp: 'always' }],
])('the console search answers as a route does (%s)', async (_name, options) => {
  const route = FILTERS.map((f) => compileFilter(f).test(decoded()));
  // The route's answers, spelled out: the filters above are about the event, not the options.
  expect(route).toEqual([true, true, true, true, true, false, true, true, true, false, false, false, false, true, true]);
  // The same filter on the JSON as written with these options, read back.
  const json = JSON.parse(nativeEncoder(options)(decoded())) as object;
  expect(FILTERS.map((f) => compileFilter(f).test(json))).toEqual(route);
  expect(await searchAnswers(options)).toEqual(route);
});
