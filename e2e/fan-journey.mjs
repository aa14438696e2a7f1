// End-to-end: a fan goes from the landing page to paid seats in a real headless Chromium
// (Debian's /usr/bin/chromium driven by playwright-core; no browser is downloaded).
//
// Run through `bash scripts/e2e.sh`, which starts a gateway with its own database and prepares
// a concert. By hand, against a gateway you started (admin token required):
//   QG_E2E_BASE_URL=http://127.0.0.1:18090 QG_E2E_ADMIN_TOKEN=… node --test e2e/fan-journey.mjs
//
// Screenshots of every step go to tests/artifacts/e2e/NN-step.png.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { BASE_URL, admin, call, prepareConcert, queuedUser, setAdmission, waitAdmitted } from './lib.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SHOTS = process.env.QG_E2E_SCREENSHOTS || join(ROOT, 'tests', 'artifacts', 'e2e');
const CHROMIUM = process.env.QG_E2E_CHROMIUM || '/usr/bin/chromium';
const STEP_MS = 15_000; // bound for any single wait in the browser

let state;
let shotNo = 0;
const profiles = [];
const contexts = [];

before(async () => {
  rmSync(SHOTS, { recursive: true, force: true });
  mkdirSync(SHOTS, { recursive: true });
  state = process.env.QG_E2E_STATE
    ? JSON.parse(readFileSync(process.env.QG_E2E_STATE, 'utf8'))
    : await prepareConcert({ ahead: 3 });
});

after(async () => {
  for (const c of contexts) await c.close().catch(() => {});
  for (const p of profiles) rmSync(p, { recursive: true, force: true });
});

/** A fresh Chromium with its own throw-away profile (so a fresh fan with empty localStorage). */
async function browser(options = {}) {
  const profile = mkdtempSync(join(tmpdir(), 'qg-e2e-chromium-'));
  profiles.push(profile);
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30_000,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1280, height: 900 },
    locale: 'en-US',
    reducedMotion: 'reduce', // no transitions half-way through in screenshots
    timezoneId: 'UTC',
    ...options,
  });
  contexts.push(context);
  context.setDefaultTimeout(STEP_MS);
  context.setDefaultNavigationTimeout(STEP_MS);
  const page = context.pages()[0] || (await context.newPage());
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console error: ${m.text()}`);
  });
  return { context, page, problems };
}

async function shot(page, name, { fullPage = true } = {}) {
  shotNo += 1;
  const file = join(SHOTS, `${String(shotNo).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage, timeout: STEP_MS });
  return file;
}

const text = async (locator) => ((await locator.textContent({ timeout: STEP_MS })) || '').trim();
const seconds = (clock) => {
  const m = /^(\d+):(\d\d)$/.exec(clock);
  assert.ok(m, `a m:ss countdown, got "${clock}"`);
  return Number(m[1]) * 60 + Number(m[2]);
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Waits until `fn` returns a truthy value, polling; bounded. */
async function eventually(fn, what, timeoutMs = STEP_MS) {
  const until = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
    await sleep(150);
  }
}

async function noHorizontalScroll(page) {
  const { scroll, width } = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    width: window.innerWidth,
  }));
  assert.ok(scroll <= width, `page is ${scroll}px wide in a ${width}px viewport`);
}

