/**
 * The console's browser tests' bed (test/console/browser*.test.ts): a KSC emulator whose
 * model has one more KUMA task (60, "KUMA scan", group Workstations), a daemon on `yaml`, and
 * chromium at 1280x900. stop() closes all three and removes the daemon's folder.
 */
import { rmSync } from 'node:fs';
import type { Page } from 'playwright-core';
import { launchBrowser, type TestBrowser } from './browser.js';
import { defaultModel, startKscEmulator, type KscEmulator } from './ksc-emulator/index.js';
import { startKscDaemon, type KscTestDaemon } from './ksc-daemon.js';

export interface ConsoleBed {
  emu: KscEmulator;
  d: KscTestDaemon;
  browser: TestBrowser;
  page: Page;
  stop(): Promise<void>;
}

/** Fills the KSC page's connection form for connection `main` on `emu` and saves it (the page is on the KSC page). */
export async function saveConnectionMain(page: Page, emu: KscEmulator, password: string): Promise<void> {
  await page.getByLabel('Name', { exact: true }).fill('main');
  await page.getByLabel('URL').fill(emu.url);
  await page.getByLabel('Certificate SHA-256 pin').fill(emu.cert.fingerprint256);
  await page.getByLabel('User').fill('kuma');
  await page.getByLabel('Password (write-only)').fill(password);
  await page.getByRole('button', { name: 'Save connection' }).click();
  await page.getByText('Connection main saved.').waitFor();
}

export async function startConsoleBed(yaml: string): Promise<ConsoleBed> {
  const model = defaultModel();
  model.tasks.push({ id: '60', displayName: 'KUMA scan', taskType: 'ODS', product: 'KES', version: '11.0.0.0', groupId: 1 });
  const emu = await startKscEmulator({ model });
  const d = await startKscDaemon(yaml);
  const browser = await launchBrowser({ viewport: { width: 1280, height: 900 } });
  return {
    emu,
    d,
    browser,
    page: browser.page,
    async stop() {
      await browser.close();
      await emu.close();
      await d.stop();
      rmSync(d.dir, { recursive: true, force: true });
    },
  };
}
