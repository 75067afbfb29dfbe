/**
 * `matches` on hostile event text: the pattern is the operator's, the text the network's.
 * A pattern that makes a backtracking engine take exponential time (`^(a+)+$`, `(\w+\s?)+$`,
 * `(x|x)*y`) must still answer at once on the text that triggers it, in a decode worker as
 * on the main thread; the filter runs in a worker thread here (from dist/, as the daemon's
 * decode workers do) so that an engine that hangs fails the test instead of hanging it.
 */
import { Worker } from 'node:worker_threads';
import { afterEach, expect, test } from 'vitest';
import { compileFilter, FilterSyntaxError } from '../../src/filter/filter.js';

const DIST = new URL('../../dist/src/filter/filter.js', import.meta.url).href;

let workers: Worker[] = [];
afterEach(async () => {
  for (const w of workers) await w.terminate();
  workers = [];
});

/** compileFilter(filter).test(event) in a worker thread. */
function testInWorker(filter: string, event: object): Promise<boolean> {
  const w = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads');
     import(workerData.dist).then(({ compileFilter }) => parentPort.postMessage(compileFilter(workerData.filter).test(workerData.event)));`,
    { eval: true, workerData: { dist: DIST, filter, event } },
  );
  workers.push(w);
  return new Promise((resolve, reject) => {
    w.once('message', (m: boolean) => resolve(m));
    w.once('error', reject);
  });
}

// Each text is one character short of a match, which makes a backtracking engine try every way
// of splitting it: 2^n paths for n characters.
const HOSTILE: [string, object, boolean][] = [
  ['cef.name ~= "^(a+)+$"', { cef: { name: `${'a'.repeat(64 * 1024)}!` } }, false],
  ['cef.extensions.message matches "^(\\\\w+\\\\s?)+$"', { cef: { extensions: { message: `${'word '.repeat(4000)}!` } } }, false],
  ['msg ~= "(?i)^(x|x)*y"', { msg: 'X'.repeat(10_000) }, false],
  ['msg ~= "(?i)^(x|x)*y"', { msg: `${'X'.repeat(10_000)}y` }, true],
];

test('a catastrophic-backtracking pattern answers at once on the text that triggers it (decode worker)', { timeout: 60_000 }, async () => {
  for (const [f, ev, want] of HOSTILE) expect(await testInWorker(f, ev), f).toBe(want);
});

test('the same on the main thread, with the same function', () => {
  for (const [f, ev, want] of HOSTILE) expect(compileFilter(f).test(ev), f).toBe(want);
});

test('what needs backtracking is refused when the filter is loaded, with its position and why', () => {
  for (const [src, what] of [
    ['a ~= "x(?=y)"', '(?='],
    ['a ~= "x(?!y)"', '(?!'],
    ['a ~= "(?<=x)y"', '(?<'],
    ['a ~= "(a)\\\\1"', '\\1'],
  ] as const) {
    let err: unknown;
    try {
      compileFilter(src);
    } catch (e) {
      err = e;
    }
    expect(err, src).toBeInstanceOf(FilterSyntaxError);
    const e = err as FilterSyntaxError;
    expect(e.position, src).toBe(5);
    expect(e.message, src).toContain('bad regular expression');
    expect(e.message, src).toContain(what);
    expect(e.message, src).toContain('no lookaround or backreferences');
  }
});
