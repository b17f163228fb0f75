// Logging in as staff: the login form works before the WASM loads, the staff page arrives server-rendered
// with the migrations table in it, a wrong password is refused, and logging out ends the session.
import { test, expect, STAFF, STAFF_PAGE, logIn, row, screenshot } from './support/instance';

test('staff log in, see the server-rendered table, and log out', async ({ page }) => {
  // Without the WASM: plain HTML form posts and server redirects.
  await page.route('**/pkg/*.wasm', (route) => route.abort());
  await page.goto(STAFF_PAGE);
  await expect(page).toHaveURL(/\/login$/);
  await expect(page.getByRole('heading', { name: 'Log in' })).toBeVisible();
  await screenshot(page, 'login-form');

  await page.getByLabel('Email').fill(STAFF.email);
  await page.getByLabel('Password').fill('not the password');
  await page.getByRole('button', { name: 'Log in' }).click();
  await expect(page.getByRole('alert')).toHaveText('wrong email or password');
  await screenshot(page, 'login-refused');

  await page.getByLabel('Email').fill(STAFF.email);
  await page.getByLabel('Password').fill(STAFF.password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await expect(page).toHaveURL(new RegExp(`${STAFF_PAGE}$`));
  await expect(row(page, 'e2e_0001_copy_numbers')).toContainText('Not started');
  await expect(page.locator('.app')).toHaveAttribute('data-hydrated', 'false');

  // With the WASM: the same page hydrates and goes live.
  await page.unroute('**/pkg/*.wasm');
  await page.reload();
  await expect(page.locator('.app')).toHaveAttribute('data-hydrated', 'true');
  await expect(page.locator('.live-indicator')).toHaveText('Live');
  await expect(page.getByText(STAFF.email)).toBeVisible();
  await screenshot(page, 'login-staff-page');

  await page.getByRole('button', { name: 'Log out' }).click();
  await expect(page).toHaveURL(/\/login$/);
  await page.goto(STAFF_PAGE);
  await expect(page).toHaveURL(/\/login$/);
});

test('logging in through the hydrated form goes straight to the page', async ({ page }) => {
  await logIn(page);
  await expect(page.getByRole('heading', { name: 'Async migrations' })).toBeVisible();
  await expect(row(page, 'e2e_0003_slow_copy')).toBeVisible();
});
