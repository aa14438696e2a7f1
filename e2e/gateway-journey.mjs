// End-to-end, gateway mode: a visitor asks for a page of the organiser's shop (a static site
// served by nginx) through a queuegate instance running with UPSTREAM_URL, waits in line, and
// lands back on that page once admitted, where the shop's live WebSocket works (through
// queuegate's tunnel) until leaving the line closes it; leaving sends them back to the line; a
// crafted return link cannot lead anywhere else. Real headless Chromium (Debian's /usr/bin/chromium
// driven by playwright-core; no browser is downloaded).
//
// Run through `bash scripts/e2e.sh`, which starts the nginx origin and the gateway-mode
// instance. By hand, against ones you started (admin token required):
//   QG_E2E_BASE_URL=http://127.0.0.1:18092 QG_E2E_ADMIN_TOKEN=… QG_E2E_GATEWAY_CONCERT=<id> \
//     QG_E2E_GATEWAY_VIP_CONCERT=<vip id> node --test e2e/gateway-journey.mjs
// where the instance runs with UPSTREAM_PATHS=/shop,/shop/vip=<vip id> and
// UPSTREAM_CONCERT_ID=<id>, in front of an origin serving e2e/origin-site/
// (scripts/origin-nginx.sh).
//
// Screenshots: tests/artifacts/e2e/gateway/NN-step.png.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { BASE_URL, call, queuedUser, setAdmission, waitHealthy } from './lib.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SHOTS = process.env.QG_E2E_GATEWAY_SCREENSHOTS || join(ROOT, 'tests', 'artifacts', 'e2e', 'gateway');
const CHROMIUM = process.env.QG_E2E_CHROMIUM || '/usr/bin/chromium';
const CONCERT = Number(process.env.QG_E2E_GATEWAY_CONCERT);
// The second sale on the same shop: /shop/vip/… (UPSTREAM_PATHS=/shop,/shop/vip=<VIP>).
const VIP = Number(process.env.QG_E2E_GATEWAY_VIP_CONCERT);
const STEP_MS = 15_000;

let shotNo = 0;
const profiles = [];
const contexts = [];

before(async () => {
  assert.ok(Number.isSafeInteger(CONCERT) && CONCERT > 0, 'QG_E2E_GATEWAY_CONCERT names the guarding concert');
  assert.ok(Number.isSafeInteger(VIP) && VIP > 0 && VIP !== CONCERT, 'QG_E2E_GATEWAY_VIP_CONCERT names the line of /shop/vip');
  rmSync(SHOTS, { recursive: true, force: true });
  mkdirSync(SHOTS, { recursive: true });
  await waitHealthy();
});

after(async () => {
  for (const c of contexts) await c.close().catch(() => {});
  for (const p of profiles) rmSync(p, { recursive: true, force: true });
});

/** A fresh Chromium with its own throw-away profile (no cookies, empty localStorage). */
async function browser() {
  const profile = mkdtempSync(join(tmpdir(), 'qg-e2e-gateway-'));
  profiles.push(profile);
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30_000,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 800 },
    locale: 'en-US',
    reducedMotion: 'reduce',
    timezoneId: 'UTC',
  });
  contexts.push(context);
  context.setDefaultTimeout(STEP_MS);
  context.setDefaultNavigationTimeout(STEP_MS);
  const page = context.pages()[0] || (await context.newPage());
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    // The line's own 403/404 answers to probes are expected; script errors are not.
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) problems.push(`console error: ${m.text()}`);
  });
  return { context, page, problems };
}

async function shot(page, name) {
  shotNo += 1;
  await page.screenshot({ path: join(SHOTS, `${String(shotNo).padStart(2, '0')}-${name}.png`), fullPage: true });
}

const path = (page) => {
  const u = new URL(page.url());
  return u.pathname + u.search;
};

