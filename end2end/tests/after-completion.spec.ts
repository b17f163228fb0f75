// After a rewrite of the demo's events has completed: its backup (the original table) is kept and the row says
// for how long and what it costs; rolling it back swaps the original back; run again, Finalize drops the backup
// after a confirmation that shows the disk it frees. The pictures illustrate docs/walkthrough.md.
import { expect, logIn, row, choose, screenshot, withSeededEvents } from './support/instance';

const name = '0001_events_sort_key';
const seeded = 200_000;
const test = withSeededEvents('amigo_e2e_after_completion', seeded);

test('roll back a completed rewrite from its backup, then finalize another', async ({ page, eventsInstance: instance }) => {
  test.setTimeout(120_000);
  const tables = () =>
    instance.clickhouse(`SELECT groupArray(name) FROM (SELECT name FROM system.tables WHERE database = '${instance.database}' ORDER BY name)`);
  const sortingKey = () =>
    instance.clickhouse(`SELECT sorting_key FROM system.tables WHERE database = '${instance.database}' AND name = 'events'`);
  const originalKey = await sortingKey();
  const run = async () => {
    await choose(page, name, 'Run');
    await page.getByRole('dialog', { name: `Run ${name}` }).getByRole('button', { name: 'Run' }).click();
    await expect(status).toHaveText('Completed', { timeout: 60_000 });
  };
  await logIn(page);
  const migration = row(page, name);
  const status = migration.locator('[data-field=status]');
  const situation = migration.locator('[data-field=situation]');
  await run();
  await expect(situation).toHaveText(/^backup events_0001_backup kept for \d+ s: [\d.]+ [KMG]iB on disk; roll back from it, or Finalize to drop it$/);
  await page.getByRole('button', { name: `Actions for ${name}` }).click();
  await expect(page.getByRole('menuitem')).toHaveText(['Roll back', 'Finalize', 'Details', 'View errors']);
  await page.keyboard.press('Escape');
  await screenshot(page, 'after-completion-backup');

  await choose(page, name, 'Roll back');
  const rollback = page.getByRole('dialog', { name: `Roll back ${name}?` });
  await expect(rollback).toContainText('swapping the backup it kept back in place of the table it made');
  await rollback.getByRole('button', { name: 'Roll back' }).click();
  await expect(status).toHaveText('Rolled back', { timeout: 60_000 });
  expect(await sortingKey()).toBe(originalKey);
  expect(await instance.clickhouse(`SELECT count() FROM ${instance.database}.events`)).toBe(String(seeded));
  expect(await tables()).not.toContain('events_0001_backup');

  await run();
  await choose(page, name, 'Finalize');
  const finalize = page.getByRole('dialog', { name: `Finalize ${name}?` });
  await expect(finalize).toContainText(/Its backup events_0001_backup is dropped, which frees [\d.]+ [KMG]iB on disk/);
  await screenshot(page, 'after-completion-finalize');
  await finalize.getByRole('button', { name: 'Finalize' }).click();
  await expect(page.locator('.notice')).toContainText(`${name}: finalized: its backup is dropped`);
  await expect(situation).toHaveCount(0);
  expect(await tables()).not.toContain('events_0001_backup');
  expect(await sortingKey()).not.toBe(originalKey);
  await page.getByRole('button', { name: `Actions for ${name}` }).click();
  await expect(page.getByRole('menuitem')).toHaveText(['Details', 'View errors']);
  await page.keyboard.press('Escape');
  await screenshot(page, 'after-completion-finalized');
});
