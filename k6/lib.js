// Shared helpers for the queuegate k6 scripts (imported as './lib.js').
// Every target comes from the environment: BASE_URL (default http://127.0.0.1:8080) and
// ADMIN_TOKEN (default: the docker-compose demo token).
import http from 'k6/http';
import { check, fail, sleep } from 'k6';

export const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
export const ADMIN_TOKEN = __ENV.ADMIN_TOKEN || 'queuegate-demo-admin-token';
/** Requests per http.batch call in setup (the options' batchPerHost should be at least this). */
export const SETUP_BATCH = intEnv('SETUP_BATCH', 100);

// What counts as a failed request (`http_req_failed`). k6's default callback expects 200..399,
// so an expected 409 ("seat already taken") or 410 ("place gone") would count as a failure, and
// a script-wide http.setResponseCallback(...) narrower than that would turn the 201s of setup
// into failures. So every request of these scripts names what it expects, per request, with
// one of these (created once, in the init context, as k6 recommends).
export const EXPECT = {
  ok: http.expectedStatuses(200),
  created: http.expectedStatuses(201),
  /** POST /v1/queue: 201 a new place, 200 the place the user already has. */
  joined: http.expectedStatuses(200, 201),
  /** GET /v1/queue/status while waiting for admission in setup: 410 = the place is gone (counted, tolerated). */
  statusOrGone: http.expectedStatuses(200, 410),
  /** POST /v1/reservations in a rush: 201 won, 409 SEAT_UNAVAILABLE lost (the script checks the code). */
  hold: http.expectedStatuses(201, 409),
  /** DELETE /v1/queue: 204, also for a place already gone (idempotent). */
  left: http.expectedStatuses(204),
  /** Gateway mode: a protected path asked for without a grant by an API client: 403 NOT_ADMITTED. */
  notAdmitted: http.expectedStatuses(403),
};

export function intEnv(name, dflt) {
  const raw = __ENV[name];
  if (raw === undefined || raw === '') return dflt;
  const n = Number(raw);
  if (!Number.isFinite(n)) fail(`${name} must be a number, got ${raw}`);
  return Math.floor(n);
}

export function strEnv(name, dflt) {
  const raw = __ENV[name];
  return raw === undefined || raw === '' ? dflt : raw;
}

/**
 * Request parameters: JSON body, optional bearer token, a fixed `name` tag for grouping, and
 * `expect` (one of EXPECT) as the request's responseCallback. Options: `expect`, `phase`
 * ('setup' or 'teardown': tagged `phase`, so that setup traffic can be told apart from the
 * measured scenario, whose requests carry k6's own `scenario` tag), `headers` (merged),
 * `timeout`.
 */
export function params(token, name, opts) {
  const o = opts || {};
  const headers = Object.assign({ 'Content-Type': 'application/json' }, o.headers || {});
  if (token) headers.Authorization = `Bearer ${token}`;
  const p = { headers, tags: { name } };
  if (o.phase) p.tags.phase = o.phase;
  if (o.expect) p.responseCallback = o.expect;
  if (o.timeout) p.timeout = o.timeout;
  return p;
}

/** params() for a request made in setup(): tagged phase=setup, expecting `expect`. */
export function setupParams(token, name, expect) {
  return params(token, name, { phase: 'setup', expect });
}

/** params() for a request made in teardown(): tagged phase=teardown, expecting `expect`. */
export function teardownParams(token, name, expect) {
  return params(token, name, { phase: 'teardown', expect });
}

export function url(path) {
  return `${BASE_URL}${path}`;
}

export function json(res, field) {
  try {
    return field === undefined ? res.json() : res.json(field);
  } catch (_) {
    return undefined;
  }
}