test('a visitor waits in front of the shop, shops, and is sent back to the line after leaving', { timeout: 150_000 }, async () => {
  const origin = new URL(BASE_URL).origin;
  await setAdmission(CONCERT, { admit_per_tick: 0 });
  await queuedUser(CONCERT, 'Early fan'); // someone ahead, so the visitor sees a real position
  const { context, page, problems } = await browser();

  // 1. The shop's URL leads to the line, with the way back.
  await page.goto(`${BASE_URL}/shop/index.html`);
  await page.waitForURL((u) => u.pathname === `/concerts/${CONCERT}`);
  assert.equal(new URL(page.url()).searchParams.get('return'), '/shop/index.html');
  await page.getByTestId('waiting-room').waitFor();
  assert.equal(Number(await page.getByTestId('queue-position').textContent()), 2);
  // In front of a shop the page promises the shop, not a booking it will not show.
  const tips = await page.getByTestId('waiting-tips').textContent();
  assert.match(tips, /takes you on to the shop/);
  assert.doesNotMatch(tips, /seat/i);
  assert.doesNotMatch(await page.getByTestId('keep-tab-open').textContent(), /seat|book/i);
  await shot(page, 'shop-url-leads-to-the-line');

  // An API client asking meanwhile gets the JSON envelope naming the line, not a page.
  const api = await fetch(`${BASE_URL}/shop/index.html`, { headers: { accept: 'application/json' }, redirect: 'manual' });
  assert.equal(api.status, 403);
  const body = await api.json();
  assert.equal(body.error.code, 'NOT_ADMITTED');
  assert.equal(body.error.queue_url, `/concerts/${CONCERT}?return=/shop/index.html`);

  // 2. Admission resumes: the page trades its access token for the cookie and goes back.
  await setAdmission(CONCERT, { admit_per_tick: 5, tick_ms: 500 });
  await page.waitForURL(`${origin}/shop/index.html`, { timeout: 30_000 });
  await page.getByTestId('shop-heading').waitFor();
  const grant = (await context.cookies(origin)).find((c) => c.name === 'qg_grant');
  assert.ok(grant, 'the grant cookie is set');
  assert.equal(grant.httpOnly, true);
  assert.equal(grant.sameSite, 'Lax');
  assert.equal(grant.secure, false, 'plain HTTP on loopback');
  assert.equal(await page.evaluate(() => document.cookie.includes('qg_grant')), false, 'scripts cannot read it');
  await shot(page, 'admitted-back-at-the-shop');

  // 3. Inside, the visitor browses the origin freely.
  await page.getByTestId('checkout-link').click();
  await page.getByTestId('checkout-heading').waitFor();
  assert.equal(path(page), '/shop/checkout.html?tier=gold');
  await shot(page, 'shopping-on-the-origin');

  // The shop's live socket (a seat map's, say) opens through the gateway on the grant cookie
  // and echoes; the page keeps it open.
  const echoed = await page.evaluate(() => new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://${location.host}/shop/live`);
    window.qgLive = { ws, closed: new Promise((r) => ws.addEventListener('close', (e) => r(e.code))) };
    ws.onopen = () => ws.send('seat 7 still free?');
    ws.onmessage = (e) => resolve(e.data);
    ws.onerror = () => reject(new Error('the live socket failed'));
  }));
  assert.equal(echoed, 'seat 7 still free?');

  // 4. Leaving the line ends the grant at once: the live socket is closed by the gateway within
  // its recheck (the page did not close it), and the next page view goes back to the line.
  await setAdmission(CONCERT, { admit_per_tick: 0 });
  const queueToken = await page.evaluate((c) => JSON.parse(localStorage.getItem(`qg.queue.${c}`)), CONCERT);
  assert.ok(queueToken, 'the waiting page kept the queue token');
  await call('DELETE', '/v1/queue', { token: queueToken });
  const closedWith = await page.evaluate(() => Promise.race([
    window.qgLive.closed,
    new Promise((r) => setTimeout(() => r('still open'), 10_000)),
  ]));
  assert.equal(closedWith, 1006, 'closed under the page by the gateway (no close frame: 1006)');
  await page.reload();
  await page.waitForURL((u) => u.pathname === `/concerts/${CONCERT}`);
  assert.equal(new URL(page.url()).searchParams.get('return'), '/shop/checkout.html?tier=gold');
  assert.equal((await context.cookies(origin)).some((c) => c.name === 'qg_grant'), false, 'the dead grant is cleared');
  await page.getByTestId('waiting-room').waitFor();
  await shot(page, 'left-the-line-back-in-it');

  // 5. A crafted link cannot send an admitted visitor elsewhere: no return, the normal booking.
  const other = await browser();
  await other.page.goto(`${BASE_URL}/concerts/${CONCERT}?return=//evil.example/steal`);
  await setAdmission(CONCERT, { admit_per_tick: 5, tick_ms: 500 });
  await other.page.getByTestId('booking').waitFor({ timeout: 30_000 });
  assert.equal(new URL(other.page.url()).origin, origin);
  assert.equal(new URL(other.page.url()).pathname, `/concerts/${CONCERT}`);
  await shot(other.page, 'crafted-return-link-ignored');

  // …while the first visitor, admitted again, is taken back to the checkout.
  await page.waitForURL(`${origin}/shop/checkout.html?tier=gold`, { timeout: 30_000 });
  await page.getByTestId('checkout-heading').waitFor();
  await shot(page, 'readmitted-back-at-checkout');

  assert.deepEqual(problems, []);
  assert.deepEqual(other.problems, []);
});

