// A rewrite of the demo's events run with its cut-over on hold: it copies and catches up, then waits ready to cut
// over while the product keeps inserting, each new row copied into the new table; staff cut it over, and every
// row is in the rewritten table once. The pictures illustrate docs/walkthrough.md.
import { expect, logIn, row, choose, screenshot, withSeededEvents } from './support/instance';

const name = '0001_events_sort_key';
const seeded = 200_000;
const test = withSeededEvents('amigo_e2e_cutover', seeded);

test('hold a rewrite ready to cut over while rows arrive, then cut over', async ({ page, eventsInstance: instance }) => {
  test.setTimeout(120_000);
  const events = `${instance.database}.events`;
  const insert = (tag: string) =>
    instance.clickhouse(
      `INSERT INTO ${events} (uuid, event, team_id, distinct_id, properties, timestamp)
       SELECT generateUUIDv4(), 'e2e cut-over', 1, '${tag}', '{}', now()`,
    );
  await logIn(page);
  await choose(page, name, 'Run');
  const run = page.getByRole('dialog', { name: `Run ${name}` });
  await run.getByLabel('hold_cutover').check();
  await run.getByRole('button', { name: 'Run' }).click();
  const migration = row(page, name);
  const status = migration.locator('[data-field=status]');
  await expect(status).toHaveText('Ready to cut over', { timeout: 60_000 });
  await expect(migration.locator('[data-field=situation]')).toHaveText(
    'copied and caught up; still copying new inserts until someone clicks Cut over',
  );

  // The product goes on inserting into events; the run copies each row into the new table while it waits.
  for (let index = 0; index < 5; index++) await insert(`while-ready-${index}`);
  const copied = () => instance.clickhouse(`SELECT count() FROM ${events}_0001_new WHERE event = 'e2e cut-over'`);
  await expect.poll(copied, { timeout: 30_000 }).toBe('5');
  await expect(status).toHaveText('Ready to cut over');
  await page.getByRole('button', { name: `Actions for ${name}` }).click();
  await expect(page.getByRole('menuitem')).toHaveText(['Cut over', 'Pause', 'Adjust', 'Stop', 'Stop and roll back', 'Details', 'View errors']);
  await page.keyboard.press('Escape');
  await screenshot(page, 'cutover-ready');

  await choose(page, name, 'Cut over');
  const confirm = page.getByRole('dialog', { name: `Cut over ${name}?` });
  await expect(confirm).toContainText('the original is kept as its backup');
  await screenshot(page, 'cutover-confirm');
  await confirm.getByRole('button', { name: 'Cut over' }).click();
  await expect(status).toHaveText('Completed', { timeout: 60_000 });
  await screenshot(page, 'cutover-completed');

  expect(await instance.clickhouse(`SELECT count() FROM ${events}`)).toBe(String(seeded + 5));
  expect(await instance.clickhouse(`SELECT uniqExact(uuid) FROM ${events}`)).toBe(String(seeded + 5));
  expect(await instance.clickhouse(`SELECT count() FROM ${events}_0001_backup`)).toBe(String(seeded + 5));
  expect(await instance.clickhouse(`SELECT sorting_key FROM system.tables WHERE database = '${instance.database}' AND name = 'events'`)).toContain('team_id');
});
