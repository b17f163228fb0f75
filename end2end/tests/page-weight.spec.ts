// What the staff page costs: bytes on the wire (HTML + JS + WASM + CSS, as served: the bundle precompressed with
// brotli by scripts/build) and the time from the page request to a hydrated page, in Chromium with a cold cache.
// Written to target/test-logs/page-weight.json and printed; the budgets are a little above what it measures now
// (bench/README.md has the figures), so that a regression shows.
import { test, expect, STAFF, STAFF_PAGE } from './support/instance';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/**
 * HTML + JS + WASM + CSS as transferred: 247.8 KB measured on 2026-12-07, the goal 250 KB (bench/README.md). The
 * dialogs, the details and the errors table are WASM chunks loaded when first shown: not here.
 */
const TOTAL_BUDGET_BYTES = 250_000;
/** From the page request to the hydrated page, on localhost: 290 to 450 ms on 2 cores (2026-12-07). */
const HYDRATED_BUDGET_MS = 1_000;

type Kind = 'html' | 'js' | 'wasm' | 'css' | 'other';

function kind(url: string, contentType: string): Kind {
  if (url.endsWith('.wasm')) return 'wasm';
  if (url.endsWith('.js')) return 'js';
  if (url.endsWith('.css')) return 'css';
  if (contentType.startsWith('text/html')) return 'html';
  return 'other';
}

test('the staff page: transferred size and time to hydrated', async ({ page, baseURL }) => {
  const login = await page.request.post('/api/login', {
    headers: { origin: baseURL ?? '' },
    form: { email: STAFF.email, password: STAFF.password },
  });
  expect(login.ok()).toBe(true);

  await page.addInitScript(() => {
    const marker = window as unknown as { hydratedAt?: number };
    new MutationObserver(() => {
      if (marker.hydratedAt === undefined && document.querySelector('.app')?.getAttribute('data-hydrated') === 'true') {
        marker.hydratedAt = performance.now();
      }
    }).observe(document, { subtree: true, attributes: true, attributeFilter: ['data-hydrated'] });
  });
  const transferred: Record<Kind, number> = { html: 0, js: 0, wasm: 0, css: 0, other: 0 };
  const encodings: Record<string, string> = {};
  const finished: Promise<void>[] = [];
  page.on('requestfinished', (request) => {
    finished.push(
      (async () => {
        const response = await request.response();
        if (!response || request.url().includes('/api/events')) return;
        const headers = await response.allHeaders();
        const what = kind(new URL(request.url()).pathname, headers['content-type'] ?? '');
        // Awaited before the `+=`, which reads its left side first: two files of a kind finishing together
        // (amigo.js and __wasm_split.js) would otherwise lose one's bytes.
        const size = Math.max(0, (await request.sizes()).responseBodySize);
        transferred[what] += size;
        encodings[what] = headers['content-encoding'] ?? 'identity';
      })(),
    );
  });

  await page.goto(STAFF_PAGE);
  await page.waitForFunction(() => (window as unknown as { hydratedAt?: number }).hydratedAt !== undefined);
  const hydratedAfter = await page.evaluate(() => (window as unknown as { hydratedAt: number }).hydratedAt);
  await page.waitForTimeout(500);
  await Promise.all(finished);

  const total = transferred.html + transferred.js + transferred.wasm + transferred.css;
  const report = { transferred_bytes: { ...transferred, total }, encodings, hydrated_after_ms: Math.round(hydratedAfter) };
  const logs = path.resolve(__dirname, '../../target/test-logs');
  mkdirSync(logs, { recursive: true });
  writeFileSync(path.join(logs, 'page-weight.json'), JSON.stringify(report, null, 2) + '\n');
  console.log(`page weight: ${JSON.stringify(report)}`);

  expect(transferred.wasm).toBeGreaterThan(0);
  expect(encodings).toMatchObject({ wasm: 'br', js: 'br', css: 'br' });
  expect(total).toBeLessThan(TOTAL_BUDGET_BYTES);
  expect(hydratedAfter).toBeLessThan(HYDRATED_BUDGET_MS);
});
