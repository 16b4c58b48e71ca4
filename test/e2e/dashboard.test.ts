// The operator dashboard in a real browser (Debian's Chromium) against the sandbox's story: the demo key rotated by
// Key Vault's event, its five hubs moved, the other key's hub left alone. Screenshots for the README are written to
// docs/ when UPDATE_SCREENSHOTS=1 (npm run docs:screenshots).
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cmkHub } from '@cmk-rotator/emulators/arm';
import { launchChromium, startSandbox } from '../support/browser';
import type { RunningSandbox } from '../support/browser';

const KEY_ID = 'https://demo.vault.azure.net/keys/hub-cmk';
const OTHER_KEY_ID = 'https://demo.vault.azure.net/keys/telemetry-cmk';
const MOVED = ['hub-eus-energy', 'hub-eus-retail', 'hub-weu-factory', 'hub-weu-fleet', 'hub-weu-labs'];
const SCREENSHOTS = process.env.UPDATE_SCREENSHOTS === '1' ? path.resolve('docs') : undefined;

/** The browser's globals used inside page functions (the tests type-check without the DOM library). */
interface BrowserWindow {
  getComputedStyle(element: unknown): { color: string };
}

let sandbox: RunningSandbox;
let browser: Browser;
let page: Page;
const pageErrors: string[] = [];

interface KeyStatusJson {
  latestUsableVersion: string;
  versions: { version: string }[];
  hubs: { hubName: string; keyIdentifiers: string[] }[];
}

async function api<T>(route: string, init: RequestInit = {}): Promise<T> {
  const response = await fetch(`${sandbox.appUrl}/api/${route}`, {
    ...init,
    headers: { 'x-functions-key': sandbox.functionKey, 'content-type': 'application/json' },
  });
  expect(response.ok, `${route}: ${response.status}`).toBe(true);
  return (await response.json()) as T;
}
const status = (keyId: string) => api<KeyStatusJson>(`keys/status?keyId=${encodeURIComponent(keyId)}`);

async function armAdmin(route: string, body: unknown): Promise<void> {
  const response = await fetch(`${sandbox.armAdmin}/${route}`, { method: 'POST', body: JSON.stringify(body) });
  expect(response.ok, `${route}: ${response.status} ${await response.clone().text()}`).toBe(true);
}

const keyRow = (keyId: string) => page.locator(`tr.key[data-key-id="${keyId}"]`);
const hubRows = () => page.locator('#hub-rows tbody tr.hub');

async function selectKey(keyId: string) {
  await keyRow(keyId).getByRole('button').click();
  await expect.poll(() => page.locator('#key-title').textContent()).toBe(`Key ${keyId.split('/').pop()}`);
}

async function screenshot(name: string) {
  if (!SCREENSHOTS) return;
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SCREENSHOTS, name), fullPage: true });
}

beforeAll(async () => {
  [sandbox, browser] = await Promise.all([startSandbox(), launchChromium()]);
  page = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
  page.on('pageerror', (error) => pageErrors.push(error.message));
  await page.goto(sandbox.dashboardUrl);
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await sandbox?.stop();
});

