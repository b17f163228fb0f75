// Stop and roll back: the query is killed, every completed operation is undone, and the errors panel
// says who stopped it during which operation.
import { test, expect, logIn, row, choose, screenshot, STAFF } from './support/instance';

const name = 'e2e_0003_slow_copy';

test('stop and roll back a running migration', async ({ page, instance }) => {
  await logIn(page);
  await choose(page, name, 'Run');
  await page.getByRole('dialog', { name: `Run ${name}` }).getByRole('button', { name: 'Run' }).click();
  const migration = row(page, name);
  await expect(migration.locator('[data-field=query-id]')).toHaveAttribute('data-query-id', /^amigo-e2e_0003_slow_copy-op1-/, {
    timeout: 30_000,
  });
  const tables = () =>
    instance.clickhouse(`SELECT count() FROM system.tables WHERE database = '${instance.database}' AND name LIKE 'e2e\\_slow\\_%'`);
  expect(await tables()).toBe('2');

  await choose(page, name, 'Stop and roll back');
  const dialog = page.getByRole('dialog', { name: `Stop and roll back ${name}?` });
  await expect(dialog).toContainText('every operation it completed is undone');
  await screenshot(page, 'stop-and-rollback-confirm');
  await dialog.getByRole('button', { name: 'Stop and roll back' }).click();

  await expect(migration.locator('[data-field=status]')).toHaveText('Rolled back', { timeout: 30_000 });
  await expect(migration.locator('[data-field=progress]')).toHaveText('0%');
  expect(await tables()).toBe('0');
  await choose(page, name, 'View errors');
  const panel = page.locator('#errors-panel');
  await expect(panel).toContainText(`stopped by ${STAFF.email} during operation 1`);
  await expect(panel).toContainText('1 · copy every number, 10 ms per row');
  await screenshot(page, 'stop-and-rollback-done');
});