test('a fan goes from the landing page to three seats paid at once', { timeout: 150_000 }, async () => {
  const { concert, price, ahead } = state;
  const { page, problems } = await browser();

  // 1. Landing page lists the concert.
  await page.goto(`${BASE_URL}/`);
  const link = page.getByTestId('concert-link').filter({ hasText: concert.name });
  await link.waitFor();
  assert.equal(await link.getAttribute('href'), `/concerts/${concert.concert_id}`);
  await shot(page, 'landing');

  // 2. Into the waiting room: admission is paused with others ahead, so a real position shows.
  await link.click();
  await page.waitForURL(`**/concerts/${concert.concert_id}`);
  await page.getByTestId('waiting-room').waitFor();
  assert.equal(await page.getByTestId('queue-live').getAttribute('aria-live'), 'polite');
  const first = Number(await text(page.getByTestId('queue-position')));
  assert.ok(first > 1, `the fan should wait behind others, got position ${first}`);
  assert.equal(first, ahead.length + 1);
  assert.match(await text(page.getByTestId('queue-eta')), /Paused/);
  assert.match(await text(page.getByTestId('queue-ahead')), new RegExp(`${first - 1} people ahead`));
  await page.locator('[data-testid="connection-status"][data-state="live"]').waitFor();
  const stored = await page.evaluate((cid) => ({
    user: JSON.parse(localStorage.getItem('qg.user')),
    queue: JSON.parse(localStorage.getItem(`qg.queue.${cid}`)),
  }), concert.concert_id);
  assert.ok(stored.user && stored.user.user_id && stored.user.user_token, 'demo user kept in localStorage');
  assert.ok(typeof stored.queue === 'string' && stored.queue.length > 20, 'queue token kept in localStorage');
  await shot(page, 'waiting-room-paused');

  // A reload keeps the place (re-join with the kept queue token).
  await page.reload();
  await page.getByTestId('waiting-room').waitFor();
  assert.equal(Number(await text(page.getByTestId('queue-position'))), first);
  await page.locator('[data-testid="connection-status"][data-state="live"]').waitFor();

  // 3. Admission resumes slowly; the position counts down live (SSE) until the fan is let in.
  await setAdmission(concert.concert_id, { admit_per_tick: 1, tick_ms: 1500 });
  const seen = [first];
  let movingShot = false;
  const booking = page.getByTestId('booking');
  await eventually(async () => {
    if (await booking.isVisible()) return true;
    const p = Number(await page.getByTestId('queue-position').textContent({ timeout: 1000 }).catch(() => NaN));
    if (Number.isFinite(p) && p !== seen[seen.length - 1]) {
      seen.push(p);
      if (!movingShot && p < first) {
        movingShot = true;
        assert.match(await text(page.getByTestId('queue-eta')), /Estimated wait|Any moment/);
        await shot(page, 'waiting-room-moving');
      }
    }
    return false;
  }, 'admission', 45_000);
  assert.ok(seen.length >= 2, `position should have moved before admission, saw ${seen.join(' → ')}`);
  for (let i = 1; i < seen.length; i += 1) assert.ok(seen[i] < seen[i - 1], `positions only go down: ${seen.join(' → ')}`);

  // 4. Admitted: booking opens by itself with the booking window countdown; times carry a zone.
  await page.getByTestId('schedule-list').locator('[data-testid="schedule-option"]').first().waitFor();
  assert.ok(seconds(await text(page.getByTestId('access-countdown'))) > 0);
  assert.match(await text(page.getByTestId('access-until')), /\(at \d{1,2}:\d\d [AP]M UTC\)/);
  assert.equal(await page.getByTestId('schedule-option').count(), concert.schedules.length);
  assert.match(await text(page.getByTestId('schedule-option').first()), /\d{1,2}:\d\d [AP]M UTC/);
  assert.ok(await page.getByTestId('keep-tab-open').isVisible(), 'the keep-this-tab-open note shows while booking');
  await shot(page, 'admitted-pick-date');

  // Fans admitted before ours book too: two seats held, one sold, so the map shows every state.
  const [early1, early2] = ahead;
  const access1 = await waitAdmitted(early1);
  const access2 = await waitAdmitted(early2);
  const schedule = concert.schedules[0];
  for (const seat of [3, 4]) {
    await call('POST', '/v1/reservations', { token: access1, body: { schedule_id: schedule.schedule_id, seat_no: seat } });
  }
  const r7 = await call('POST', '/v1/reservations', { token: access2, body: { schedule_id: schedule.schedule_id, seat_no: 7 } });
  await call('POST', `/v1/users/${early2.user_id}/balance/charge`, { token: early2.user_token, body: { amount: price }, idemKey: `e2e-${r7.reservation_id}` });
  await call('POST', '/v1/payments', { token: access2, body: { reservation_id: r7.reservation_id }, idemKey: `e2e-pay-${r7.reservation_id}` });

  // 5. Pick the first date: the 50-seat map.
  await page.getByTestId('schedule-option').first().click();
  const map = page.getByTestId('seat-map');
  await map.locator('button').nth(49).waitFor();
  assert.equal(await map.locator('button').count(), 50);
  assert.equal(await page.getByTestId('seat-12').getAttribute('aria-label'), `Seat 12, available, ${price.toLocaleString('en-US')} credits`);
  assert.equal(await page.getByTestId('seat-3').getAttribute('data-status'), 'held');
  assert.equal(await page.getByTestId('seat-7').getAttribute('aria-label'), 'Seat 7, sold');
  assert.ok(await page.getByTestId('seat-7').isDisabled(), 'sold seats are not clickable');
  assert.ok(await page.getByTestId('seat-4').isDisabled(), 'held seats are not clickable');
  assert.ok(await page.getByTestId('hold-seat').isDisabled(), 'nothing to hold before a seat is picked');
  await shot(page, 'seat-map');

  // 6. Pick three seats (12, 13, 14) and hold them together.
  const credits = (n) => `${n.toLocaleString('en-US')} credits`;
  for (const no of [12, 13, 14]) await page.getByTestId(`seat-${no}`).click();
  for (const no of [12, 13, 14]) assert.equal(await page.getByTestId(`seat-${no}`).getAttribute('aria-pressed'), 'true');
  assert.equal(await text(page.getByTestId('seat-selection')), `Seats 12, 13 and 14 · ${credits(3 * price)}`);
  assert.equal(await text(page.getByTestId('hold-seat')), 'Hold 3 seats');
  // Unpicking works too.
  await page.getByTestId('seat-14').click();
  assert.equal(await page.getByTestId('seat-14').getAttribute('aria-pressed'), 'false');
  await page.getByTestId('seat-14').click();
  await shot(page, 'seats-selected');
  await page.getByTestId('hold-seat').click();

  // 7. Checkout: the three held seats, ONE countdown (the hold's; the booking window line steps
  //    aside), a note with the time and its zone, the wallet (empty) and a top-up for the total.
  await page.getByTestId('hold-panel').waitFor();
  assert.equal(await page.getByTestId('held-seat').count(), 3);
  assert.equal(await text(page.getByTestId('checkout-total')), credits(3 * price));
  assert.ok(await page.getByTestId('booking-window').isHidden(), 'the booking window countdown steps aside at checkout');
  const timers = await page.evaluate(() => [...document.querySelectorAll('[role="timer"]')].filter((el) => el.offsetParent !== null).length);
  assert.equal(timers, 1, 'one countdown on the checkout screen');
  const c1 = seconds(await text(page.getByTestId('hold-countdown')));
  assert.ok(c1 > 60 && c1 <= 300, `hold countdown starts near the hold length, got ${c1}s`);
  assert.match(await text(page.getByTestId('hold-until')), /until \d{1,2}:\d\d [AP]M UTC/);
  await page.getByTestId('charge-button').waitFor();
  assert.equal(await text(page.getByTestId('wallet-balance')), '0 credits');
  assert.match(await text(page.getByTestId('charge-button')), new RegExp(`Add ${credits(3 * price)}`));
  assert.ok(await page.getByTestId('pay-button').isDisabled(), 'cannot pay before topping up');
  assert.equal(await text(page.getByTestId('pay-button')), `Pay ${credits(3 * price)}`);
  await sleep(2100);
  const c2 = seconds(await text(page.getByTestId('hold-countdown')));
  assert.ok(c2 < c1, `countdown runs: ${c1}s then ${c2}s`);
  await shot(page, 'seats-held');

  // Back on the map, the fan's own holds show as theirs.
  await page.getByTestId('add-seat').click();
  await page.locator('[data-testid="seat-12"][data-status="mine"]').waitFor();
  assert.equal(await page.getByTestId('seat-13').getAttribute('aria-label'), 'Seat 13, held for you');
  assert.ok(await page.getByTestId('booking-window').isVisible(), 'the booking window countdown is back on the map');
  await page.getByTestId('back-to-checkout').click();
  await page.getByTestId('hold-panel').waitFor();

  // 8. Charge exactly what's missing.
  await page.getByTestId('charge-button').click();
  await page.locator('[data-testid="wallet-balance"]', { hasText: credits(3 * price) }).waitFor();
  assert.ok(await page.getByTestId('charge-button').isHidden(), 'nothing missing any more');
  assert.ok(await page.getByTestId('pay-button').isEnabled());
  await shot(page, 'wallet-charged');

  // 9. Pay once for all three: the confirmation, without the keep-this-tab-open footer.
  const payment = page.waitForRequest((r) => r.method() === 'POST' && new URL(r.url()).pathname === '/v1/payments');
  await page.getByTestId('pay-button').click();
  const paid = (await payment).postDataJSON();
  assert.deepEqual(Object.keys(paid), ['reservation_ids']);
  assert.equal(paid.reservation_ids.length, 3, 'one payment request for the three holds');
  const done = page.getByTestId('confirmation');
  await done.waitFor();
  const receipt = await text(done);
  assert.match(receipt, /You’re going!/);
  assert.equal(await text(page.getByTestId('confirm-concert')), concert.name);
  assert.equal(await text(page.getByTestId('confirm-seat')), 'Seats 12, 13 and 14');
  assert.equal(await text(page.getByTestId('confirm-amount')), credits(3 * price));
  assert.equal(await text(page.getByTestId('confirm-balance')), '0 credits');
  assert.equal((await text(page.getByTestId('confirm-reference'))).split(', ').length, 3);
  const when = new Date(schedule.starts_at);
  assert.match(await text(page.getByTestId('confirm-date')), new RegExp(`${when.getUTCFullYear()}`));
  assert.match(await text(page.getByTestId('confirm-date')), new RegExp(when.toLocaleString('en-US', { month: 'short', timeZone: 'UTC' })));
  assert.match(await text(page.getByTestId('confirm-date')), / UTC$/);
  assert.ok(await page.getByTestId('keep-tab-open').isHidden(), 'no keep-this-tab-open footer after paying');
  await shot(page, 'confirmation');

  // The API agrees: seats 12-14 are sold, the wallet is back to 0, the fan's pass is spent.
  const seats = await call('GET', `/v1/schedules/${schedule.schedule_id}/seats`, { token: access1 });
  const byNo = Object.fromEntries(seats.seats.map((s) => [s.seat_no, s.status]));
  for (const no of [12, 13, 14]) assert.equal(byNo[no], 'sold');
  assert.equal(byNo[7], 'sold');
  assert.equal(byNo[3], 'held');
  assert.equal(byNo[15], 'available');
  const balance = await call('GET', `/v1/users/${stored.user.user_id}/balance`, { token: stored.user.user_token });
  assert.equal(balance.balance, 0);
  await assert.rejects(call('GET', '/v1/queue/status', { token: stored.queue }), (e) => e.status === 410,
    'a fan who paid has left the line');

  assert.deepEqual(problems, [], 'no script errors or CSP violations in the page');
});

