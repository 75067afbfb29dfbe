/**
 * The console in a real browser: Debian's chromium driven by playwright-core, against a
 * real daemon and the KSC emulator. Sign in, events on Overview and Events, the live tail
 * filtered and paused, an event's encodings, a tenant added and deleted, a connection added and tested, assets
 * imported and searched, a task started for an asset until its run is "completed", CSRF
 * refused from the page, sign out. A screenshot of each page goes to test-artifacts/
 * (git-ignored).
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { CHROMIUM } from '../helpers/browser.js';
import { saveConnectionMain, startConsoleBed, type ConsoleBed } from '../helpers/console-bed.js';
import type { KscEmulator } from '../helpers/ksc-emulator/index.js';
import { sendTcp, waitFor } from '../helpers/daemon.js';
import { ADMIN_TOKEN, type KscTestDaemon, DAEMON_BASE_YAML } from '../helpers/ksc-daemon.js';

const ARTIFACTS = join(process.cwd(), 'test-artifacts', 'console');
const PASSWORD = 'S3cret-KSC-pass!w0rd';

const YAML = `
${DAEMON_BASE_YAML}ksc:
  sync_on_start: false
  request_timeout: 3s
  retries: 1
  admin: { enabled: true, host: 127.0.0.1, port: 0, bearer_token: ${ADMIN_TOKEN}, console: { enabled: true } }
  trusted_sources: [{ connection: main, listeners: [tcp], cidrs: [127.0.0.1/32] }]
`;

const detection = (host: string, n: number) =>
  `CEF:0|KasperskyLab|SecurityCenter|13.2.0.1511|GNRL_EV_VIRUS_FOUND|Malicious object detected|5|rt=${Date.now()} cs9=Workstations cs9Label=GroupName dhost=${host} cs2=KES cs2Label=ProductName cs1=EICAR-${n} cs1Label=VirusName\n`;

let emu: KscEmulator;
let d: KscTestDaemon;
let page: Page;
const base = () => `http://127.0.0.1:${d.adminPort()}`;

let bed: ConsoleBed | undefined;
beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  bed = await startConsoleBed(YAML);
  ({ emu, d, page } = bed);
  emu.taskEvents = { target: { host: '127.0.0.1', port: d.port('tcp') }, runningAfterMs: 20, finishAfterMs: 200 };
}, 120_000);

afterAll(async () => {
  await bed?.stop();
});

const shot = (name: string) => page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });

test('chromium exists (Debian package, installed by .ci/run)', () => {
  expect(existsSync(CHROMIUM)).toBe(true);
});

test('sign in, Overview, Events, KSC, a task run to "completed", sign out', async () => {
  const violations: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') violations.push(m.text());
  });

  // Sign in: a wrong token first.
  await page.goto(`${base()}/console/`);
  await expect.poll(() => page.url()).toBe(`${base()}/console/login`);
  await page.getByLabel('Admin token or console password').fill('wrong');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').getByText('Wrong token or password.').waitFor();
  await page.getByLabel('Admin token or console password').fill(ADMIN_TOKEN);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Overview' }).waitFor();

  // Overview: events arrive and are counted per listener.
  await sendTcp(d.port('tcp'), [detection('WS-0001', 1), detection('WS-0002', 2)]);
  await page.locator('[data-listener="tcp"] .events-total').getByText('2', { exact: true }).waitFor();
  await page.getByRole('cell', { name: 'events', exact: true }).waitFor();
  await expect.poll(() => page.locator('[data-listener="tcp"] svg[role="img"]').count()).toBe(1);
  await page.getByRole('table', { name: 'Senders to tcp' }).getByRole('cell', { name: '127.0.0.1' }).waitFor();
  await shot('overview');

  // Events: the live tail.
  await page.getByRole('link', { name: 'Events' }).click();
  await page.getByText('Live: every event.').waitFor();
  await sendTcp(d.port('tcp'), [detection('WS-0003', 3)]);
  await page.locator('#events tbody tr', { hasText: 'WS-0003' }).waitFor();

  // Filter the tail with the route filter language.
  await page.getByLabel('Filter (route filter language)').fill('cef.extensions.destinationHostName == "WS-0142"');
  await page.getByRole('button', { name: 'Apply' }).click();
  await page.getByText('Live: events where').waitFor();
  await sendTcp(d.port('tcp'), [detection('WS-0004', 4), detection('WS-0142', 5), detection('WS-0005', 6)]);
  await page.locator('#events tbody tr', { hasText: 'WS-0142' }).waitFor();
  // WS-0005 came after WS-0142 on the same connection: once the ring has it, the page would have it too.
  await waitFor(async () => (await page.evaluate(() => fetch('/console/api/events?text=WS-0005').then((r) => r.json() as Promise<{ events: unknown[] }>))).events.length === 1, 30_000, 'WS-0005 in memory');
  expect(await page.locator('#events tbody tr').allTextContents()).toEqual([expect.stringContaining('WS-0142')]);

  // Pause holds new events; Resume shows them.
  await page.getByRole('button', { name: 'Pause' }).click();
  await sendTcp(d.port('tcp'), [detection('WS-0142', 7)]);
  await waitFor(async () => (await page.evaluate(() => fetch('/console/api/events?text=EICAR-7').then((r) => r.json() as Promise<{ events: unknown[] }>))).events.length === 1, 30_000, 'EICAR-7 in memory');
  expect(await page.locator('#events tbody tr').count()).toBe(1);
  await page.getByRole('button', { name: 'Resume' }).click();
  await expect.poll(() => page.locator('#events tbody tr').count()).toBe(2);

  // Detail: raw, native and the KUMA encoding of one event.
  await page.locator('#events tbody tr a').first().click();
  await page.locator('#detail', { hasText: '"listener": "tcp"' }).waitFor();
  await page.getByRole('tab', { name: 'raw' }).click();
  await page.locator('#detail', { hasText: 'CEF:0|KasperskyLab' }).waitFor();
  await page.getByRole('tab', { name: 'kuma' }).click();
  await page.locator('#detail', { hasText: 'GNRL_EV_VIRUS_FOUND' }).waitFor();
  // Search over the events in memory (with the tail's filter).
  await page.getByLabel('Search the last events in memory').fill('EICAR-5');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.getByText(/^1 events in memory match \(of the last \d+\)/).waitFor();
  await shot('events');

  // KSC: add a connection (the secret is write-only), test it, import assets.
  await page.getByRole('link', { name: 'KSC' }).click();
  await page.getByText('No connections yet.').waitFor();

  // Tenants: add one with the labelled form from the keyboard, then delete it (the page asks first).
  await page.getByLabel('Tenant name').fill('branch-2');
  await page.getByLabel('Tenant name').press('Enter');
  await page.getByText('Tenant branch-2 added.').waitFor();
  await page.locator('#tenants tbody tr', { hasText: 'branch-2' }).getByText('enabled').waitFor();
  const asked: string[] = [];
  page.once('dialog', (dlg) => {
    asked.push(dlg.message());
    void dlg.accept();
  });
  await page.getByRole('button', { name: 'Delete tenant branch-2' }).click();
  await page.getByText('Tenant branch-2 deleted.').waitFor();
  expect(asked).toEqual(['Delete the tenant branch-2?']);
  await expect.poll(() => page.locator('#tenants tbody tr', { hasText: 'branch-2' }).count()).toBe(0);
  expect(await page.getByRole('button', { name: 'Delete tenant default' }).count()).toBe(0);
  await saveConnectionMain(page, emu, PASSWORD);
  const row = page.locator('#connections tbody tr', { hasText: 'main' });
  await row.getByText('set (file)').waitFor();
  expect(await page.content()).not.toContain(PASSWORD);
  await page.getByRole('button', { name: 'Test main' }).click();
  await page.getByText('main: the connection works').waitFor();
  await page.getByRole('button', { name: 'Import assets now' }).click();
  await page.getByText('main: 5 hosts imported').waitFor();
  await page.getByLabel('Search assets').fill('10.0.12.42');
  await page.getByRole('button', { name: 'Search', exact: true }).click();
  await expect.poll(() => page.locator('#assets tbody tr').count()).toBe(1);
  await shot('ksc');

  // The asset page: which task applies and why, start it, watch the run complete.
  await page.getByRole('link', { name: 'WS-0142' }).click();
  await page.getByRole('heading', { name: 'WS-0142' }).waitFor();
  await page.getByText('ws-0142.corp.example').waitFor();
  await page.getByLabel('KUMA task of the connection').selectOption('KUMA scan');
  await page.getByText('✔ Applies').waitFor();
  // It asks first: KSC runs a task on its whole scope.
  page.once('dialog', (dlg) => void dlg.accept());
  await page.getByRole('button', { name: 'Start task' }).click();
  await page.getByText('Task "KUMA scan" started').waitFor();
  try {
    await page.locator('#runs .run-state', { hasText: 'completed' }).waitFor({ timeout: 60_000 });
  } catch (e) {
    // What the daemon knew, to tell a page problem from a run that never completed.
    const runs = await page.evaluate(() => fetch('/api/v1/tasks/runs').then((r) => r.text()));
    console.error('runs:', runs, '\nsent task events:', emu.taskEvents, '\nlog:', d.logs.lines.filter((l) => /"level":"(warn|error)"|task/.test(l)).slice(-30).join('\n'));
    throw e;
  }
  expect(emu.runs.map((r) => r.taskId)).toEqual(['60']);
  await shot('asset');

  // CSRF: a change without the token is refused, even from the signed-in page.
  const status = await page.evaluate(() => fetch('/api/v1/connections', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name: 'x', url: 'https://127.0.0.1:1' }) }).then((r) => r.status));
  expect(status).toBe(403);

  // Sign out: back to the sign-in page, and the pages are closed.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('button', { name: 'Sign in' }).waitFor();
  await page.goto(`${base()}/console/ksc`);
  await expect.poll(() => page.url()).toBe(`${base()}/console/login`);
  const apiStatus = await page.evaluate(() => fetch('/api/v1/connections').then((r) => r.status));
  expect(apiStatus).toBe(401);

  // The strict CSP held: nothing was refused (a refused inline script or style logs an error).
  expect(violations.filter((v) => /Content Security Policy/i.test(v))).toEqual([]);
  // Every change was audited.
  const audit = d.logs.parsed().filter((l) => l['audit'] === true).map((l) => `${String(l['method'] ?? l['event'])} ${String(l['path'] ?? '')} ${String(l['status'] ?? '')}`.trim());
  expect(audit).toEqual(expect.arrayContaining(['POST /api/v1/tenants 201', 'DELETE /api/v1/tenants/branch-2 204', 'POST /api/v1/connections 201', 'POST /api/v1/assets/sync 200', 'POST /api/v1/tasks/start 201', 'POST /api/v1/connections 403', 'console_logout']));
}, 120_000);