/** RFC 3339 UTC without fractional seconds, `days` from now. */
export function startsAt(days) {
  const d = new Date(Date.now() + days * 86400 * 1000);
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function must(res, expected, what) {
  if (res.status !== expected) {
    fail(`${what}: expected ${expected}, got ${res.status} ${res.body ? String(res.body).slice(0, 300) : res.error}`);
  }
  return res;
}

/** POST /v1/admin/concerts: a concert with `schedules` dates (50 seats each). */
export function createConcert(name, schedules, price) {
  const body = {
    name,
    schedules: Array.from({ length: schedules }, (_, i) => ({ starts_at: startsAt(7 + i), price })),
  };
  const res = http.post(url('/v1/admin/concerts'), JSON.stringify(body),
    setupParams(ADMIN_TOKEN, 'POST /v1/admin/concerts', EXPECT.created));
  must(res, 201, 'create concert (is ADMIN_TOKEN right?)');
  return res.json();
}

/** PUT /v1/admin/concerts/{id}/queue with any of admit_per_tick, tick_ms, max_active, access_ttl_secs. */
export function setQueue(concertId, settings) {
  const res = http.put(url(`/v1/admin/concerts/${concertId}/queue`), JSON.stringify(settings),
    setupParams(ADMIN_TOKEN, 'PUT /v1/admin/concerts/{id}/queue', EXPECT.ok));
  must(res, 200, 'set queue settings');
  return res.json();
}

export function getQueue(concertId) {
  const res = http.get(url(`/v1/admin/concerts/${concertId}/queue`),
    setupParams(ADMIN_TOKEN, 'GET /v1/admin/concerts/{id}/queue', EXPECT.ok));
  must(res, 200, 'get queue settings');
  return res.json();
}

/** Runs `requests` (http.batch entries) in chunks of SETUP_BATCH and returns all responses. */
export function batched(requests) {
  const out = [];
  for (let i = 0; i < requests.length; i += SETUP_BATCH) {
    const chunk = http.batch(requests.slice(i, i + SETUP_BATCH));
    for (const r of chunk) out.push(r);
  }
  return out;
}

/** Creates `n` users; returns [{user_id, user_token}]. */
export function createUsers(n, prefix) {
  const reqs = [];
  for (let i = 0; i < n; i++) {
    reqs.push(['POST', url('/v1/users'), JSON.stringify({ name: `${prefix}-${i}` }), setupParams(null, 'POST /v1/users', EXPECT.created)]);
  }
  return batched(reqs).map((res, i) => {
    must(res, 201, `create user ${i}`);
    const b = res.json();
    return { user_id: b.user_id, user_token: b.user_token };
  });
}

/** Joins every user to `concertId`; returns the queue tokens (same order). */
export function joinAll(users, concertId) {
  const reqs = users.map((u) => ['POST', url('/v1/queue'), JSON.stringify({ concert_id: concertId }),
    setupParams(u.user_token, 'POST /v1/queue', EXPECT.joined)]);
  return batched(reqs).map((res, i) => {
    if (res.status !== 201 && res.status !== 200) must(res, 201, `join ${i}`);
    return res.json('queue_token');
  });
}

/** Joins one user; returns the join body or undefined. */
export function join(userToken, concertId) {
  const res = http.post(url('/v1/queue'), JSON.stringify({ concert_id: concertId }),
    params(userToken, 'POST /v1/queue', { expect: EXPECT.joined }));
  check(res, { 'join: 201 or 200': (r) => r.status === 201 || r.status === 200 });
  return res.status === 201 || res.status === 200 ? res.json() : undefined;
}

/** GET /v1/queue/status once (200 expected; pass `opts` for params(), e.g. another `expect`). */
export function status(queueToken, opts) {
  return http.get(url('/v1/queue/status'), params(queueToken, 'GET /v1/queue/status', Object.assign({ expect: EXPECT.ok }, opts || {})));
}

/**
 * Polls the status of every queue token (in batches, which also keeps the places from going
 * idle) until all are admitted or `timeoutSec` passes. Returns access tokens (null where a
 * place was not admitted in time or is gone).
 */
export function waitAllAdmitted(queueTokens, timeoutSec) {
  const access = new Array(queueTokens.length).fill(null);
  let pending = queueTokens.map((_, i) => i);
  const deadline = Date.now() + timeoutSec * 1000;
  while (pending.length > 0 && Date.now() < deadline) {
    const res = batched(pending.map((i) => ['GET', url('/v1/queue/status'), null,
      setupParams(queueTokens[i], 'GET /v1/queue/status', EXPECT.statusOrGone)]));
    const still = [];
    res.forEach((r, k) => {
      const i = pending[k];
      if (r.status === 200 && json(r, 'status') === 'admitted') access[i] = r.json('access_token');
      else if (r.status === 410) { /* gone: leave it null */ }
      else still.push(i);
    });
    pending = still;
    if (pending.length > 0) sleep(0.25);
  }
  return access;
}

/** Polls one place until admitted, honouring poll_after_ms. Returns the access token or null. */
export function pollUntilAdmitted(queueToken, timeoutSec) {
  const deadline = Date.now() + timeoutSec * 1000;
  while (Date.now() < deadline) {
    const res = status(queueToken);
    if (res.status === 410) return null;
    if (res.status === 200) {
      const b = res.json();
      if (b.status === 'admitted') return b.access_token;
      sleep(Math.min(Math.max((b.poll_after_ms || 1000) / 1000, 0.1), 5));
    } else {
      sleep(1);
    }
  }
  return null;
}

/** A compact, dependency-free text summary of the standard metrics (no remote jslib). */
export function textSummary(data, title) {
  const m = data.metrics || {};
  const lines = [`\n=== ${title} ===`];
  const dur = m.http_req_duration && m.http_req_duration.values;
  if (m.http_reqs) lines.push(`requests:        ${m.http_reqs.values.count} (${m.http_reqs.values.rate.toFixed(1)}/s)`);
  if (m.http_req_failed) lines.push(`failed (unexpected status or error): ${(m.http_req_failed.values.rate * 100).toFixed(2)}%`);
  if (dur) {
    lines.push(`latency ms:      avg ${fmt(dur.avg)}  p(50) ${fmt(dur.med)}  p(90) ${fmt(dur['p(90)'])}  p(95) ${fmt(dur['p(95)'])}  p(99) ${fmt(dur['p(99)'])}  max ${fmt(dur.max)}`);
  }
  if (m.checks) lines.push(`checks:          ${(m.checks.values.rate * 100).toFixed(2)}% passed (${m.checks.values.passes} ok, ${m.checks.values.fails} failed)`);
  if (m.iterations) lines.push(`iterations:      ${m.iterations.values.count}`);
  if (m.dropped_iterations) lines.push(`dropped iterations: ${m.dropped_iterations.values.count}`);
  const failed = Object.entries(m)
    .filter(([, v]) => v.thresholds)
    .flatMap(([name, v]) => Object.entries(v.thresholds).filter(([, t]) => !t.ok).map(([expr]) => `${name}: ${expr}`));
  lines.push(failed.length ? `THRESHOLDS FAILED: ${failed.join('; ')}` : 'thresholds: all passed');
  return lines.join('\n') + '\n';
}

function fmt(v) {
  return v === undefined ? '-' : Number(v).toFixed(2);
}

/** handleSummary outputs: text to stdout, JSON to $SUMMARY_JSON when set. */
export function summaryOutputs(data, text) {
  const out = { stdout: text };
  if (__ENV.SUMMARY_JSON) out[__ENV.SUMMARY_JSON] = JSON.stringify(data, null, 2);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Gateway mode (proxy.js, tunnel.js): the line guarding an origin is the concert named by the
// instance's UPSTREAM_CONCERT_ID, so these scripts do not create a concert: CONCERT_ID names it.

/** CONCERT_ID, required: the UPSTREAM_CONCERT_ID of the gateway-mode instance under test. */
export function gatewayConcertId() {
  const id = intEnv('CONCERT_ID', 0);
  if (!id) fail('CONCERT_ID is required: the UPSTREAM_CONCERT_ID of the gateway-mode instance at BASE_URL');
  return id;
}

/** The ws:// (or wss://) URL of a path on BASE_URL. */
export function wsUrl(path) {
  return url(path).replace(/^http/, 'ws');
}

/**
 * Setup of the gateway-mode scripts.
 * 1. An unadmitted request for `path` (an API client: Accept: application/json, no token) must
 *    get 403 NOT_ADMITTED naming `concertId`; anything else stops the run (gateway mode off, a
 *    path outside UPSTREAM_PATHS, an unguarded origin, or CONCERT_ID not the gateway's line).
 * 2. With SET_QUEUE=1 (the default) the line is opened so that `n` more visitors get in at once
 *    (admit_per_tick 100000, tick_ms 100, max_active raised by `n` if needed); gatewayTeardown
 *    puts the previous settings back. SET_QUEUE=0 leaves the line alone (visitors are let in at
 *    its own pace, within ADMIT_TIMEOUT_S).
 * 3. `n` users join the line and are polled until admitted.
 * Returns { visitors: [{queue_token, access_token}] (the admitted ones), queueTokens (all),
 * queueBefore (the settings to put back, or null) }.
 */
export function gatewayVisitors(concertId, path, n, prefix) {
  const started = Date.now();
  const res = http.get(url(path), params(null, `GET ${path} (not admitted)`,
    { phase: 'setup', expect: EXPECT.notAdmitted, headers: { Accept: 'application/json' } }));
  const refused = check(res, {
    'not admitted: 403 NOT_ADMITTED': (r) => r.status === 403 && json(r, 'error.code') === 'NOT_ADMITTED',
    'not admitted: names the line of CONCERT_ID': (r) => json(r, 'error.concert_id') === concertId,
  });
  if (!refused) {
    const named = json(res, 'error.concert_id');
    fail(`GET ${path} without a grant: expected 403 NOT_ADMITTED naming concert ${concertId}, got ${res.status} ` +
      `${res.body ? String(res.body).slice(0, 200) : res.error}` +
      (res.status === 403 && named !== undefined && named !== concertId ? ` (the gateway's line is concert ${named}: set CONCERT_ID=${named})` : '') +
      (res.status === 404 ? ' (is BASE_URL a gateway-mode instance, and PROTECTED_PATH under its UPSTREAM_PATHS?)' : '') +
      (res.status >= 200 && res.status < 300 ? ' (the path is NOT guarded: the origin answered a visitor without a grant)' : ''));
  }

  let queueBefore = null;
  if (intEnv('SET_QUEUE', 1) !== 0) {
    const q = getQueue(concertId);
    queueBefore = { admit_per_tick: q.admit_per_tick, tick_ms: q.tick_ms, max_active: q.max_active };
    setQueue(concertId, {
      admit_per_tick: 100000,
      tick_ms: 100,
      max_active: Math.min(1000000, Math.max(q.max_active, (q.admitted || 0) + n)),
    });
  }
  const queueTokens = joinAll(createUsers(n, prefix), concertId);
  const access = waitAllAdmitted(queueTokens, intEnv('ADMIT_TIMEOUT_S', 120));
  const visitors = [];
  access.forEach((a, i) => { if (a) visitors.push({ queue_token: queueTokens[i], access_token: a }); });
  console.log(`gateway setup: ${path} is guarded by concert ${concertId}; ${visitors.length}/${n} visitors admitted in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  if (visitors.length === 0) {
    if (queueBefore) setQueue(concertId, queueBefore); // teardown does not run after a failed setup
    fail(`no visitor was admitted within ADMIT_TIMEOUT_S (is the line of concert ${concertId} paused? SET_QUEUE=1 opens it)`);
  }
  if (visitors.length < n) console.warn(`only ${visitors.length} of ${n} visitors were admitted; the run uses those`);
  return { visitors, queueTokens, queueBefore };
}

/** Teardown of the gateway-mode scripts: every visitor leaves the line (freeing its place
 * among max_active) and the line's settings are put back when setup changed them. */
export function gatewayTeardown(concertId, data) {
  const res = batched(data.queueTokens.map((t) => ['DELETE', url('/v1/queue'), null,
    teardownParams(t, 'DELETE /v1/queue', EXPECT.left)]));
  const left = res.filter((r) => r.status === 204).length;
  check(null, { 'teardown: every visitor left the line': () => left === res.length });
  if (data.queueBefore) {
    const put = http.put(url(`/v1/admin/concerts/${concertId}/queue`), JSON.stringify(data.queueBefore),
      teardownParams(ADMIN_TOKEN, 'PUT /v1/admin/concerts/{id}/queue', EXPECT.ok));
    check(put, { 'teardown: the line\'s settings put back': (r) => r.status === 200 });
  }
}