test('phone-sized waiting room and seat map are usable at 375 px', { timeout: 90_000 }, async () => {
  const { concert } = state;
  await setAdmission(concert.concert_id, { admit_per_tick: 0 });
  const other = await queuedUser(concert.concert_id, 'Phone test early fan');
  const { page, problems } = await browser({
    viewport: { width: 375, height: 812 },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
    timezoneId: 'America/New_York', // the fan's own zone, named next to every time
  });
  // Hold the join back a moment to see the joining screen: its spinner is centred.
  let letJoin;
  const joinHeld = new Promise((r) => { letJoin = r; });
  await page.route('**/v1/queue', async (route) => {
    if (route.request().method() === 'POST') await joinHeld;
    await route.continue().catch(() => {});
  });
  await page.goto(`${BASE_URL}/concerts/${concert.concert_id}`);
  await page.getByTestId('joining').waitFor();
  const centres = await page.evaluate(() => {
    const mid = (el) => { const r = el.getBoundingClientRect(); return r.left + r.width / 2; };
    return { spinner: mid(document.querySelector('.spinner')), panel: mid(document.querySelector('[data-testid="joining"]')) };
  });
  assert.ok(Math.abs(centres.spinner - centres.panel) < 2, `the joining spinner is centred: ${JSON.stringify(centres)}`);
  await shot(page, 'phone-joining');
  letJoin();
  await page.getByTestId('waiting-room').waitFor();
  await page.unroute('**/v1/queue');
  const pos = Number(await text(page.getByTestId('queue-position')));
  assert.ok(pos >= 2, `position behind the early fan, got ${pos}`);
  assert.ok(other.position < pos);
  await page.locator('[data-testid="connection-status"][data-state="live"]').waitFor();
  await noHorizontalScroll(page);
  await shot(page, 'phone-waiting-room');

  await setAdmission(concert.concert_id, { admit_per_tick: 1, tick_ms: 500 });
  await page.getByTestId('schedule-option').first().waitFor({ timeout: 30_000 });
  assert.match(await text(page.getByTestId('schedule-option').first()), /\d{1,2}:\d\d [AP]M E[SD]T/);
  await page.getByTestId('schedule-option').first().tap();
  const map = page.getByTestId('seat-map');
  await map.locator('button').nth(49).waitFor();
  await noHorizontalScroll(page);
  const box = await page.getByTestId('seat-13').boundingBox();
  assert.ok(box && box.width >= 24 && box.height >= 24, `seat buttons are at least 24 px, got ${JSON.stringify(box)}`);
  const last = await page.getByTestId('seat-50').boundingBox();
  assert.ok(last && last.x + last.width <= 375, 'the whole row fits on screen');
  // Free seats of the first date, as the API sees them right now.
  const freeNow = await page.evaluate(() => [...document.querySelectorAll('[data-testid="seat-map"] [data-status="available"]')].map((b) => Number(b.textContent)));
  const [s1, s2] = freeNow;
  await page.getByTestId(`seat-${s1}`).tap();
  await page.getByTestId(`seat-${s2}`).tap();
  assert.equal(await page.getByTestId(`seat-${s1}`).getAttribute('aria-pressed'), 'true');
  await shot(page, 'phone-seat-map');
  await page.getByTestId('hold-seat').tap();
  await page.getByTestId('hold-panel').waitFor();
  assert.equal(await page.getByTestId('held-seat').count(), 2);
  await page.getByTestId('charge-button').waitFor();
  assert.match(await text(page.getByTestId('hold-until')), /\d{1,2}:\d\d [AP]M E[SD]T/);
  await noHorizontalScroll(page);
  await shot(page, 'phone-checkout');
  assert.deepEqual(problems, [], 'no script errors or CSP violations in the page');
});

