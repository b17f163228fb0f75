// A failure on purpose with auto-rollback off: bad parameters are refused first and change nothing, the
// failure leaves the migration errored with its error in the panel, and Rollback undoes it.
import { test, expect, logIn, row, choose, setSwitch, screenshot } from './support/instance';

const name = 'e2e_0002_fail_on_request';

test('roll back after an injected failure, with the error visible', async ({ page, instance }) => {
  await logIn(page);
  await setSwitch(page, 'Disable auto-rollback', true);
  await page.getByRole('link', { name: 'Management' }).click();

  await choose(page, name, 'Run');
  const dialog = page.getByRole('dialog', { name: `Run ${name}` });
  await expect(dialog.getByLabel('fail_at_operation')).toHaveValue('-1');
  await dialog.getByLabel('fail_at_operation').fill('7');
  await dialog.getByRole('button', { name: 'Run' }).click();
  await expect(dialog.getByRole('alert')).toHaveText(
    `parameter fail_at_operation of ${name}: 7 is out of range: it must be from -1 to 2`,
  );
  await screenshot(page, 'rollback-bad-parameter');
  await expect(row(page, name).locator('[data-field=status]')).toHaveText('Not started');

  await dialog.getByLabel('fail_at_operation').fill('2');
  await dialog.getByRole('button', { name: 'Run' }).click();
  await expect(dialog).toBeHidden();
  const status = row(page, name).locator('[data-field=status]');
  await expect(status).toHaveText('Errored', { timeout: 30_000 });
  await expect(row(page, name).locator('[data-field=operation]')).toHaveText('3 of 3');

  await choose(page, name, 'View errors');
  const panel = page.locator('#errors-panel');
  await expect(panel).toContainText('operation 2 failed: injected failure: fail_at_operation is 2');
  await expect(panel).toContainText('2 · check the scratch table');
  await screenshot(page, 'rollback-errors');

  await choose(page, name, 'Roll back');
  const confirm = page.getByRole('dialog', { name: `Roll back ${name}?` });
  await expect(confirm).toContainText('Every operation it completed is undone');
  await screenshot(page, 'rollback-confirm');
  await confirm.getByRole('button', { name: 'Roll back' }).click();
  await expect(status).toHaveText('Rolled back', { timeout: 30_000 });
  const tables = await instance.clickhouse(
    `SELECT count() FROM system.tables WHERE database = '${instance.database}' AND name LIKE 'e2e\\_scratch\\_%'`,
  );
  expect(tables).toBe('0');
  await screenshot(page, 'rollback-rolled-back');
});
