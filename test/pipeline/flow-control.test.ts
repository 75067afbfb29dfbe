/** Flow control (src/pipeline/flow-control.ts): who blocks, who is paused, and the paused gauge. */
import { expect, test } from 'vitest';
import { FlowControl } from '../../src/pipeline/flow-control.js';

function recorder() {
  const gauge: [boolean, string | undefined][] = [];
  return { gauge, telemetry: { setPaused: (p: boolean, why?: string) => void gauge.push([p, why]) } };
}

function source(log: string[], name: string) {
  return { pause: () => log.push(`${name} pause`), resume: () => log.push(`${name} resume`) };
}

test('the first blocker pauses every source once; they resume only when the last one unblocks', () => {
  const { gauge, telemetry } = recorder();
  const flow = new FlowControl(telemetry);
  const log: string[] = [];
  flow.register(source(log, 'a'));
  flow.register(source(log, 'b'));
  flow.block('out1');
  flow.block('out1'); // twice by the same owner: no change
  flow.block('out2', 'queue of output out2 is full');
  expect(flow.paused).toBe(true);
  expect(log).toEqual(['a pause', 'b pause']);
  flow.unblock('out1');
  expect(flow.paused).toBe(true);
  expect(log).toEqual(['a pause', 'b pause']);
  flow.unblock('out2');
  flow.unblock('out2'); // not blocking any more: no change
  expect(flow.paused).toBe(false);
  expect(log).toEqual(['a pause', 'b pause', 'a resume', 'b resume']);
  expect(gauge).toEqual([[true, 'queue of output out1 is full'], [false, undefined]]);
});

test('a source registered while paused is paused at once; an unregistered one is left alone', () => {
  const { telemetry } = recorder();
  const flow = new FlowControl(telemetry);
  const log: string[] = [];
  flow.block('out');
  const off = flow.register(source(log, 'late'));
  expect(log).toEqual(['late pause']);
  off();
  flow.unblock('out');
  expect(log).toEqual(['late pause']);
  flow.register(source(log, 'fresh'));
  expect(log).toEqual(['late pause']);
});

test('unblocking someone who never blocked does not resume sources paused for another', () => {
  const { telemetry } = recorder();
  const flow = new FlowControl(telemetry);
  const log: string[] = [];
  flow.register(source(log, 's'));
  flow.block('a');
  flow.unblock('b');
  expect(flow.paused).toBe(true);
  expect(log).toEqual(['s pause']);
});
