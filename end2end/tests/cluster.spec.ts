// 0001_events_sort_key on a ClickHouse cluster (scripts/cluster: two shards of two replicas and a ZooKeeper,
// started for this spec on free ports): the page shows each shard's progress, the node its statements run on
// and its query, and `amigo migrations list` (and `--json`) reports the same.
import { test as base, expect, logIn, row, choose, screenshot, freePort, Instance, STAFF } from './support/instance';
import { execFileSync } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';

const root = path.resolve(__dirname, '../..');
const clusterScript = path.join(root, 'scripts/cluster');
const name = '0001_events_sort_key';

/** The first of `count` consecutive loopback ports that are free now. */
async function freePortRange(count: number): Promise<number> {
  const bindable = (port: number) =>
    new Promise<boolean>((resolve) => {
      const probe = net.createServer();
      probe.once('error', () => resolve(false));
      probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(true)));
    });
  for (let attempt = 0; attempt < 50; attempt++) {
    const first = await freePort();
    if (first + count > 65535) continue;
    let all = true;
    for (let port = first; port < first + count && all; port++) all = await bindable(port);
    if (all) return first;
  }
  throw new Error(`no ${count} consecutive free ports`);
}

const test = base.extend<{ clusterInstance: Instance }>({
  clusterInstance: async ({}, use, testInfo) => {
    const clusterEnv = {
      ...process.env,
      AMIGO_CLUSTER_DIR: testInfo.outputPath('cluster'),
      AMIGO_CLUSTER_BASE_PORT: String(await freePortRange(25)),
    };
    const cluster = (...args: string[]) => execFileSync(clusterScript, args, { env: clusterEnv, encoding: 'utf8', timeout: 90_000 });
    cluster('start');
    const settings = Object.fromEntries(
      cluster('env')
        .trim()
        .split('\n')
        .map((line) => line.replace(/^export /, '').split('='))
        .map(([key, value]) => [key, value.replace(/^'|'$/g, '')]),
    );
    try {
      // The demo's four migrations, without the specs' set: the page as an operator of a cluster sees it.
      const instance = new Instance('amigo_e2e_cluster', await freePort(), testInfo.outputPath('amigo.log'), {
        ...settings,
        AMIGO_DEMO: 'on',
      });
      await instance.createDatabases();
      const created = await fetch(settings.AMIGO_CLICKHOUSE_URL, { method: 'POST', body: 'CREATE DATABASE amigo_e2e_cluster ON CLUSTER amigo_cluster' });
      expect(created.ok, await created.text()).toBe(true);
      instance.createUsers();
      instance.amigo(['seed', '--events', '1000000']);
      await instance.start();
      await use(instance);
      await instance.stop();
    } finally {
      cluster('stop');
    }
  },
  baseURL: async ({ clusterInstance }, use) => {
    await use(clusterInstance.url);
  },
});

test('run 0001 on a cluster and follow each shard', async ({ page, clusterInstance }) => {
  test.setTimeout(240_000);
  await logIn(page, STAFF);
  const migration = row(page, name);
  await choose(page, name, 'Run');
  const dialog = page.getByRole('dialog', { name: `Run ${name}` });
  await dialog.getByLabel('max_threads').fill('1');
  await dialog.getByRole('button', { name: 'Run' }).click();

  const shards = migration.locator('[data-shard]');
  await expect(shards).toHaveCount(2, { timeout: 60_000 });
  await expect(migration.locator('[data-shard="1"] [data-field=shard-query-id]')).not.toHaveText('', { timeout: 30_000 });
  await expect(migration.locator('[data-shard="1"] [data-field=shard-node]')).toHaveText(/^127\.0\.0\.1:\d+$/);
  await expect(migration.locator('[data-shard="2"] [data-field=shard-node]')).toHaveText(/^127\.0\.0\.1:\d+$/);
  await screenshot(page, 'cluster-running');

  const listed = JSON.parse(clusterInstance.amigo(['migrations', 'list', '--json']));
  const record = listed.find((entry: { name: string }) => entry.name === name);
  expect(record.shards.map((shard: { shard: number }) => shard.shard)).toEqual([1, 2]);
  expect(record.shards[0].node).toMatch(/^127\.0\.0\.1:\d+$/);
  expect(clusterInstance.amigo(['migrations', 'list'])).toMatch(/^  shard 2 +\d+%  operation \d +on 127\.0\.0\.1:\d+ +(amigo-0001_events_sort_key-op\d-shard2-|-$)/m);

  await expect(migration.locator('[data-field=status]')).toHaveText('Completed', { timeout: 180_000 });
  await expect(migration.locator('[data-field=shard-progress]')).toHaveText(['100%', '100%']);
  await screenshot(page, 'cluster-completed');
});
