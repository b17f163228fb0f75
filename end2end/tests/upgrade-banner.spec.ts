// The upgrade banner names the migrations that block this version, and clears by itself once they are
// completed on a version in their range (here by the CLI in another process, as the walkthrough says).
import { test, expect, logIn, row, choose, screenshot } from './support/instance';

const name = 'e2e_0000_legacy_cleanup';

test('the upgrade banner names what blocks the upgrade and clears when it is done', async ({ page, instance }) => {
  await logIn(page);
  const banner = page.locator('#upgrade-banner');
  await expect(banner).toContainText('Upgrade blocked: amigo 0.1.0 needs 1 async migration completed first');
  await expect(banner).toContainText(`${name} — runs on amigo 0.0.1 to 0.0.9; not started`);
  await screenshot(page, 'upgrade-banner');

  let refusal = '';
  try {
    instance.amigo(['check-upgrade']);
  } catch (error) {
    refusal = String((error as { stdout?: string }).stdout);
  }
  expect(refusal).toContain(`- ${name} - Available on amigo versions 0.0.1 - 0.0.9`);

  await choose(page, name, 'Run');
  const dialog = page.getByRole('dialog', { name: `Run ${name}` });
  await dialog.getByRole('button', { name: 'Run' }).click();
  await expect(dialog.getByRole('alert')).toHaveText(
    `cannot start ${name}: this instance runs amigo 0.1.0, and it runs on amigo 0.0.1 - 0.0.9 only`,
  );
  await screenshot(page, 'upgrade-refused-on-this-version');
  await dialog.getByRole('button', { name: 'Cancel' }).click();

  const output = instance.amigo(['migrations', 'start', name, '--wait'], { AMIGO_INSTANCE_VERSION: '0.0.9' });
  expect(output).toContain(`${name}: completed successfully`);
  await expect(row(page, name).locator('[data-field=status]')).toHaveText('Completed');
  await expect(banner).toBeHidden();
  await screenshot(page, 'upgrade-cleared');
});
