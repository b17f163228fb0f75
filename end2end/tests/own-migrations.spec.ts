// A product's own migration, from a file: amigo serves the example shop's migrations folder
// (examples/shop/migrations, AMIGO_MIGRATIONS_DIR) without the demo's, over the shop's own `orders` table, and
// staff run its table rewrite from the page. The pictures illustrate docs/writing-migrations.md.
import { test as base, expect, logIn, row, choose, screenshot, freePort, Instance } from './support/instance';
import path from 'node:path';

const root = path.resolve(__dirname, '../..');
const name = '0001_orders_by_shop';

const test = base.extend<{ shopInstance: Instance }>({
  shopInstance: async ({}, use, testInfo) => {
    const instance = new Instance('amigo_e2e_own_migrations', await freePort(), testInfo.outputPath('amigo.log'), {
      AMIGO_DEMO: '',
      AMIGO_MIGRATIONS_DIR: path.join(root, 'examples/shop/migrations'),
    });
    await instance.createDatabases();
    // The shop's table exists before amigo starts: a runner finds a migration whose table is missing not required.
    await instance.clickhouse(`CREATE DATABASE ${instance.database}`);
    await instance.clickhouse(
      `CREATE TABLE ${instance.database}.orders (order_id UInt64, shop_id UInt32, total_cents UInt64, created_at DateTime)
       ENGINE = MergeTree PARTITION BY toYYYYMM(created_at) ORDER BY order_id`,
    );
    await instance.clickhouse(
      `INSERT INTO ${instance.database}.orders SELECT number, 1 + number % 97 % 40, number * 13 % 10000,
              toDateTime('2025-01-01 00:00:00') + number * 60 FROM numbers(300000)`,
    );
    instance.createUsers();
    await instance.start();
    await use(instance);
    await instance.stop();
  },
  baseURL: async ({ shopInstance }, use) => {
    await use(shopInstance.url);
  },
});

test("run a product's own file migration from the page", async ({ page, shopInstance }) => {
  test.setTimeout(120_000);
  await logIn(page);
  await expect(page.locator('tr[data-migration]')).toHaveCount(1);
  const migration = row(page, name);
  await expect(migration).toContainText('Sort orders by shop and time');
  await expect(migration.locator('[data-field=status]')).toHaveText('Not started');
  await screenshot(page, 'own-migrations-list');

  await choose(page, name, 'Run');
  const dialog = page.getByRole('dialog', { name: `Run ${name}` });
  await expect(dialog.getByLabel('max_threads')).toBeVisible();
  await expect(dialog.getByLabel('verify_checksums')).toBeVisible();
  await screenshot(page, 'own-migrations-run');

  // The plan of a run with the values entered, before it runs: the recipe's statements, what they touch.
  await dialog.getByRole('button', { name: 'Plan' }).click();
  const plan = dialog.locator('[data-field=plan]');
  await expect(plan).toContainText('CREATE TABLE IF NOT EXISTS');
  await expect(plan).toContainText('ORDER BY (shop_id, created_at, order_id)');
  await expect(plan.locator('pre.sql').filter({ hasText: /^INSERT INTO/ })).toHaveCount(7);
  await expect(plan.locator('[data-field=plan-tables]')).toHaveText(/^orders: 7 partitions, 300000 rows, [\d.]+ [KM]iB$/);
  await expect(plan.locator('[data-field=plan-duration]')).toHaveText(/^unknown: this instance has not copied a partition yet/);
  await screenshot(page, 'own-migrations-plan');
  expect(JSON.parse(shopInstance.amigo(['migrations', 'list', '--json']))[0].status, 'a plan changes nothing').toBe('not_started');

  await dialog.getByRole('button', { name: 'Run' }).click();
  await expect(migration.locator('[data-field=status]')).toHaveText('Completed', { timeout: 90_000 });
  await screenshot(page, 'own-migrations-completed');

  // Its details: every partition copied, the attempt, and a plan that now estimates from the copies measured.
  await choose(page, name, 'Details');
  const details = page.locator('#details-panel');
  await expect(details.locator('[data-field=partitions-done]')).toHaveText('7 of 7 partitions done');
  await expect(details.locator('[data-field=attempt]')).toHaveCount(1);
  await expect(details.locator('[data-field=attempt-outcome]')).toHaveText('completed at operation 5');
  await expect(details.locator('[data-field=plan-duration]')).toContainText("as this instance's copies have measured");
  await screenshot(page, 'own-migrations-details');

  const database = shopInstance.database;
  expect(await shopInstance.clickhouse(`SELECT sorting_key FROM system.tables WHERE database = '${database}' AND name = 'orders'`)).toBe(
    'shop_id, created_at, order_id',
  );
  expect(await shopInstance.clickhouse(`SELECT count() FROM ${database}.orders`)).toBe('300000');
  expect(await shopInstance.clickhouse(`SELECT count() FROM ${database}.orders_by_order_id`)).toBe('300000');
  const listed = JSON.parse(shopInstance.amigo(['migrations', 'list', '--json']));
  expect(listed.map((entry: { name: string; status: string }) => [entry.name, entry.status])).toEqual([[name, 'completed']]);
});
