// Running a migration: the menu offers Run, the form shows each parameter's default and description, and
// progress climbs to 100% through live updates, with no reload and no polling.
import { test, expect, logIn, row, screenshot } from './support/instance';

const name = 'e2e_0001_copy_numbers';

test('run a migration and watch its progress reach 100% live', async ({ page }) => {
  await logIn(page);
  await expect(page.locator('.live-indicator')).toHaveText('Live');
  const serverCalls: string[] = [];
  page.on('request', (request) => {
    const path = new URL(request.url()).pathname;
    if (path.startsWith('/api/')) serverCalls.push(path);
  });
  await page.evaluate(() => ((window as unknown as { notReloaded: boolean }).notReloaded = true));

  // The menu opens from the keyboard and offers only what "not started" allows.
  await page.getByRole('button', { name: `Actions for ${name}` }).focus();
  await page.keyboard.press('ArrowDown');
  await expect(page.getByRole('menu')).toBeVisible();
  await expect(page.getByRole('menuitem')).toHaveText(['Run', 'Details', 'View errors']);
  await expect(page.getByRole('menuitem', { name: 'Run' })).toBeFocused();
  await page.keyboard.press('ArrowDown');
  await expect(page.getByRole('menuitem', { name: 'Details' })).toBeFocused();
  await screenshot(page, 'run-menu');
  await page.keyboard.press('Home');
  await page.keyboard.press('Enter');

  const dialog = page.getByRole('dialog', { name: `Run ${name}` });
  await expect(dialog.getByLabel('rows')).toHaveValue('400');
  await expect(dialog).toContainText('How many numbers to copy; each takes 10 ms');
  await expect(dialog).toContainText('Default 400; a whole number from 1 to 100000.');
  await screenshot(page, 'run-parameters');
  await dialog.getByLabel('rows').fill('600');
  await dialog.getByRole('button', { name: 'Run' }).click();
  await expect(dialog).toBeHidden();
  await expect(page.getByRole('status').filter({ hasText: `${name}: started` })).toBeVisible();

  const migration = row(page, name);
  const progress = migration.locator('[data-field=progress]');
  const seen = new Set<number>();
  await expect
    .poll(
      async () => {
        const percent = parseInt((await progress.textContent()) ?? '0', 10);
        seen.add(percent);
        return percent;
      },
      { timeout: 30_000, intervals: [100] },
    )
    .toBeGreaterThanOrEqual(55);
  await expect(migration.locator('[data-field=status]')).toHaveText('Running');
  await expect(migration.locator('[data-field=operation]')).toHaveText('3 of 4');
  await expect(migration.locator('[data-field=timing]')).toContainText(/ETA \d+ s/);
  await screenshot(page, 'run-progress');

  await expect(migration.locator('[data-field=status]')).toHaveText('Completed', { timeout: 30_000 });
  await expect(progress).toHaveText('100%');
  await expect(migration.locator('[data-field=query-id]')).toHaveText('—');
  const between = [...seen].filter((percent) => percent > 0 && percent < 100);
  expect(between.length, `progress seen: ${[...seen].join(', ')}`).toBeGreaterThan(1);
  expect(await page.evaluate(() => (window as unknown as { notReloaded?: boolean }).notReloaded)).toBe(true);
  expect(serverCalls.filter((path) => path === '/api/list_migrations'), 'the table is never polled').toEqual([]);
  await screenshot(page, 'run-completed');

  // The same page at phone width: the table becomes cards.
  await page.setViewportSize({ width: 390, height: 844 });
  await expect(migration).toBeVisible();
  await screenshot(page, 'run-phone');
});