describe('the dashboard on the sandbox story', () => {
  it('shows the demo key healthy after the rotation, and no secret beyond the key it was opened with', async () => {
    await expect.poll(() => keyRow(KEY_ID).locator('.health').textContent()).toBe('Healthy');
    expect(await keyRow(KEY_ID).locator('.chip[data-standing="current"]').textContent()).toBe('5 current');
    expect(await keyRow(KEY_ID).textContent()).toContain('(event)');
    expect(await page.content()).not.toContain(sandbox.functionKey);
    await screenshot('dashboard.png');
  });

  it('shows the new version on the timeline as current, used by the five hubs', async () => {
    const { latestUsableVersion, versions } = await status(KEY_ID);
    const newest = latestUsableVersion.split('/').pop()!;
    expect(versions).toHaveLength(2);
    const bar = page.locator(`svg.timeline g.version[data-version="${newest}"]`);
    await expect.poll(() => bar.getAttribute('class')).toContain('current');
    expect(await bar.locator('text.label').textContent()).toBe(`${newest.slice(0, 8)} (current)`);
    expect(await bar.locator('text.hubs').textContent()).toBe('5 hubs');
    expect(await page.locator('svg.timeline g.version').count()).toBe(2);
    expect(await page.locator('svg.timeline .today').count()).toBe(1);
    expect(await page.locator('svg.timeline .planned text').textContent()).toMatch(/^rotation \d{4}-\d{2}-\d{2}$/);
  });

  it('lists all five hubs as current, and the activity with the rotation and five moves', async () => {
    await expect.poll(() => hubRows().count()).toBe(5);
    expect((await hubRows().locator('th').allTextContents()).sort()).toEqual(MOVED);
    expect(await hubRows().locator('.chip').allTextContents()).toEqual(Array(5).fill('current'));
    const results = await page.locator('table.audit tbody .chip').allTextContents();
    expect(results.filter((r) => r === 'moved')).toHaveLength(5);
    expect(results).toContain('rotated');
    expect(await page.locator('.job .legend').textContent()).toContain('5 moved');
  });

  it('leaves the other key’s hub untouched: on its one version, never rotated by the service', async () => {
    const other = await status(OTHER_KEY_ID);
    expect(other.versions).toHaveLength(1);
    await selectKey(OTHER_KEY_ID);
    await expect.poll(() => hubRows().locator('th').allTextContents()).toEqual(['hub-eus-telemetry']);
    expect(await hubRows().locator('td.mono').nth(1).textContent()).toBe(other.versions[0]!.version.slice(0, 8));
    expect(await keyRow(OTHER_KEY_ID).textContent()).toContain('not by this rotator yet');
    await selectKey(KEY_ID);
  });

  it('plans a rotation as a dry run that lists the hubs and changes nothing', async () => {
    const before = await status(KEY_ID);
    await page.getByRole('button', { name: 'Plan a rotation' }).click();
    const plan = page.locator('.plan-result');
    await plan.waitFor();
    expect((await plan.locator('li strong').allTextContents()).sort()).toEqual(MOVED);
    expect(await plan.textContent()).toContain('New version: RSA');
    expect((await status(KEY_ID)).versions).toHaveLength(before.versions.length);
    await screenshot('dashboard-plan.png');
  });

  it('carries out a rotation only after a second confirmation, and shows a hub that failed in red with its error', async () => {
    // A dismissed confirmation does nothing.
    await page.getByRole('button', { name: 'Rotate now…' }).click();
    await page.getByRole('button', { name: 'Cancel' }).click();
    expect((await status(KEY_ID)).versions).toHaveLength(2);

    await armAdmin('faults/operations', {
      count: 1,
      code: 'KeyVaultAccessForbidden',
      message: "The hub's identity is not allowed to unwrap with the key (injected).",
    });
    await page.getByRole('button', { name: 'Rotate now…' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Yes, rotate' }).click();
    await expect.poll(() => page.locator('.run-result').textContent(), { timeout: 20_000 }).toMatch(/^Rotation /);
    expect((await status(KEY_ID)).versions).toHaveLength(3);

    const failed = page.locator('#hub-rows tbody tr.hub.failed');
    await expect.poll(() => failed.count(), { timeout: 60_000, interval: 1000 }).toBe(1);
    expect(await failed.locator('.chip').textContent()).toBe('failed');
    expect(await failed.locator('.error-text').textContent()).toContain('KeyVaultAccessForbidden');
    // Red as the stylesheet paints it (the chip says "failed" in words too).
    const color = await failed
      .locator('th')
      .evaluate((e) => (globalThis as unknown as BrowserWindow).getComputedStyle(e).color);
    expect(color).toBe('rgb(164, 14, 38)');
    // The key's row is drawn from the same read as the hub table, so it already agrees with it.
    expect(await keyRow(KEY_ID).locator('.health').textContent()).toBe('At risk');
    expect(await keyRow(KEY_ID).locator('.reasons').textContent()).toContain('1 hub failed to move');
    await expect.poll(() => page.locator('table.audit tbody .chip.failed').count()).toBeGreaterThan(0);
    await screenshot('dashboard-failed.png');
  });

  it('shows an API error as a message, not a blank page, and recovers', async () => {
    await armAdmin('faults/requests', { status: 500, count: 1, method: 'GET', path: '/IotHubs' });
    await page.getByRole('button', { name: 'Refresh' }).click();
    await page.locator('#errors .error').waitFor();
    expect(await page.locator('#errors .error').textContent()).toMatch(/UPSTREAM_UNAVAILABLE/);
    expect(await page.locator('tr.key').count()).toBeGreaterThan(0);
    await page.getByRole('button', { name: 'Refresh' }).click();
    await expect.poll(() => page.locator('#errors .error').count()).toBe(0);
  });

  it('is usable from the keyboard: sort and filter the hubs without a mouse', async () => {
    await page.locator('button.sort', { hasText: 'Hub' }).focus();
    await page.keyboard.press('Enter');
    await page.keyboard.press('Enter');
    expect(await page.locator('th[aria-sort]').getAttribute('aria-sort')).toBe('descending');
    expect(await hubRows().first().locator('th').textContent()).toBe('hub-weu-labs');
    await page.locator('input[type="search"]').focus();
    await page.keyboard.type('retail');
    await expect.poll(() => hubRows().locator('th').allTextContents()).toEqual(['hub-eus-retail']);
    await page.keyboard.press('Control+A');
    await page.keyboard.press('Backspace');
  });

  it('fits a laptop screen and a wide monitor, and shows times in the viewer’s zone with UTC on hover', async () => {
    for (const viewport of [
      { width: 1280, height: 720 },
      { width: 2560, height: 1440 },
    ]) {
      const context = await browser.newContext({ viewport, timezoneId: 'Asia/Tokyo', locale: 'en-GB' });
      const view = await context.newPage();
      await view.goto(sandbox.dashboardUrl);
      await view.locator('#hub-rows tbody tr').first().waitFor();
      const overflow = await view.evaluate<number>('document.documentElement.scrollWidth - window.innerWidth');
      expect(overflow, `horizontal overflow at ${viewport.width}px`).toBeLessThanOrEqual(0);
      const stamp = view.locator('table.audit time').first();
      const [utc, shown, datetime] = await Promise.all([
        stamp.getAttribute('title'),
        stamp.textContent(),
        stamp.getAttribute('datetime'),
      ]);
      expect(utc).toBe(`${datetime!.replace('T', ' ').slice(0, 19)} UTC`);
      const tokyo = new Intl.DateTimeFormat('en-GB', { timeZone: 'Asia/Tokyo', timeStyle: 'short' });
      expect(shown).toContain(tokyo.format(new Date(datetime!)));
      await context.close();
    }
  });

  it('renders the hub table of a 1,000-hub fleet one page at a time, and filters across all of it', async () => {
    const { latestUsableVersion } = await status(KEY_ID);
    const identity = `/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/rg-identity/providers/Microsoft.ManagedIdentity/userAssignedIdentities/hub-cmk-reader`;
    for (let i = 0; i < 1000; i += 50) {
      await Promise.all(
        Array.from({ length: 50 }, (_, j) =>
          armAdmin('hubs', {
            subscriptionId: '11111111-1111-1111-1111-111111111111',
            resourceGroupName: 'rg-fleet',
            name: `hub-fleet-${String(i + j).padStart(4, '0')}`,
            hub: cmkHub({ keyIdentifier: latestUsableVersion, identity }),
          }),
        ),
      );
    }
    const started = Date.now();
    await page.getByRole('button', { name: 'Refresh' }).click();
    await expect
      .poll(() => page.locator('.hub-table .count').textContent(), { timeout: 30_000 })
      .toContain('1,005 hubs');
    const refreshMs = Date.now() - started;
    const renderMs = await page.evaluate(
      () => performance.getEntriesByName('hub-table-render').pop()?.duration ?? Number.NaN,
    );
    console.log(`dashboard: 1,005 hubs, hub table render ${renderMs.toFixed(1)} ms, refresh to table ${refreshMs} ms`);
    expect(renderMs).toBeGreaterThan(0);
    expect(await hubRows().count()).toBe(50);
    expect(await page.locator('.hub-table .pager span').textContent()).toBe('Page 1 of 21');
    await page.locator('input[type="search"]').fill('hub-fleet-0999');
    await expect.poll(() => hubRows().locator('th').allTextContents()).toEqual(['hub-fleet-0999']);
    expect(pageErrors).toEqual([]);
  });
});
