/**
 * The console's pages in a real browser (Debian's chromium, playwright-core) against a real
 * daemon and the KSC emulator, where their state can go wrong: the Events page when the
 * session ends, a filter applied while paused, Resume after a search, KSC "Syslog" events in
 * the list; the Overview's chart text and, after a reload, only the configured listeners and
 * outputs; a failed connection save (the form stays), a cleared certificate pin, an import
 * with the tenant's integration off, the rules' counters; a task start that says it runs on
 * the task's whole scope.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Dialog, Page } from 'playwright-core';
import { afterAll, beforeAll, expect, test } from 'vitest';
import type { TestBrowser } from '../helpers/browser.js';
import { saveConnectionMain, startConsoleBed, type ConsoleBed } from '../helpers/console-bed.js';
import type { KscEmulator } from '../helpers/ksc-emulator/index.js';
import { sendTcp, sendUdp, waitFor } from '../helpers/daemon.js';
import { ADMIN_TOKEN, api, type KscTestDaemon } from '../helpers/ksc-daemon.js';

const PASSWORD = 'S3cret-KSC-pass!w0rd';

const yaml = (listeners: string, output: string) => `state_dir: {dir}/state
listeners:
${listeners}outputs:
  - { name: ${output}, type: file, path: {dir}/events.ndjson }
dead_letter: { path: {dir}/dead-letter.ndjson }
metrics: { enabled: true, host: 127.0.0.1, port: 0 }
ksc:
  sync_on_start: false
  request_timeout: 3s
  retries: 1
  admin: { enabled: true, host: 127.0.0.1, port: 0, bearer_token: ${ADMIN_TOKEN}, console: { enabled: true } }
  trusted_sources: [{ connection: main, listeners: [tcp], cidrs: [127.0.0.1/32] }]
  response_rules:
    - { name: nope, type: ksctasks, tasks: [KUMA scan], filter: 'cef.extensions.destinationHostName == "NOPE-1"' }
`;
const TCP = '  - { name: tcp, type: tcp, host: 127.0.0.1, port: 0 }\n';
const UDP = '  - { name: udp, type: udp, host: 127.0.0.1, port: 0 }\n';

const detection = (host: string, n: number) =>
  `CEF:0|KasperskyLab|SecurityCenter|13.2.0.1511|GNRL_EV_VIRUS_FOUND|Malicious object detected|5|rt=${Date.now()} cs9=Workstations cs9Label=GroupName dhost=${host} cs2=KES cs2Label=ProductName cs1=EICAR-${n} cs1Label=VirusName\n`;
// KSC's RFC 5424 "Syslog" export (docs/ksc-normalizer.md): no CEF header.
const kscSyslog = (host: string) =>
  `<10>1 2022-02-28T15:48:55.000Z sup-01.aim7.local KES|11.0.0.0 - GNRL_EV_VIRUS_FOUND [event@23668 et="GNRL_EV_VIRUS_FOUND" tdn="File Threat Protection" etdn="Malicious object detected" hdn="${host}" hip="10.81.234.7" gn="Workstations"] Result description: Detected\n`;

let emu: KscEmulator;
let d: KscTestDaemon;
let browser: TestBrowser | undefined;
let page: Page;
const base = () => `http://127.0.0.1:${d.adminPort()}`;
const inMemory = (text: string) => page.evaluate((t) => fetch(`/console/api/events?limit=1000&text=${encodeURIComponent(t)}`).then((r) => r.json() as Promise<{ events: unknown[] }>), text);
const rows = () => page.locator('#events tbody tr').allTextContents();

let bed: ConsoleBed | undefined;
beforeAll(async () => {
  bed = await startConsoleBed(yaml(TCP + UDP, 'events'));
  ({ emu, d, browser, page } = bed);
  await page.goto(`${base()}/console/login`);
  await page.getByLabel('Admin token or console password').fill(ADMIN_TOKEN);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
}, 120_000);

afterAll(async () => {
  await bed?.stop();
});

test('Overview: the chart says the real peak below 1 event/s and fills its box', { timeout: 60_000 }, async () => {
  await sendTcp(d.port('tcp'), [detection('CHART-1', 1)]);
  // One event in a 10 s step: 0.1 events/s, not "peak 1.0".
  const caption = page.locator('[data-listener="tcp"] figcaption');
  await expect.poll(() => caption.textContent(), { timeout: 30_000 }).toMatch(/peak 0\.1,/);
  expect(await page.locator('[data-listener="tcp"] svg').getAttribute('preserveAspectRatio')).toBe('none');
  expect(await page.locator('[data-listener="tcp"] svg').getAttribute('aria-label')).toContain('peak 0.1,');
});

test('Events: a filter applied while paused goes live with the new filter only; Resume after a search clears the results', { timeout: 60_000 }, async () => {
  await page.getByRole('link', { name: 'Events' }).click();
  await page.getByText('Live: every event.').waitFor();
  await page.getByRole('button', { name: 'Pause' }).click();
  await sendTcp(d.port('tcp'), [detection('OLD-1', 2)]);
  await waitFor(async () => (await inMemory('OLD-1')).events.length === 1, 30_000, 'OLD-1 in memory');
  await page.getByLabel('Filter (route filter language)').fill('cef.extensions.destinationHostName == "NEW-1"');
  await page.getByRole('button', { name: 'Apply' }).click();
  await page.getByText('Live: events where cef.extensions.destinationHostName == "NEW-1"').waitFor();
  // Live, as the status says: the button offers Pause, and what the old filter held is gone.
  await page.getByRole('button', { name: 'Pause' }).waitFor();
  expect(await page.locator('#pause').getAttribute('aria-pressed')).toBe('false');
  await sendTcp(d.port('tcp'), [detection('NEW-1', 3)]);
  await page.locator('#events tbody tr', { hasText: 'NEW-1' }).waitFor();
  expect(await rows()).toEqual([expect.stringContaining('NEW-1')]);

  // Search (paused by it), then Resume: the live table starts over, without the results.
  await page.getByLabel('Filter (route filter language)').fill('');
  await page.getByRole('button', { name: 'Apply' }).click();
  await page.getByText('Live: every event.').waitFor();
  await page.getByLabel('Search the last events in memory').fill('EICAR-2');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.getByText(/^1 events in memory match/).waitFor();
  expect(await rows()).toEqual([expect.stringContaining('OLD-1')]);
  await sendTcp(d.port('tcp'), [detection('LIVE-2', 4)]);
  await waitFor(async () => (await inMemory('LIVE-2')).events.length === 1, 30_000, 'LIVE-2 in memory');
  await page.getByRole('button', { name: 'Resume' }).click();
  await expect.poll(() => rows()).toEqual([expect.stringContaining('LIVE-2')]);
});

test('Events: a KSC "Syslog" (RFC 5424) event shows its class and name', { timeout: 60_000 }, async () => {
  await sendTcp(d.port('tcp'), [kscSyslog('SUP-77')]);
  const row = page.locator('#events tbody tr', { hasText: 'SUP-77' });
  await row.waitFor();
  expect(await row.locator('td').nth(2).textContent()).toBe('GNRL_EV_VIRUS_FOUND');
  expect(await row.locator('td').nth(3).textContent()).toBe('Malicious object detected');
});

test('KSC: a failed save keeps the form (an edit stays an edit); a cleared pin is cleared or refused, never "saved" for nothing', { timeout: 90_000 }, async () => {
  await page.getByRole('link', { name: 'KSC' }).click();
  await page.getByText('No connections yet.').waitFor();
  await saveConnectionMain(page, emu, PASSWORD);
  await expect.poll(() => page.getByLabel('Name', { exact: true }).inputValue()).toBe('');

  // Edit: a new URL without the password is refused; the form keeps the edit.
  await page.getByRole('button', { name: 'Edit main' }).click();
  await page.getByText('Edit connection main').waitFor();
  await page.getByLabel('URL').fill('https://127.0.0.1:1');
  await page.getByRole('button', { name: 'Save connection' }).click();
  await page.locator('#ksc-status.error').waitFor();
  expect(await page.locator('#conn-legend').textContent()).toBe('Edit connection main');
  expect(await page.getByLabel('URL').inputValue()).toBe('https://127.0.0.1:1');
  expect(await page.getByLabel('Name', { exact: true }).inputValue()).toBe('main');
  expect(await page.locator('#conn-id').inputValue()).not.toBe('');

  // Clearing the pin is a TLS change: refused without the password, done with it.
  await page.getByLabel('URL').fill(emu.url);
  await page.getByLabel('Certificate SHA-256 pin').fill('');
  await page.getByRole('button', { name: 'Save connection' }).click();
  await page.locator('#ksc-status.error', { hasText: 'needs its secret again' }).waitFor();
  const pinOf = async () => ((await api(d.adminPort(), 'GET', '/api/v1/connections/main')).json as { connection: { tls: { pinSha256?: string } } }).connection.tls.pinSha256;
  expect(await pinOf()).toBeDefined();
  await page.getByLabel('User').fill('kuma');
  await page.getByLabel('Password (write-only)').fill(PASSWORD);
  await page.getByRole('button', { name: 'Save connection' }).click();
  await page.getByText('Connection main saved; its certificate pin is removed.').waitFor();
  expect(await pinOf()).toBeUndefined();
  expect((await api(d.adminPort(), 'GET', '/api/v1/connections')).json).toMatchObject({ connections: [expect.objectContaining({ name: 'main' })] });
  expect(((await api(d.adminPort(), 'GET', '/api/v1/connections')).json as { connections: unknown[] }).connections).toHaveLength(1);
  // The pin back (the emulator's certificate is self-signed).
  await page.getByRole('button', { name: 'Edit main' }).click();
  await page.getByLabel('Certificate SHA-256 pin').fill(emu.cert.fingerprint256);
  await page.getByLabel('User').fill('kuma');
  await page.getByLabel('Password (write-only)').fill(PASSWORD);
  await page.getByRole('button', { name: 'Save connection' }).click();
  await page.getByText('Connection main saved.').waitFor();
  expect(await pinOf()).toBeDefined();
});

test('KSC: an import with the tenant\'s integration off says so; the rules show every counter', { timeout: 90_000 }, async () => {
  await page.getByRole('button', { name: 'Disable integration of tenant default' }).click();
  await page.getByText('Tenant default: integration disabled.').waitFor();
  await page.getByRole('button', { name: 'Import assets now' }).click();
  await page.getByText('The KSC integration is off for tenant default').waitFor();
  await page.getByRole('button', { name: 'Enable integration of tenant default' }).click();
  await page.getByText('Tenant default: integration enabled.').waitFor();
  await page.getByRole('button', { name: 'Import assets now' }).click();
  await page.getByText('main: 5 hosts imported').waitFor();

  // An event that passes the rule's filter without an asset reference: counted, and shown.
  await sendTcp(d.port('tcp'), [detection('NOPE-1', 5)]);
  const rule = page.locator('#rules tbody tr', { hasText: 'nope' });
  const col = async (name: string) => {
    const heads = await page.locator('#rules thead th').allTextContents();
    return rule.locator('td').nth(heads.indexOf(name)).textContent();
  };
  await waitFor(async () => {
    const r = (await api(d.adminPort(), 'GET', '/api/v1/rules')).json as { rules: { counters: { noAsset: number } }[] };
    return r.rules[0]?.counters.noAsset === 1;
  }, 30_000, 'the rule to count the event without an asset');
  await page.reload();
  await expect.poll(() => col('No asset reference'), { timeout: 30_000 }).toBe('1');
  expect(await col('Triggered')).toBe('0');
  expect(await col('Skipped')).toBe('0');
});

test('asset page: starting a task asks first and says it runs on the task\'s whole scope', { timeout: 90_000 }, async () => {
  await page.getByLabel('Search assets').fill('10.0.12.42');
  await page.getByRole('button', { name: 'Search', exact: true }).click();
  await page.getByRole('link', { name: 'WS-0142' }).click();
  await page.getByRole('heading', { name: 'WS-0142' }).waitFor();
  await page.getByText(/^None among the last \d+ events in memory\.$/).waitFor();
  await page.getByLabel('KUMA task of the connection').selectOption('KUMA scan');
  await page.getByText('✔ Applies').waitFor();
  const asked: string[] = [];
  const answer = (ok: boolean) => (dlg: Dialog) => {
    asked.push(dlg.message());
    void (ok ? dlg.accept() : dlg.dismiss());
  };
  page.once('dialog', answer(false));
  await page.getByRole('button', { name: 'Start task' }).click();
  await page.getByText('Not started.').waitFor();
  expect(emu.runs).toEqual([]);
  page.once('dialog', answer(true));
  await page.getByRole('button', { name: 'Start task' }).click();
  await page.getByText(/Task "KUMA scan" started \(run \d+\): KSC runs it on its whole scope/).waitFor();
  expect(asked).toHaveLength(2);
  expect(asked[0]).toContain('KUMA scan');
  expect(asked[0]).toMatch(/its whole scope \(every device of administration group .+ and its subgroups\), not only on this asset/);
  expect(emu.runs.map((r) => r.taskId)).toEqual(['60']);
});

test('Events: a session ended elsewhere takes the Events page to sign-in', { timeout: 60_000 }, async () => {
  const events = await browser!.context.newPage();
  try {
    await events.goto(`${base()}/console/events`);
    await events.getByText('Live: every event.').waitFor();
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    // The stream ends at its next message; the EventSource reconnects and is refused (401).
    await sendTcp(d.port('tcp'), [detection('AFTER-SIGNOUT', 6)]);
    await expect.poll(() => events.url(), { timeout: 30_000 }).toBe(`${base()}/console/login`);
  } finally {
    await events.close();
  }
});

test('Overview after a reload: only the listeners and outputs configured now', { timeout: 60_000 }, async () => {
  await sendUdp(d.port('udp'), [detection('UDP-1', 7)]);
  await waitFor(async () => (await api(d.adminPort(), 'GET', '/console/api/overview')).json !== undefined && ((await api(d.adminPort(), 'GET', '/console/api/overview')).json as { listeners: { name: string; eventsTotal: number }[] }).listeners.some((l) => l.name === 'udp' && l.eventsTotal === 1), 30_000, 'the udp event counted');
  writeFileSync(join(d.dir, 'cefd.yaml'), yaml(TCP, 'events2').replaceAll('{dir}', d.dir));
  expect(await d.daemon.reload()).toBe(true);
  const o = (await api(d.adminPort(), 'GET', '/console/api/overview')).json as { listeners: { name: string }[]; outputs: { name: string }[] };
  expect(o.listeners.map((l) => l.name)).toEqual(['tcp']);
  expect(o.outputs.map((x) => x.name).sort()).toEqual(['dead_letter', 'events2']);
});
