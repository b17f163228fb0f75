// Stopping a running migration: the confirmation names it, its ClickHouse query is killed at once, and
// the page shows it errored with no query, ready to resume or roll back.
import { test, expect, logIn, row, choose, screenshot } from './support/instance';

const name = 'e2e_0003_slow_copy';

test('stop a running migration and see its query gone', async ({ page, instance }) => {
  await logIn(page);
  await choose(page, name, 'Run');
  await page.getByRole('dialog', { name: `Run ${name}` }).getByRole('button', { name: 'Run' }).click();

  const migration = row(page, name);
  const queryCell = migration.locator('[data-field=query-id]');
  await expect(migration.locator('[data-field=operation]')).toHaveText('2 of 2', { timeout: 30_000 });
  await expect(queryCell).toHaveAttribute('data-query-id', /^amigo-e2e_0003_slow_copy-op1-/);
  const queryId = (await queryCell.getAttribute('data-query-id')) ?? '';
  const running = () => instance.clickhouse(`SELECT count() FROM system.processes WHERE query_id = '${queryId}'`);
  await expect.poll(running).toBe('1');
  await expect(migration.locator('[data-field=timing]')).toContainText('Elapsed');
  await screenshot(page, 'stop-running');

  await choose(page, name, 'Stop');
  const dialog = page.getByRole('dialog', { name: `Stop ${name}?` });
  await expect(dialog).toContainText('Its running ClickHouse query is killed at once');
  await screenshot(page, 'stop-confirm');
  await dialog.getByRole('button', { name: 'Stop', exact: true }).click();

  await expect(migration.locator('[data-field=status]')).toHaveText('Errored');
  await expect(queryCell).toHaveText('—');
  expect(await running()).toBe('0');
  await page.getByRole('button', { name: `Actions for ${name}` }).click();
  await expect(page.getByRole('menuitem')).toHaveText(['Resume', 'Roll back', 'Mark completed', 'Details', 'View errors']);
  await page.keyboard.press('Escape');
  await expect(page.getByRole('menu')).toBeHidden();
  await expect(page.getByRole('button', { name: `Actions for ${name}` })).toBeFocused();
  await screenshot(page, 'stop-stopped');
});
