// Every spec gets its own amigo: fresh Postgres and ClickHouse databases named after the test, two accounts
// (a staff one and a non-staff one, created with the built binary's `amigo users create`), and
// `amigo serve` on a free port with the end-to-end demo migrations (AMIGO_DEMO=e2e: the demo's four and the specs' set).
import { test as base, expect, type Page } from '@playwright/test';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

export { expect };

export const STAFF = { email: 'admin@example.com', password: 'correct horse battery staple' };
export const VIEWER = { email: 'viewer@example.com', password: 'another long passphrase' };

const root = path.resolve(__dirname, '../../..');
const amigoBinary = path.join(root, 'target/debug/amigo');
const serverUrl = process.env.AMIGO_DATABASE_URL ?? 'postgres://amigo@127.0.0.1:55432/amigo';
export const clickhouseUrl = process.env.AMIGO_CLICKHOUSE_URL ?? 'http://127.0.0.1:58123';

/** One amigo instance: its databases, its server process, and the CLI pointed at it. */
export class Instance {
  private server?: ChildProcess;

  constructor(
    readonly database: string,
    readonly port: number,
    private readonly logFile: string,
    /** Settings every amigo command of this instance adds, e.g. a cluster's. */
    private readonly settings: Record<string, string> = {},
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The environment every amigo command of this instance runs with; a setting set to '' is removed. */
  env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
    const databaseUrl = new URL(serverUrl);
    databaseUrl.pathname = `/${this.database}`;
    const environment: NodeJS.ProcessEnv = {
      ...process.env,
      AMIGO_DATABASE_URL: databaseUrl.toString(),
      AMIGO_CLICKHOUSE_URL: clickhouseUrl,
      AMIGO_CLICKHOUSE_DATABASE: this.database,
      AMIGO_DEMO: 'e2e',
      AMIGO_SKIP_UPGRADE_CHECK: 'true',
      AMIGO_LOG: 'info,sqlx=warn',
      ...this.settings,
      ...extra,
    };
    for (const key of Object.keys(this.settings)) {
      if (environment[key] === '') delete environment[key];
    }
    return environment;
  }

