// Nobody watching: staff set a webhook in the Settings tab, send a test notification, and a run's completion
// reaches a local receiver (a Slack-compatible JSON body) by itself, each delivery listed with its answer.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test, expect, logIn, row, screenshot } from './support/instance';

const name = 'e2e_0001_copy_numbers';

/** A webhook receiver on loopback that keeps the JSON bodies it is sent. */
async function startReceiver(): Promise<{ url: string; bodies: Record<string, unknown>[]; close: () => void }> {
  const bodies: Record<string, unknown>[] = [];
  const server = http.createServer((request, response) => {
    let body = '';
    request.on('data', (chunk) => (body += chunk));
    request.on('end', () => {
      bodies.push(JSON.parse(body));
      response.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/hooks/amigo`, bodies, close: () => server.close() };
}

test('set a webhook, send a test, and get told when a migration completes', async ({ page }) => {
  const receiver = await startReceiver();
  await logIn(page);
  await page.getByRole('link', { name: 'Settings' }).click();
  const notifications = page.locator('table.notifications tbody tr');
  await expect(page.getByText('No notification has been sent.')).toBeVisible();
  await page.getByRole('button', { name: 'Send a test notification' }).click();
  await expect(page.getByRole('alert').filter({ hasText: 'no webhook is set' })).toHaveText(
    'no webhook is set: save the setting webhook_url first',
  );

  const webhook = page.getByLabel('Notification webhook');
  await webhook.fill('hooks.example.com/amigo');
  await page.locator('.setting', { has: webhook }).getByRole('button', { name: 'Save' }).click();
  await expect(page.locator('.setting', { has: webhook }).getByRole('alert')).toContainText(
    'setting webhook_url: "hooks.example.com/amigo" is not an address',
  );
  await webhook.fill(receiver.url);
  await page.locator('.setting', { has: webhook }).getByRole('button', { name: 'Save' }).click();
  await expect(page.locator('.setting', { has: page.getByLabel('Notification webhook') }).getByText('Saved')).toBeVisible();

  await page.getByRole('button', { name: 'Send a test notification' }).click();
  await expect(notifications.first()).toContainText('amigo: a test notification, sent by admin@example.com.');
  await expect(notifications.first()).toContainText('delivered after 1 attempt', { timeout: 15_000 });
  await expect(notifications.first()).toContainText('HTTP 200');
  expect(receiver.bodies).toHaveLength(1);
  expect(receiver.bodies[0]).toMatchObject({ event: 'test', text: 'amigo: a test notification, sent by admin@example.com.' });

  await page.getByRole('link', { name: 'Management' }).click();
  await page.getByRole('button', { name: `Actions for ${name}` }).click();
  await page.getByRole('menuitem', { name: 'Run', exact: true }).click();
  const dialog = page.getByRole('dialog', { name: `Run ${name}` });
  await dialog.getByLabel('rows').fill('50');
  await dialog.getByRole('button', { name: 'Run' }).click();
  await expect(row(page, name)).toHaveAttribute('data-status', 'completed', { timeout: 30_000 });

  await page.getByRole('link', { name: 'Settings' }).click();
  await expect(notifications.first()).toContainText(`amigo: ${name} completed.`);
  await expect(notifications.first()).toContainText('delivered after 1 attempt', { timeout: 15_000 });
  await expect.poll(() => receiver.bodies.length).toBe(2);
  expect(receiver.bodies[1]).toMatchObject({ event: 'completed', migration: name, text: `amigo: ${name} completed.` });
  await page.locator('#notifications-title').scrollIntoViewIfNeeded();
  await screenshot(page, 'notifications-delivered');
  receiver.close();
});
