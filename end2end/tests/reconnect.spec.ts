// Live updates survive a server restart: the page says it is reconnecting, reconnects by itself, and then
// shows a run started by another process without a reload.
import { test, expect, logIn, row, screenshot } from './support/instance';

const name = 'e2e_0001_copy_numbers';

test('the page reconnects by itself after the server restarts', async ({ page, instance }) => {
  await logIn(page);
  const live = page.locator('.live-indicator');
  await expect(live).toHaveText('Live');

  await instance.stop();
  await expect(live).toHaveText('Reconnecting…');
  await screenshot(page, 'reconnect-server-down');
  await instance.start();
  await expect(live).toHaveText('Live', { timeout: 30_000 });

  instance.amigo(['migrations', 'start', name, '--param', 'rows=200']);
  await expect(row(page, name).locator('[data-field=status]')).toHaveText(/Starting|Running/);
  await expect(row(page, name).locator('[data-field=status]')).toHaveText('Completed', { timeout: 30_000 });
});
