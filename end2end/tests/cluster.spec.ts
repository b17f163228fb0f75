// 0001_events_sort_key on a ClickHouse cluster (scripts/cluster: two shards of two replicas and a ZooKeeper,
// started for this spec on free ports): the page shows each shard's progress, the replica its statements run
// on, its query and how far behind its other replica is; a replica whose fetches are stopped holds the run
// (max_replica_lag_seconds) until it catches up; `amigo migrations list` (and `--json`) reports the same.
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

/** Runs one statement on node `node` (1-4) of the cluster whose ports start at `basePort` (its HTTP port is
 * base+N, see scripts/cluster) and returns its answer, trimmed; resent once when the request met a keep-alive
 * connection the server had just closed, as Instance.clickhouse does. */
async function onNode(basePort: number, node: number, sql: string): Promise<string> {
  const send = () => fetch(`http://127.0.0.1:${basePort + node}/`, { method: 'POST', body: sql });
  const response = await send().catch((error: Error) => {
    if ((error.cause as { code?: string } | undefined)?.code !== 'UND_ERR_SOCKET') throw error;
    return send();
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`node ${node} refused ${sql}: ${text}`);
  return text.trim();
}

/** The address the page and the records name node N by: its TCP port (base+10+N) as system.clusters lists it. */
const nodeAddress = (basePort: number, node: number) => `127.0.0.1:${basePort + 10 + node}`;

/** `text` for a RegExp, its dots escaped. */
const escaped = (text: string) => text.replace(/\./g, '\\.');

const test = base.extend<{ clusterBasePort: number; clusterInstance: Instance }>({
  clusterBasePort: async ({}, use) => {
    await use(await freePortRange(25));
  },
  clusterInstance: async ({ clusterBasePort }, use, testInfo) => {
    const clusterEnv = {
      ...process.env,
      AMIGO_CLUSTER_DIR: testInfo.outputPath('cluster'),
      AMIGO_CLUSTER_BASE_PORT: String(clusterBasePort),
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

test('run 0001 on a cluster, held while a replica lags, and follow each shard', async ({ page, clusterInstance, clusterBasePort }) => {
  test.setTimeout(300_000);
  const database = 'amigo_e2e_cluster';
  // Node 2, shard 1's second replica, stops fetching parts of events_local; an event that arrives on node 1
  // then waits in node 2's replication queue, and node 2 falls behind by a second a second.
  await onNode(clusterBasePort, 2, `SYSTEM STOP FETCHES ${database}.events_local`);
  await onNode(
    clusterBasePort,
    1,
    `INSERT INTO ${database}.events_local SELECT generateUUIDv4(), event, team_id, distinct_id, properties, timestamp, now() FROM ${database}.events_local LIMIT 1`,
  );
  const lagging = nodeAddress(clusterBasePort, 2);

  await logIn(page, STAFF);
  await page.getByRole('link', { name: 'Settings' }).click();
  const maxLag = page.getByLabel('Maximum replica lag (seconds)');
  await expect(maxLag).toHaveValue('300');
  await maxLag.fill('2');
  await page.locator('.setting', { has: maxLag }).getByRole('button', { name: 'Save' }).click();
  await expect(page.locator('.setting', { has: page.getByLabel('Maximum replica lag (seconds)') }).getByText('Saved')).toBeVisible();
  await page.getByRole('link', { name: 'Management' }).click();

  const migration = row(page, name);
  await choose(page, name, 'Run');
  const dialog = page.getByRole('dialog', { name: `Run ${name}` });
  await dialog.getByLabel('max_threads').fill('1');
  await dialog.getByRole('button', { name: 'Run' }).click();

  // Held before its first partition: shard 1 works on node 1, the least lagging replica, and the line of
  // node 2 under it says how far behind it is.
  const shards = migration.locator('[data-shard]');
  await expect(shards).toHaveCount(2, { timeout: 60_000 });
  const shard1 = migration.locator('[data-shard="1"]');
  await expect(migration.locator('[data-field=situation]')).toContainText(
    new RegExp(`^replica ${escaped(lagging)} of shard 1 is \\d+ s behind, with [1-9]\\d* replication tasks queued \\(pausing over 2 s, the setting max_replica_lag_seconds\\) until it catches up$`),
    { timeout: 30_000 },
  );
  await expect(shard1.locator('[data-field=shard-node]')).toHaveText(nodeAddress(clusterBasePort, 1));
  const laggingLine = shard1.locator(`[data-field=replica][data-replica="${lagging}"]`);
  await expect(laggingLine).toHaveAttribute('data-state', 'behind', { timeout: 15_000 });
  await expect(laggingLine).toHaveText(new RegExp(`^replica ${escaped(lagging)}: [1-9]\\d* s behind, [1-9]\\d* queued$`));
  await expect(migration.locator('[data-shard="2"] [data-field=replica]')).toHaveText(
    new RegExp(`^replica ${escaped(nodeAddress(clusterBasePort, 4))}: \\d+ s behind, \\d+ queued$`),
  );
  const held = JSON.parse(clusterInstance.amigo(['migrations', 'list', '--json'])).find((entry: { name: string }) => entry.name === name);
  expect(held.waiting_reason).toContain(`replica ${lagging} of shard 1`);
  expect(held.shards[0].replicas).toEqual([
    expect.objectContaining({ node: lagging, answering: true, readonly_tables: 0, lag_seconds: expect.any(Number), queue_size: expect.any(Number) }),
  ]);
  expect(held.shards[0].replicas[0].lag_seconds).toBeGreaterThan(0);
  await screenshot(page, 'cluster-lagging');

  // Node 2 fetches again, catches up, and the run goes on by itself.
  await onNode(clusterBasePort, 2, `SYSTEM START FETCHES ${database}.events_local`);
  await expect(migration.locator('[data-field=situation]')).toHaveCount(0, { timeout: 30_000 });
  await expect(migration.locator('[data-shard="1"] [data-field=shard-query-id]')).not.toHaveText('', { timeout: 30_000 });
  // Caught up: at most a moment behind while it fetches the copy's parts.
  await expect(laggingLine).toHaveText(new RegExp(`^replica ${escaped(lagging)}: [0-2] s behind, \\d+ queued$`), { timeout: 15_000 });
  await expect(migration.locator('[data-shard="2"] [data-field=shard-node]')).toHaveText(/^127\.0\.0\.1:\d+$/);
  await screenshot(page, 'cluster-running');

  const listed = JSON.parse(clusterInstance.amigo(['migrations', 'list', '--json']));
  const record = listed.find((entry: { name: string }) => entry.name === name);
  expect(record.shards.map((shard: { shard: number }) => shard.shard)).toEqual([1, 2]);
  expect(record.shards[0].node).toBe(nodeAddress(clusterBasePort, 1));
  expect(record.shards[1].replicas.map((replica: { node: string }) => replica.node)).toEqual([nodeAddress(clusterBasePort, 4)]);
  expect(clusterInstance.amigo(['migrations', 'list'])).toMatch(/^  shard 2 +\d+%  operation \d +on 127\.0\.0\.1:\d+ +(amigo-0001_events_sort_key-op\d-shard2-|-$)/m);

  await expect(migration.locator('[data-field=status]')).toHaveText('Completed', { timeout: 180_000 });
  await expect(migration.locator('[data-field=shard-progress]')).toHaveText(['100%', '100%']);
  await screenshot(page, 'cluster-completed');
});
