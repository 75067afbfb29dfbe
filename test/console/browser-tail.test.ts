/**
 * The Events page's live tail in a real browser (Debian's chromium, playwright-core) against
 * a real daemon: while paused it keeps only the events it can show on Resume (the newest
 * 200), counts what came, and says on Resume how many; event text from the network is
 * shown as text.
 */
import { rmSync } from 'node:fs';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { launchBrowser, type TestBrowser } from '../helpers/browser.js';
import { sendTcp } from '../helpers/daemon.js';
import { ADMIN_TOKEN, startKscDaemon, type KscTestDaemon, DAEMON_BASE_YAML } from '../helpers/ksc-daemon.js';

const YAML = `
${DAEMON_BASE_YAML}ksc:
  sync_on_start: false
  admin: { enabled: true, host: 127.0.0.1, port: 0, bearer_token: ${ADMIN_TOKEN}, console: { enabled: true } }
`;

const line = (host: string, name: string, n: number) => `CEF:0|KasperskyLab|SecurityCenter|13.2|GNRL_EV_VIRUS_FOUND|${name}|5|rt=${Date.now()} dhost=${host} cs1=EICAR-${n} cs1Label=VirusName\n`;

let d: KscTestDaemon;
let browser: TestBrowser | undefined;
let page: Page;
const base = () => `http://127.0.0.1:${d.adminPort()}`;

beforeAll(async () => {
  d = await startKscDaemon(YAML);
  browser = await launchBrowser();
  page = browser.page;
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await d?.stop();
  if (d !== undefined) rmSync(d.dir, { recursive: true, force: true });
});

const inMemory = (text: string) => page.evaluate((t) => fetch(`/console/api/events?limit=1000&text=${encodeURIComponent(t)}`).then((r) => r.json() as Promise<{ events: unknown[] }>), text);

test('paused: the newest 200 are kept and shown on Resume, with how many came; event text stays text', { timeout: 120_000 }, async () => {
  await page.goto(`${base()}/console/login`);
  await page.getByLabel('Admin token or console password').fill(ADMIN_TOKEN);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
  await page.getByRole('link', { name: 'Events' }).click();
  await page.getByText('Live: every event.').waitFor();

  // Markup in fields an attacker controls (CEF name and host come from the network).
  const evil = '<img src=x id=pwn onerror="document.title=1">';
  await sendTcp(d.port('tcp'), [line(`<script>x</script>`, evil, 0)]);
  const row = page.locator('#events tbody tr', { hasText: '<img' });
  await row.waitFor();
  expect(await row.locator('td').nth(3).textContent()).toBe(evil);
  expect(await row.locator('td').nth(4).textContent()).toBe('<script>x</script>');
  expect(await page.locator('#pwn, #events script').count()).toBe(0);

  await page.getByRole('button', { name: 'Pause' }).click();
  await page.getByText('Paused: new events are held.').waitFor();
  const N = 260;
  const lines: string[] = [];
  for (let i = 1; i <= N; i++) lines.push(line(`WS-${i}`, 'Malicious object detected', i));
  await sendTcp(d.port('tcp'), lines);
  await page.getByText(`Paused: ${N} new events held.`).waitFor();
  expect((await inMemory('EICAR-')).events.length).toBe(N + 1);
  expect(await page.locator('#events tbody tr').count()).toBe(1);

  await page.getByRole('button', { name: 'Resume' }).click();
  await page.getByText(`Live. ${N} events came while paused; the newest 200 are shown.`).waitFor();
  expect(await page.locator('#events tbody tr').count()).toBe(200);
  expect(await page.locator('#events tbody tr').first().textContent()).toContain(`WS-${N}`);
});
