/**
 * The event format (docs/event-format.md): schema 2 carries each value once; the options
 * of the `event` section bring back what schema 1 repeated; filters written against
 * schema 1's paths still work; the KSC workload stays under 1,000 bytes per event.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { decodeFrame } from '../../src/codecs/decode.js';
import { Framer } from '../../src/codecs/framing/framer.js';
import type { CefdEvent } from '../../src/event.js';
import { normalizeEvent } from '../../src/pipeline/normalize.js';
import { compileFilter, fieldValue } from '../../src/filter/filter.js';
import { expandEvent, nativeEncoder, EVENT_ALL } from '../../src/codecs/encoders/native.js';
import ksc from '../../normalizers/ksc/index.js';

const NOW = Date.UTC(2024, 5, 1, 12, 0, 0);
const LINE =
  '<14>1 2022-03-18T18:08:07.000Z ksc01 KSC - - - CEF:0|KasperskyLab|SecurityCenter|13.2.0.1511|KLPRCI_TaskState|Completed successfully|1|rt=1647626887000 cs9=site location Bldg cs9Label=GroupName dhost=WS6465 dst=10.55.203.12 cs10=Uninstall EDR cs10Label=TaskName cn2=4 cn2Label=TaskNewState cn1=0 cn1Label=TaskOldState cs3=885 cs3Label=TaskId spt=+7';

function event(line = LINE): CefdEvent {
  const r = decodeFrame(Buffer.from(line), false, NOW);
  if (!r.ok) throw new Error('not an event');
  normalizeEvent(r.event, [ksc]);
  return r.event;
}

describe('schema 2: each value once', () => {
  test('the KSC task-state line', () => {
    expect(JSON.parse(JSON.stringify(event()))).toEqual({
      schema: 2,
      timestamp: '2022-03-18T18:08:07.000Z',
      received: '2024-06-01T12:00:00.000Z',
      // The header's time stamp is the event's `timestamp`: carried once.
      syslog: { format: 'rfc5424', facility: 1, severity: 6, hostname: 'ksc01', appName: 'KSC' },
      cef: {
        version: '0',
        deviceVendor: 'KasperskyLab',
        deviceProduct: 'SecurityCenter',
        deviceVersion: '13.2.0.1511',
        deviceEventClassId: 'KLPRCI_TaskState',
        name: 'Completed successfully',
        severity: '1',
        extensions: { deviceReceiptTime: '1647626887000', destinationHostName: 'WS6465', destinationAddress: '10.55.203.12', sourcePort: '+7' },
        custom: { 'cs9:GroupName': 'site location Bldg', 'cs10:TaskName': 'Uninstall EDR', 'cn2:TaskNewState': 4, 'cn1:TaskOldState': 0, 'cs3:TaskId': '885' },
        // `+7` is not the text of 7: the number is a converted value that differs.
        typed: { sourcePort: 7 },
      },
      ksc: { category: 'task_state', severity: 'info', task: { oldState: 'created', newState: 'completed' } },
    });
  });

  test('the options bring back every field schema 1 carried', () => {
    const full = JSON.parse(JSON.stringify(expandEvent(event(), EVENT_ALL)));
    expect(full.cef.extensions).toEqual({
      deviceReceiptTime: '1647626887000',
      destinationHostName: 'WS6465',
      destinationAddress: '10.55.203.12',
      sourcePort: '+7',
      deviceCustomString9: 'site location Bldg',
      deviceCustomString9Label: 'GroupName',
      deviceCustomString10: 'Uninstall EDR',
      deviceCustomString10Label: 'TaskName',
      deviceCustomNumber2: '4',
      deviceCustomNumber2Label: 'TaskNewState',
      deviceCustomNumber1: '0',
      deviceCustomNumber1Label: 'TaskOldState',
      deviceCustomString3: '885',
      deviceCustomString3Label: 'TaskId',
    });
    expect(full.cef.custom).toBeUndefined();
    expect(full.syslog.timestamp).toBe('2022-03-18T18:08:07.000Z');
    expect(full.cef.typed).toEqual({ deviceReceiptTime: '2022-03-18T18:08:07.000Z', destinationAddress: '10.55.203.12', sourcePort: 7, deviceCustomNumber2: 4, deviceCustomNumber1: 0 });
    expect(full.ksc).toMatchObject({
      eventType: 'KLPRCI_TaskState',
      eventName: 'Completed successfully',
      severityCode: 1,
      host: { name: 'WS6465', ip: '10.55.203.12' },
      group: 'site location Bldg',
      task: { name: 'Uninstall EDR', id: '885', oldState: 'created', newState: 'completed', oldStateCode: 0, newStateCode: 4 },
      labels: { GroupName: 'site location Bldg', TaskName: 'Uninstall EDR', TaskNewState: 4, TaskOldState: 0, TaskId: '885' },
    });
    // One option at a time; the event itself is not changed.
    const e = event();
    const before = JSON.stringify(e);
    expect(Object.keys(JSON.parse(nativeEncoder({ ksc: 'full' })(e)).cef)).toContain('custom');
    expect(JSON.parse(nativeEncoder({ custom_fields: 'pairs' })(e)).ksc).toEqual(e.ksc);
    expect(JSON.stringify(e)).toBe(before);
    expect(nativeEncoder()(e)).toBe(before);
  });
});

describe('syslog.timestamp: once', () => {
  test('left out when it is timestamp, kept when it differs, null when the header had none', () => {
    expect(event().syslog?.timestamp).toBeUndefined();
    const differs = event('<14>1 2024-01-02T03:04:05.000Z h a - - - CEF:0|V|P|1|id|n|5|rt=1647626887000');
    expect(differs.timestamp).toBe('2022-03-18T18:08:07.000Z');
    expect(differs.syslog?.timestamp).toBe('2024-01-02T03:04:05.000Z');
    const none = event('<14>1 - h a - - - CEF:0|V|P|1|id|n|5|rt=1647626887000');
    expect(none.syslog?.timestamp).toBeNull();
    expect(compileFilter('exists syslog.timestamp').test(none)).toBe(false);
    expect(expandEvent(none, EVENT_ALL).syslog?.timestamp).toBeUndefined();
  });
});

describe('filters written against schema 1 paths still match', () => {
  const e = event();
  test.each([
    ['ksc.eventType == "KLPRCI_TaskState"', true],
    ['ksc.labels.TaskName == "Uninstall EDR"', true],
    ['ksc.labels.TaskNewState == 4', true],
    ['ksc.task.name == "Uninstall EDR" and ksc.task.newStateCode == 4', true],
    ['ksc.host.name == "WS6465"', true],
    ['cef.typed.destinationAddress == "10.55.203.12"', true],
    ['cef.typed.deviceReceiptTime < "2023"', true],
    ['cef.extensions.deviceCustomString10Label == "TaskName"', true],
    ['cef.custom["cs10:TaskName"] == "Uninstall EDR"', true],
    ['ksc.category == "task_state"', true],
    ['ksc.format == "cef"', true],
    ['syslog.timestamp == "2022-03-18T18:08:07.000Z"', true],
    ['exists ksc.threat', false],
    ['ksc.labels.Missing == "x"', false],
  ])('%s', (f, want) => {
    expect(compileFilter(f).test(e)).toBe(want);
  });

  test('an event without ksc has no ksc paths', () => {
    const plain = event('CEF:0|V|P|1|id|n|5|src=10.0.0.1 cs1=a cs1Label=L');
    expect(fieldValue(plain, 'ksc.eventType')).toBeUndefined();
    expect(fieldValue(plain, 'cef.typed.sourceAddress')).toBe('10.0.0.1');
    expect(fieldValue(plain, 'cef.extensions.deviceCustomString1Label')).toBe('L');
  });
});

test('the shared KSC workload: at most 1,000 bytes per event on average', () => {
  // bench/gen-ksc.mjs is ../shared/bench-peer's generator; 2,000 events, seed 42, to stdout.
  const gen = fileURLToPath(new URL('../../bench/gen-ksc.mjs', import.meta.url));
  const input = execFileSync(process.execPath, [gen, '--n', '2000', '--seed', '42'], { stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 16 << 20 });
  let bytes = 0;
  let n = 0;
  const framer = new Framer({
    frame(buf) {
      const r = decodeFrame(buf, false, NOW);
      if (!r.ok) throw new Error('not an event');
      normalizeEvent(r.event, [ksc]);
      bytes += Buffer.byteLength(JSON.stringify(r.event)) + 1;
      n++;
    },
    discarded() {},
    notice() {},
  });
  framer.push(input);
  framer.end();
  expect(n).toBe(2000);
  expect(bytes / n).toBeLessThanOrEqual(1000);
});