test('falls back to polling when live updates fail and rides out a dropped connection', { timeout: 90_000 }, async () => {
  const { concert } = state;
  await setAdmission(concert.concert_id, { admit_per_tick: 0 });
  await queuedUser(concert.concert_id, 'Fallback test early fan');
  const { page } = await browser();
  // The event stream is unreachable (e.g. a proxy that buffers it): polling takes over.
  await page.route('**/v1/queue/events**', (route) => route.abort('connectionfailed'));
  await page.goto(`${BASE_URL}/concerts/${concert.concert_id}`);
  await page.getByTestId('waiting-room').waitFor();
  await page.locator('[data-testid="connection-status"][data-state="polling"]').waitFor();
  assert.match(await text(page.getByTestId('connection-status')), /Checking for updates every \d+ s/);

  // Now the connection drops: the fan is told, and it retries by itself.
  await page.route('**/v1/queue/status', (route) => route.abort('internetdisconnected'));
  const lost = page.locator('[data-testid="connection-status"][data-state="lost"]');
  await lost.waitFor({ timeout: 20_000 });
  assert.match(await text(lost), /Connection lost\. Don’t worry, you keep your place\. Retrying in \d+ s/);
  await shot(page, 'connection-lost');
  await page.unroute('**/v1/queue/status');
  await page.locator('[data-testid="connection-status"][data-state="polling"]').waitFor({ timeout: 40_000 });

  // The place is reported gone (410): the page re-joins by itself, sending the kept queue token
  // so the place comes back rather than going to the back of the line.
  const kept = await page.evaluate((cid) => JSON.parse(localStorage.getItem(`qg.queue.${cid}`)), concert.concert_id);
  const before410 = Number(await text(page.getByTestId('queue-position')));
  await page.route('**/v1/queue/status', (route) => route.fulfill({
    status: 410,
    contentType: 'application/json',
    body: JSON.stringify({ error: { code: 'QUEUE_ENTRY_GONE', message: 'this queue place no longer exists', request_id: 'e2e' } }),
  }), { times: 1 });
  const rejoin = await page.waitForRequest((r) => r.method() === 'POST' && new URL(r.url()).pathname === '/v1/queue', { timeout: 20_000 });
  assert.equal(rejoin.postDataJSON().queue_token, kept, 're-join sends the kept queue token');
  assert.equal(rejoin.postDataJSON().concert_id, concert.concert_id);
  await page.locator('[data-testid="connection-status"][data-state="polling"]').waitFor({ timeout: 40_000 });
  assert.equal(Number(await text(page.getByTestId('queue-position'))), before410, 'same place after re-joining');

  // Admission resumes; polling notices and booking opens.
  await setAdmission(concert.concert_id, { admit_per_tick: 1, tick_ms: 500 });
  await page.getByTestId('booking').waitFor({ timeout: 30_000 });
  await page.getByTestId('schedule-option').first().waitFor();
});

