// The page renders on the server, shows both databases, and reacts to clicks only once the WASM hydrated it.
import { test, expect } from '@playwright/test';

const page_path = '/instance/async_migrations';

test('the server-rendered page shows both databases and needs the WASM to react', async ({ page }) => {
  await page.route('**/pkg/*.wasm', (route) => route.abort());
  await page.goto(page_path);
  await expect(page.getByRole('heading', { name: 'Async migrations' })).toBeVisible();
  await expect(page.locator('#postgres-version')).toContainText('PostgreSQL');
  await expect(page.locator('#clickhouse-version')).toHaveText(/^\d+\.\d+/);
  await page.locator('#refresh-servers').click();
  await page.waitForLoadState('networkidle');
  await expect(page.locator('#refresh-count')).toHaveText('');
  await expect(page.locator('.app')).toHaveAttribute('data-hydrated', 'false');
  await page.unroute('**/pkg/*.wasm');

  const wasm = page.waitForResponse((response) => response.url().endsWith('.wasm') && response.ok());
  await page.goto(page_path);
  await wasm;
  await expect(page.locator('.app')).toHaveAttribute('data-hydrated', 'true');
  await page.locator('#refresh-servers').click();
  await expect(page.locator('#refresh-count')).toHaveText('checked again once');
  await expect(page.locator('#clickhouse-version')).toHaveText(/^\d+\.\d+/);
  await page.screenshot({ path: '../docs/screenshots/staff-page-first-look.png', fullPage: true });
});