test('two sales on one shop: a visitor queues for each, holds both grants, and leaving one keeps the other', { timeout: 120_000 }, async () => {
  const origin = new URL(BASE_URL).origin;
  const grants = async (context) => {
    const c = (await context.cookies(origin)).find((x) => x.name === 'qg_grant');
    return c ? c.value.split('~').length : 0;
  };
  await setAdmission(CONCERT, { admit_per_tick: 5, tick_ms: 500 });
  await setAdmission(VIP, { admit_per_tick: 0 });
  const { context, page, problems } = await browser();

  // 1. The shop's own line first: through it and back to the shop.
  await page.goto(`${BASE_URL}/shop/index.html`);
  await page.waitForURL(`${origin}/shop/index.html`, { timeout: 30_000 });
  await page.getByTestId('shop-heading').waitFor();
  assert.equal(await grants(context), 1);

  // 2. The VIP pages are another sale: the shop's grant does not open them, their line does.
  await page.goto(`${BASE_URL}/shop/vip/index.html`);
  await page.waitForURL((u) => u.pathname === `/concerts/${VIP}`);
  assert.equal(new URL(page.url()).searchParams.get('return'), '/shop/vip/index.html');
  await page.getByTestId('waiting-room').waitFor();
  assert.equal(await grants(context), 1, 'waiting for the VIP line keeps the shop grant');
  await shot(page, 'second-sale-its-own-line');
  await setAdmission(VIP, { admit_per_tick: 5, tick_ms: 500 });
  await page.waitForURL(`${origin}/shop/vip/index.html`, { timeout: 30_000 });
  await page.getByTestId('vip-heading').waitFor();
  assert.equal(await grants(context), 2, 'the cookie holds a grant per line');
  await shot(page, 'admitted-to-both-sales');

  // 3. Both sales open without a detour through a line. (Each visit asks for a new URL: the
  // static shop sends no Cache-Control, so the browser could show a page it has without asking.)
  for (const [p, heading] of [['/shop/index.html', 'shop-heading'], ['/shop/vip/index.html', 'vip-heading']]) {
    const r = await page.goto(`${BASE_URL}${p}?visit=both`);
    assert.equal(r.request().redirectedFrom(), null, `${p} opens directly`);
    await page.getByTestId(heading).waitFor();
  }

  // 4. Leaving the VIP line ends that grant only: its pages lead back to its line, the shop's
  // pages still open, and the cookie keeps the shop's grant.
  const vipQueue = await page.evaluate((c) => JSON.parse(localStorage.getItem(`qg.queue.${c}`)), VIP);
  assert.ok(vipQueue, 'the VIP waiting page kept its queue token');
  await setAdmission(VIP, { admit_per_tick: 0 });
  await call('DELETE', '/v1/queue', { token: vipQueue });
  await page.goto(`${BASE_URL}/shop/vip/index.html?after=leaving`);
  await page.waitForURL((u) => u.pathname === `/concerts/${VIP}`);
  assert.equal(await grants(context), 1, 'only the dead grant was dropped');
  const r = await page.goto(`${BASE_URL}/shop/index.html?after=leaving`);
  assert.equal(r.request().redirectedFrom(), null, 'the shop still opens');
  await page.getByTestId('shop-heading').waitFor();
  await shot(page, 'left-one-sale-still-in-the-other');

  assert.deepEqual(problems, []);
});