test('booking problems are explained in plain words', { timeout: 90_000 }, async () => {
  const { concert } = state;
  const schedule = concert.schedules[0];
  await setAdmission(concert.concert_id, { admit_per_tick: 1, tick_ms: 500 });
  const rival = await queuedUser(concert.concert_id, 'Rival fan');
  const rivalAccess = await waitAdmitted(rival);
  const { page } = await browser();
  await page.goto(`${BASE_URL}/concerts/${concert.concert_id}`);
  await page.getByTestId('schedule-option').first().waitFor({ timeout: 30_000 });
  await page.getByTestId('schedule-option').first().click();
  await page.getByTestId('seat-map').locator('button').nth(49).waitFor();

  // Someone else takes the seat between picking and holding it.
  await page.getByTestId('seat-20').click();
  await call('POST', '/v1/reservations', { token: rivalAccess, body: { schedule_id: schedule.schedule_id, seat_no: 20 } });
  await page.getByTestId('hold-seat').click();
  const alert = page.getByTestId('error-message');
  await alert.waitFor();
  assert.equal(await text(alert), 'Someone just took seat 20 — pick another.');
  await page.locator('[data-testid="seat-20"][data-status="held"]').waitFor();
  assert.ok(await page.getByTestId('hold-seat').isDisabled(), 'the lost pick is cleared');
  await shot(page, 'seat-taken');

  // Hold another, then release it: back on the map, the seat free again.
  await page.getByTestId('seat-21').click();
  await page.getByTestId('hold-seat').click();
  await page.getByTestId('hold-panel').waitFor();
  await page.getByTestId('cancel-hold').click();
  await page.locator('[data-testid="seat-21"][data-status="available"]').waitFor();
  assert.match(await text(alert), /Seat 21 was released/);

  // The booking window ends (the fan left the line from elsewhere): told so, with a way back in.
  await page.getByTestId('seat-22').click();
  await page.getByTestId('hold-seat').click();
  await page.getByTestId('hold-panel').waitFor();
  const queueToken = await page.evaluate((cid) => JSON.parse(localStorage.getItem(`qg.queue.${cid}`)), concert.concert_id);
  await call('DELETE', '/v1/queue', { token: queueToken });
  await page.getByTestId('cancel-hold').click();
  const ended = page.getByTestId('window-ended');
  await ended.waitFor();
  assert.match(await text(ended), /Your booking window ended/);
  assert.ok(await page.getByTestId('keep-tab-open').isHidden(), 'no keep-this-tab-open footer once the window ended');
  await shot(page, 'booking-window-ended');
  await page.getByTestId('rejoin-button').click();
  await page.getByTestId('booking').waitFor({ timeout: 30_000 });
});

