// The Settings tab: every runtime setting with its description and value, saved with feedback; bad values
// are refused; turning auto-run on makes the runner start the next migration by itself.
import { test, expect, logIn, setSwitch, screenshot } from './support/instance';

test('toggle auto-run in settings and see it take effect', async ({ page }) => {
  await logIn(page);
  await page.getByRole('link', { name: 'Settings' }).click();
  const settings = page.locator('.setting');
  await expect(settings).toHaveCount(9);
  await expect(settings.first()).toContainText('Auto-run migrations');
  await expect(settings.first()).toContainText('Start the next required migration by itself');
  await expect(page.getByRole('switch', { name: 'Auto-run migrations' })).not.toBeChecked();
  await expect(page.getByLabel('Minimum free disk (%)')).toHaveValue('10');
  await expect(page.getByLabel('Cut-over wait (hours)')).toHaveValue('72');
  await screenshot(page, 'settings-tab');

  const interval = page.getByLabel('Health-check interval (seconds)');
  await interval.fill('0');
  await page.locator('.setting', { has: interval }).getByRole('button', { name: 'Save' }).click();
  await expect(page.locator('.setting', { has: interval }).getByRole('alert')).toHaveText(
    'setting health_check_interval_seconds: 0 is out of range: it must be from 1 to 3600',
  );
  await screenshot(page, 'settings-refused');
  await interval.fill('5');
  await page.locator('.setting', { has: interval }).getByRole('button', { name: 'Save' }).click();
  await expect(page.locator('.setting', { has: page.getByLabel('Health-check interval (seconds)') }).getByText('Saved')).toBeVisible();
  await expect(page.getByLabel('Health-check interval (seconds)')).toHaveValue('5');

  await setSwitch(page, 'Auto-run migrations', true);
  await screenshot(page, 'auto-run-on');
  await page.getByRole('link', { name: 'Audit log' }).click();
  const audit = page.locator('table.audit tbody tr');
  await expect(audit.filter({ hasText: 'auto-start' }).filter({ hasText: 'start' }).first()).toBeVisible({ timeout: 30_000 });
  await expect(audit.filter({ hasText: 'update setting' }).first()).toContainText('{"auto_start":true}');
  await screenshot(page, 'auto-run-audit');

  await page.getByRole('link', { name: 'Management' }).click();
  await expect(page.locator('tr[data-migration^="e2e_"]:not([data-status="not_started"])').first()).toBeVisible();
  await screenshot(page, 'auto-run-started');
  await setSwitch(page, 'Auto-run migrations', false);
});