  /** Runs `amigo ARGS` against this instance and returns what it printed. */
  amigo(args: string[], extra: Record<string, string> = {}): string {
    return execFileSync(amigoBinary, args, { env: this.env(extra), encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'pipe'] });
  }

  /** Runs one statement on the ClickHouse server and returns its text answer, trimmed. ClickHouse closes an idle
   * keep-alive connection after 3 s and Node reuses one for 4 s: a request sent on a connection the server just
   * closed never reached it, and is sent again once on a new one. */
  async clickhouse(sql: string): Promise<string> {
    const send = () => fetch(clickhouseUrl, { method: 'POST', body: sql });
    const response = await send().catch((error: Error) => {
      if ((error.cause as { code?: string } | undefined)?.code !== 'UND_ERR_SOCKET') throw error;
      return send();
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`ClickHouse refused ${sql}: ${text}`);
    return text.trim();
  }

  async createDatabases(): Promise<void> {
    execFileSync('psql', [serverUrl, '-q', '-c', `DROP DATABASE IF EXISTS "${this.database}" WITH (FORCE)`, '-c', `CREATE DATABASE "${this.database}"`], {
      stdio: 'pipe',
    });
    await this.clickhouse(`DROP DATABASE IF EXISTS \`${this.database}\``);
  }

  createUsers(): void {
    this.amigo(['users', 'create', '--email', STAFF.email], { AMIGO_USER_PASSWORD: STAFF.password });
    this.amigo(['users', 'create', '--email', VIEWER.email], { AMIGO_USER_PASSWORD: VIEWER.password });
  }

  /** Starts `amigo serve` and waits until /healthz answers. */
  async start(): Promise<void> {
    const log = createWriteStream(this.logFile, { flags: 'a' });
    this.server = spawn(amigoBinary, ['serve', '--listen', `127.0.0.1:${this.port}`, '--site-root', path.join(root, 'target/site')], {
      env: this.env(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.server.stdout?.pipe(log);
    this.server.stderr?.pipe(log);
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (this.server.exitCode !== null) throw new Error(`amigo serve exited with ${this.server.exitCode}; see ${this.logFile}`);
      try {
        if ((await fetch(`${this.url}/healthz`)).ok) return;
      } catch {
        // not listening yet
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`amigo serve did not answer within 30 s; see ${this.logFile}`);
  }

  /** Stops the server the way an operator does (SIGTERM) and waits until it has exited. */
  async stop(): Promise<void> {
    const server = this.server;
    if (!server || server.exitCode !== null) return;
    const exited = new Promise((resolve) => server.once('exit', resolve));
    server.kill('SIGTERM');
    const timeout = setTimeout(() => server.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timeout);
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

export const test = base.extend<{ instance: Instance }>({
  instance: async ({}, use, testInfo) => {
    const slug = `${path.basename(testInfo.file, '.spec.ts')}_${testInfo.title}`.replace(/[^a-z0-9]+/gi, '_').toLowerCase();
    mkdirSync(testInfo.outputDir, { recursive: true });
    const instance = new Instance(`amigo_e2e_${slug}`.slice(0, 60), await freePort(), testInfo.outputPath('amigo.log'));
    await instance.createDatabases();
    instance.createUsers();
    await instance.start();
    await use(instance);
    await instance.stop();
  },
  baseURL: async ({ instance }, use) => {
    await use(instance.url);
  },
});

/** The specs' test with `eventsInstance`: the demo's four migrations (no specs' set) over `events` demo events,
 * seeded into `database` before amigo starts, and the page's base URL on it. */
export function withSeededEvents(database: string, events: number) {
  return test.extend<{ eventsInstance: Instance }>({
    eventsInstance: async ({}, use, testInfo) => {
      const instance = new Instance(database, await freePort(), testInfo.outputPath('amigo.log'), { AMIGO_DEMO: 'on' });
      await instance.createDatabases();
      instance.createUsers();
      instance.amigo(['seed', '--events', String(events)]);
      await instance.start();
      await use(instance);
      await instance.stop();
    },
    baseURL: async ({ eventsInstance }, use) => {
      await use(eventsInstance.url);
    },
  });
}

export const STAFF_PAGE = '/instance/async_migrations';

/** Where the walkthrough's pictures go: docs/screenshots/<flow>-<step>.png. */
export async function screenshot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: path.join(root, 'docs/screenshots', `${name}.png`), fullPage: true, animations: 'disabled' });
}

/** Logs in through the form and waits until the page is hydrated (menus need the WASM). */
export async function logIn(page: Page, user = STAFF): Promise<void> {
  await page.goto('/login');
  await page.getByLabel('Email').fill(user.email);
  await page.getByLabel('Password').fill(user.password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await expect(page).toHaveURL(new RegExp(`${STAFF_PAGE}$`));
  await expect(page.locator('.app')).toHaveAttribute('data-hydrated', 'true');
}

/** The table row of a migration. */
export function row(page: Page, name: string) {
  return page.locator(`tr[data-migration="${name}"]`);
}

/** Opens a migration's "…" menu and chooses an item. */
export async function choose(page: Page, migration: string, item: string): Promise<void> {
  await page.getByRole('button', { name: `Actions for ${migration}` }).click();
  await page.getByRole('menuitem', { name: item, exact: true }).click();
}

/** Sets a boolean setting in the Settings tab and waits for "Saved". */
export async function setSwitch(page: Page, label: string, on: boolean): Promise<void> {
  await page.getByRole('link', { name: 'Settings' }).click();
  const toggle = page.getByRole('switch', { name: label });
  if ((await toggle.isChecked()) !== on) {
    await toggle.click({ force: true });
    await expect(page.locator('.setting', { has: toggle }).getByText('Saved')).toBeVisible();
  }
  await expect(toggle).toBeChecked({ checked: on });
}