test('before the sale opens, the fan sees when (in their zone), is drawn a place at the start, gets in and pays', { timeout: 90_000 }, async () => {
  const day = 24 * 3600 * 1000;
  const concert = await admin('POST', '/v1/admin/concerts', {
    name: `Early Birds ${Math.random().toString(36).slice(2, 6).toUpperCase()}`,
    sale_starts_at: new Date(Date.now() + 12_000).toISOString(),
    schedules: [{ starts_at: new Date(Date.now() + 20 * day).toISOString(), price: 1000 }],
  });
  const { page, problems } = await browser({ timezoneId: 'Asia/Tokyo' });
  await page.goto(`${BASE_URL}/concerts/${concert.concert_id}`);
  await page.getByTestId('pre-queue').waitFor();
  assert.match(await text(page.getByTestId('sale-starts-at')), /\d{1,2}:\d\d [AP]M GMT\+9$/);
  assert.ok(seconds(await text(page.getByTestId('sale-countdown'))) > 0);
  assert.ok(await page.getByTestId('queue-live').isHidden(), 'no position before the draw');
  await page.locator('[data-testid="connection-status"][data-state="live"]').waitFor();
  await shot(page, 'pre-queue');
  // The sale opens: the draw places the fan, who is let in and can book.
  await page.getByTestId('booking').waitFor({ timeout: 45_000 });
  await page.getByTestId('schedule-option').first().waitFor();
  await shot(page, 'pre-queue-drawn-admitted');
  // …and pays: a seat held, the wallet topped up, one payment, the confirmation.
  await page.getByTestId('schedule-option').first().click();
  await page.getByTestId('seat-map').locator('button').nth(49).waitFor();
  await page.getByTestId('seat-5').click();
  await page.getByTestId('hold-seat').click();
  await page.getByTestId('hold-panel').waitFor();
  await page.getByTestId('charge-button').click();
  await page.locator('[data-testid="pay-button"]:enabled').waitFor();
  await page.getByTestId('pay-button').click();
  await page.getByTestId('confirmation').waitFor();
  assert.equal(await text(page.getByTestId('confirm-seat')), 'Seat 5');
  await shot(page, 'pre-queue-paid');
  assert.deepEqual(problems, [], 'no script errors or CSP violations in the page');
});

test('the API reference renders and links back to the site', { timeout: 60_000 }, async () => {
  const { page, problems } = await browser();
  await page.goto(`${BASE_URL}/docs`);
  await page.locator('h1', { hasText: 'queuegate API' }).waitFor();
  assert.ok((await page.locator('.op').count()) > 20, 'every route is rendered');
  await page.getByText('/v1/queue/status').first().waitFor();
  const back = page.getByTestId('docs-home-link');
  assert.equal(await back.getAttribute('href'), '/');
  await shot(page, 'api-docs', { fullPage: false });
  await back.click();
  await page.waitForURL(`${BASE_URL}/`);
  await page.getByTestId('concert-list').waitFor();
  assert.deepEqual(problems, [], 'no script errors or CSP violations in the docs page');
});
