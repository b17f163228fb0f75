// Pausing and continuing a rewrite of the demo's events (0001_events_sort_key on seeded events): the run waits
// while a partition of events has too many parts, staff pause it there, it holds (nothing runs, the runner
// keeps it), staff change its copy's threads, and once merges have caught up they continue it to the end. The pictures illustrate
// docs/walkthrough.md.
import { expect, logIn, row, choose, screenshot, withSeededEvents } from './support/instance';

const name = '0001_events_sort_key';
/** Parts in one partition from which a run waits (engine/src/pressure.rs, MAX_PARTS_PER_PARTITION). */
const MANY_PARTS = 150;

const test = withSeededEvents('amigo_e2e_pause', 200_000);

test('pause a waiting rewrite, then continue it to the end', async ({ page, eventsInstance: instance }) => {
  test.setTimeout(120_000);
  const events = `${instance.database}.events`;
  // The product's inserts pile up parts in this month's partition while merges are stopped.
  await instance.clickhouse(`SYSTEM STOP MERGES ${events}`);
  for (let insert = 0; insert < MANY_PARTS; insert++) {
    await instance.clickhouse(
      `INSERT INTO ${events} (uuid, event, team_id, distinct_id, properties, timestamp)
       SELECT generateUUIDv4(), 'e2e pause', 1, 'e2e-${insert}', '{}', now()`,
    );
  }

  await logIn(page);
  await choose(page, name, 'Run');
  await page.getByRole('dialog', { name: `Run ${name}` }).getByRole('button', { name: 'Run' }).click();
  const migration = row(page, name);
  const status = migration.locator('[data-field=status]');
  const situation = migration.locator('[data-field=situation]');
  await expect(status).toHaveText('Waiting', { timeout: 30_000 });
  await expect(situation).toContainText(`active parts (pausing from ${MANY_PARTS}) until merges catch up`);
  await screenshot(page, 'pause-waiting');

  await choose(page, name, 'Pause');
  await expect(status).toHaveText('Paused');
  await expect(migration).toHaveAttribute('data-phase', 'paused');
  await expect(situation).toHaveText('paused by admin@example.com');
  await page.getByRole('button', { name: `Actions for ${name}` }).click();
  await expect(page.getByRole('menuitem')).toHaveText(['Continue', 'Adjust', 'Stop', 'Stop and roll back', 'Details', 'View errors']);
  await page.keyboard.press('Escape');
  await screenshot(page, 'pause-paused');
  const statements = () =>
    instance.clickhouse(`SELECT count() FROM system.processes WHERE query_id LIKE 'amigo-${name}-%'`);
  expect(await statements()).toBe('0');
  expect(JSON.parse(instance.amigo(['migrations', 'list', '--json'])).find((listed: { name: string }) => listed.name === name))
    .toMatchObject({ status: 'running', phase: 'paused', allowed_actions: ['continue', 'adjust', 'stop', 'stop_and_rollback'] });

  // A knob while it holds: the copy's threads, taken at the next partition.
  await choose(page, name, 'Adjust');
  const adjust = page.getByRole('dialog', { name: `Adjust ${name}` });
  await expect(adjust.getByLabel('max_threads')).toHaveValue('0');
  await expect(adjust.getByLabel('catch_up_passes')).toHaveCount(0);
  await adjust.getByLabel('max_threads').fill('2');
  await screenshot(page, 'pause-adjust');
  await adjust.getByRole('button', { name: 'Adjust' }).click();
  await expect(adjust).toBeHidden();
  await expect(page.locator('.notice')).toContainText(`${name}: adjusted; it takes the new values at its next unit of work`);
  expect(JSON.parse(instance.amigo(['migrations', 'list', '--json'])).find((listed: { name: string }) => listed.name === name))
    .toMatchObject({ phase: 'paused', parameters: { max_threads: 2 } });

  // Merges catch up; the pause still holds the run until staff continue it.
  const month = await instance.clickhouse('SELECT toYYYYMM(now())');
  await instance.clickhouse(`SYSTEM START MERGES ${events}`);
  await instance.clickhouse(`OPTIMIZE TABLE ${events} PARTITION ${month} FINAL`);
  await expect(status).toHaveText('Paused');
  await choose(page, name, 'Continue');
  await expect(status).toHaveText('Completed', { timeout: 60_000 });
  await screenshot(page, 'pause-completed');
  await page.getByRole('link', { name: 'Audit log' }).click();
  const audit = page.locator('table.audit tbody tr');
  await expect(audit.filter({ hasText: 'adjust' })).toContainText('{"max_threads":{"from":0,"to":2}}');
  for (const action of ['start', 'pause', 'adjust', 'continue']) {
    await expect(audit.filter({ hasText: name }).filter({ has: page.getByText(action, { exact: true }) })).toHaveCount(1);
  }
  await screenshot(page, 'pause-audit');
});
