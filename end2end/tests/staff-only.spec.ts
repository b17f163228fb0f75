// A logged-in account that is not staff gets a clear "staff only" page, and the server functions and the
// event stream refuse it too, whatever the page shows.
import { test, expect, VIEWER, STAFF_PAGE, screenshot } from './support/instance';

test('a non-staff account is refused', async ({ page }) => {
  await page.goto('/login');
  await page.getByLabel('Email').fill(VIEWER.email);
  await page.getByLabel('Password').fill(VIEWER.password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await expect(page).toHaveURL(new RegExp(`${STAFF_PAGE}$`));
  await expect(page.getByRole('heading', { name: 'Staff only' })).toBeVisible();
  await expect(page.getByText(`You are logged in as ${VIEWER.email}`)).toBeVisible();
  await expect(page.locator('tr[data-migration]')).toHaveCount(0);
  await screenshot(page, 'staff-only-refused');

  const origin = new URL(page.url()).origin;
  const call = await page.request.post('/api/start_migration', {
    headers: { origin },
    data: { name: 'e2e_0001_copy_numbers', parameters: {} },
  });
  expect(call.status()).toBe(403);
  expect((await page.request.get('/api/events')).status()).toBe(403);
  const list = await page.request.post('/api/list_migrations', { headers: { origin }, data: {} });
  expect(list.status()).toBe(403);
});
