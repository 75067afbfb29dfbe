/**
 * User normalizers loaded by path: the example of docs/normalizers.md works as written, a
 * module in any folder loads by absolute or config-relative path, chain order decides,
 * and a normalizer that throws cannot break the pipeline.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, test } from 'vitest';
import { decodeFrame } from '../../src/codecs/decode.js';
import type { CefdEvent } from '../../src/event.js';
import { loadNormalizer, normalizeEvent } from '../../src/pipeline/normalize.js';
import ksc from '../../normalizers/ksc/index.js';

const FIXTURES = fileURLToPath(new URL('../../fixtures/normalizers/', import.meta.url));
const RECEIVED_MS = Date.UTC(2024, 5, 1);
const ACME_LOGIN = 'CEF:0|Acme|VPN|2.1|login|User login|3|suser=j.doe src=192.0.2.7 outcome=failure';
const KSC_TASK =
  'CEF:0|KasperskyLab|SecurityCenter|13.2.0.1511|KLPRCI_TaskState|Completed successfully|1|dhost=WS-1 cs10=Update cs10Label=TaskName cn1=1 cn1Label=TaskOldState cn2=4 cn2Label=TaskNewState';

function decode(line: string): CefdEvent {
  const r = decodeFrame(Buffer.from(line), false, RECEIVED_MS);
  if (!r.ok) throw new Error('not an event');
  return r.event;
}

const tmp = mkdtempSync(join(tmpdir(), 'cefd-normalizer-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('a user normalizer loaded from a path', () => {
  test('the example of docs/normalizers.md (fixtures/normalizers/acme-vpn.mjs) normalizes its events', async () => {
    const acme = await loadNormalizer({ path: join(FIXTURES, 'acme-vpn.mjs') });
    expect(acme.name).toBe('acme');
    const event = decode(ACME_LOGIN);
    expect(normalizeEvent(event, [acme])).toEqual({ kind: 'normalized', normalizer: 'acme', type: 'login_failure' });
    expect(event['acme']).toEqual({ user: 'j.doe', sourceIp: '192.0.2.7', outcome: 'failure' });
    expect(event.warnings).toBeUndefined();

    const noUser = decode('CEF:0|Acme|VPN|2.1|login|User login|3|src=192.0.2.7');
    normalizeEvent(noUser, [acme]);
    expect(noUser['acme']).toEqual({ sourceIp: '192.0.2.7', user: undefined, outcome: 'success' });
    expect(noUser.warnings).toEqual([{ code: 'acme_no_user', message: 'login event without suser' }]);
  });

  test('docs/normalizers.md shows this example verbatim', () => {
    const example = readFileSync(join(FIXTURES, 'acme-vpn.mjs'), 'utf8');
    const docs = readFileSync(fileURLToPath(new URL('../../docs/normalizers.md', import.meta.url)), 'utf8');
    expect(docs).toContain('```js\n' + example + '```');
  });

  test('a module written to a temporary folder loads by absolute path and by path relative to the config folder', async () => {
    const file = join(tmp, 'tagger.mjs');
    writeFileSync(
      file,
      `export const normalizer = {
        name: 'tagger',
        accepts: (e) => e.cef !== undefined,
        normalize: (e) => ({ data: { product: e.cef.deviceProduct }, type: 'tagged' }),
      };\n`,
    );
    const abs = await loadNormalizer({ path: file });
    const rel = await loadNormalizer({ path: './tagger.mjs' }, tmp);
    for (const n of [abs, rel]) {
      const event = decode(ACME_LOGIN);
      expect(normalizeEvent(event, [n])).toEqual({ kind: 'normalized', normalizer: 'tagger', type: 'tagged' });
      expect(event['tagger']).toEqual({ product: 'VPN' });
    }
  });

  test('the first normalizer of the chain that accepts wins', async () => {
    const acme = await loadNormalizer({ path: join(FIXTURES, 'acme-vpn.mjs') });
    const tagger = await loadNormalizer({ path: join(tmp, 'tagger.mjs') });

    const kscEvent = decode(KSC_TASK);
    expect(normalizeEvent(kscEvent, [acme, ksc, tagger])).toMatchObject({ normalizer: 'ksc', type: 'task_state' });
    expect(kscEvent['tagger']).toBeUndefined();
    // The event's ksc object is the lean one (docs/event-format.md).
    expect((kscEvent.ksc as { task: unknown }).task).toEqual({ oldState: 'running', newState: 'completed' });

    const acmeEvent = decode(ACME_LOGIN);
    expect(normalizeEvent(acmeEvent, [ksc, tagger, acme])).toMatchObject({ normalizer: 'tagger' });
    expect(acmeEvent['acme']).toBeUndefined();
  });

  test('a module that is not a normalizer, or a missing file, is refused with a clear message', async () => {
    await expect(loadNormalizer({ path: join(FIXTURES, 'not-a-normalizer.mjs') })).rejects.toThrow(/accepts must be a function/);
    await expect(loadNormalizer({ path: join(tmp, 'missing.mjs') })).rejects.toThrow(/does not exist/);
  });
});

describe('a normalizer that throws cannot break the pipeline', () => {
  test('normalize throws: warning normalizer_failed, the event passes on un-normalized, later normalizers do not run', async () => {
    const throws = await loadNormalizer({ path: join(FIXTURES, 'throws.mjs') });
    const event = decode(KSC_TASK);
    const before = structuredClone(event);
    const outcome = normalizeEvent(event, [throws, ksc]);
    expect(outcome.kind).toBe('failed');
    expect(outcome).toMatchObject({ normalizer: 'always_throws' });
    expect(event.warnings).toEqual([{ code: 'normalizer_failed', key: 'always_throws', message: 'normalizer always_throws threw: boom' }]);
    const { warnings: _w, ...rest } = event;
    const { warnings: _b, ...restBefore } = before;
    expect(rest).toEqual(restBefore);
    expect(event['always_throws']).toBeUndefined();
    expect(event.ksc).toBeUndefined();
  });

  test('accepts throws: the same', async () => {
    const bad = await loadNormalizer({ path: join(FIXTURES, 'accepts-throws.mjs') });
    const event = decode(ACME_LOGIN);
    expect(normalizeEvent(event, [bad]).kind).toBe('failed');
    expect(event.warnings).toEqual([{ code: 'normalizer_failed', key: 'bad_accepts', message: 'normalizer bad_accepts threw: cannot read' }]);
  });

  test('a throwing normalizer after the one that accepts is never reached', async () => {
    const throws = await loadNormalizer({ path: join(FIXTURES, 'throws.mjs') });
    const event = decode(KSC_TASK);
    expect(normalizeEvent(event, [ksc, throws])).toMatchObject({ kind: 'normalized', normalizer: 'ksc' });
    expect(event.warnings).toBeUndefined();
  });
});
