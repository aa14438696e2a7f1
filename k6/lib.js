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
