#!/usr/bin/env node
// Checks, without k6, what every k6 script would count in `http_req_failed`.
//
// Each script (with lib.js) is copied to a temporary folder with its k6 imports pointed at small
// stand-ins, then run in its own Node process the way k6 runs it: init, setup(), a few
// iterations of the default function, teardown(), handleSummary(). Every http.* request is
// answered by an in-process stand-in of a healthy gateway, which also gives the answers a real
// run gets that are not 2xx: 409 SEAT_UNAVAILABLE for a seat someone else holds (the seat
// listing lags behind, as a replica can) and 410 for a place that is gone while setup waits for
// admission. For every request the check then applies the callback k6 would apply (the
// request's `responseCallback`, else the script's http.setResponseCallback, else k6's default
// 200..399) and fails when:
//   - a healthy answer would count as failed (the cause of the 66 % / 29 % "failed" in the
//     summaries of sse.js / seat-rush.js);
//   - a real failure (a 5xx, or status 0: no answer) would count as expected;
//   - a request relies on k6's implicit default instead of naming what it expects
//     (per request, or script-wide with http.setResponseCallback);
//   - a request has no `name` tag, or a request made in setup()/teardown() is not tagged
//     phase=setup/teardown (a request of the measured scenario must not carry `phase`);
//   - a check() fails against the healthy stand-in, or a script throws.
//
//   node k6/check-callbacks.mjs            (all scripts; exit 1 on any problem)
//   node k6/check-callbacks.mjs seat-rush  (one script)
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SELF = fileURLToPath(import.meta.url);

// Small runs: enough requests to see every kind of answer.
const ENV = {
  BASE_URL: 'http://gateway.invalid',
  RUSH_USERS: '12', RUSH_VUS: '4', JOIN_USERS: '8', USERS: '6', STREAMS: '6', FLOW_ITERATIONS: '8',
  SCHEDULES: '2', SETUP_BATCH: '5', VUS: '3', DURATION: '1s',
};
const MAX_ITERATIONS = 30;

// ---------------------------------------------------------------------------------------------
// Stand-ins for the k6 modules. They reach the simulator through globalThis.__k6sim.
const STUBS = {
  '__k6_http.mjs': `
const sim = () => globalThis.__k6sim;
const http = {
  get: (u, p) => sim().request('GET', u, null, p),
  head: (u, p) => sim().request('HEAD', u, null, p),
  options: (u, b, p) => sim().request('OPTIONS', u, b, p),
  post: (u, b, p) => sim().request('POST', u, b, p),
  put: (u, b, p) => sim().request('PUT', u, b, p),
  patch: (u, b, p) => sim().request('PATCH', u, b, p),
  del: (u, b, p) => sim().request('DELETE', u, b, p),
  request: (m, u, b, p) => sim().request(m, u, b, p),
  batch: (reqs) => sim().batch(reqs),
  expectedStatuses: (...a) => sim().expectedStatuses(a),
  setResponseCallback: (cb) => sim().setResponseCallback(cb),
};
export default http;
export const { get, post, put, patch, del, request, batch, expectedStatuses, setResponseCallback } = http;
`,
  '__k6.mjs': `
const sim = () => globalThis.__k6sim;
export function check(v, sets, tags) { return sim().check(v, sets, tags); }
export function fail(msg) { throw new Error('fail(): ' + msg); }
export function sleep() {}
export function group(name, fn) { return fn(); }
export default { check, fail, sleep, group };
`,
  '__k6_execution.mjs': `
const sim = () => globalThis.__k6sim;
export default {
  vu: { get idInTest() { return sim().vuId; }, get iterationInScenario() { return sim().iteration; } },
  scenario: { get iterationInTest() { return sim().iteration; }, get name() { return sim().scenarioName; } },
};
`,
  '__k6_metrics.mjs': `
class Metric { constructor(name) { this.name = name; } add() {} }
export class Counter extends Metric {}
export class Trend extends Metric {}
export class Rate extends Metric {}
export class Gauge extends Metric {}
`,
};
const IMPORTS = { 'k6/http': './__k6_http.mjs', k6: './__k6.mjs', 'k6/execution': './__k6_execution.mjs', 'k6/metrics': './__k6_metrics.mjs' };

function prepare(tmp) {
  for (const [name, text] of Object.entries(STUBS)) fs.writeFileSync(path.join(tmp, name), text);
  for (const file of fs.readdirSync(HERE).filter((f) => f.endsWith('.js'))) {
    let text = fs.readFileSync(path.join(HERE, file), 'utf8');
    text = text.replace(/(from\s+|import\s+)(['"])([^'"]+)\2/g, (all, kw, q, spec) => {
      if (IMPORTS[spec]) return `${kw}${q}${IMPORTS[spec]}${q}`;
      if (spec.startsWith('./') && spec.endsWith('.js')) return `${kw}${q}${spec.slice(0, -3)}.mjs${q}`;
      if (spec.startsWith('k6')) throw new Error(`${file}: no stand-in for '${spec}'; add one to check-callbacks.mjs`);
      return all;
    });
    fs.writeFileSync(path.join(tmp, file.replace(/\.js$/, '.mjs')), text);
  }
}

// ---------------------------------------------------------------------------------------------
// The simulated healthy gateway and the bookkeeping (worker side).
class Expected {
  constructor(args) {
    this.exact = []; this.ranges = [];
    for (const a of args) {
      if (Number.isInteger(a)) this.exact.push(a);
      else if (a && Number.isInteger(a.min) && Number.isInteger(a.max)) this.ranges.push([a.min, a.max]);
      else throw new Error('expectedStatuses: argument is neither an integer nor {min, max}');
    }
  }
  match(s) { return this.exact.includes(s) || this.ranges.some(([lo, hi]) => lo <= s && s <= hi); }
  toString() { return [...this.exact, ...this.ranges.map(([a, b]) => `${a}-${b}`)].join(','); }
}
const K6_DEFAULT = new Expected([{ min: 200, max: 399 }]);

function getPath(obj, sel) {
  let cur = obj;
  for (const part of String(sel).split('.')) {
    if (cur === null || cur === undefined) return undefined;
    cur = cur[/^\d+$/.test(part) ? Number(part) : part];
  }
  return cur;
}

class Sim {
  constructor() {
    this.phase = 'init';
    this.globalCallback = undefined; // undefined: never set (k6's default applies); null: off
    this.requests = [];
    this.checks = { pass: 0, fail: [] };
    this.vuId = 1; this.iteration = 0; this.scenarioName = 'default';
    this.nextId = 1;
    this.users = new Map(); // user token -> user id
    this.places = new Map(); // user id -> { token, polls }
    this.seats = new Map(); // schedule id -> Map(seat_no -> 'held'|'sold')
    this.reservations = new Map();
    this.schedulePrice = new Map();
  }

  expectedStatuses(args) { return new Expected(args); }

  setResponseCallback(cb) {
    if (cb !== null && !(cb instanceof Expected)) throw new Error('setResponseCallback: expected http.expectedStatuses(...) or null');
    this.globalCallback = cb;
  }

  check(value, sets) {
    let all = true;
    for (const [name, fn] of Object.entries(sets)) {
      let ok;
      try { ok = typeof fn === 'function' ? !!fn(value) : !!fn; } catch (e) { ok = false; }
      if (ok) this.checks.pass++;
      else { all = false; this.checks.fail.push(`${this.phase}: check '${name}' failed`); }
    }
    return all;
  }

  batch(reqs) {
    const list = Array.isArray(reqs) ? reqs : Object.values(reqs);
    return list.map((r) => {
      if (typeof r === 'string') return this.request('GET', r, null, undefined);
      if (Array.isArray(r)) return this.request(r[0], r[1], r[2], r[3]);
      return this.request(r.method || 'GET', r.url, r.body, r.params);
    });
  }

  request(method, rawUrl, body, params) {
    const p = params || {};
    const u = new URL(rawUrl);
    const auth = (p.headers && (p.headers.Authorization || p.headers.authorization)) || '';
    // The gateway of today still reads ?token= on the event stream; the check flags its use.
    const token = auth.startsWith('Bearer ') ? auth.slice(7) : (u.searchParams.get('token') || '');
    let parsed;
    try { parsed = body ? JSON.parse(body) : undefined; } catch (_) { parsed = undefined; }
    const [status, payload, route] = this.answer(method.toUpperCase(), u, parsed, token);
    const own = Object.prototype.hasOwnProperty.call(p, 'responseCallback');
    let callback; let source;
    if (own) { callback = p.responseCallback; source = 'request'; }
    else if (this.globalCallback !== undefined) { callback = this.globalCallback; source = 'script'; }
    else { callback = K6_DEFAULT; source = 'k6 default'; }
    this.requests.push({
      phase: this.phase, route, status, callback, source,
      tags: Object.assign({}, p.tags || {}), query: u.search,
    });
    const text = typeof payload === 'string' ? payload : payload === undefined ? '' : JSON.stringify(payload);
    return {
      status, body: text, error: '', error_code: status >= 400 ? 1000 + status : 0,
      headers: { 'X-Request-Id': `req-${this.requests.length}`, 'Content-Type': 'application/json' },
      timings: { duration: 1, waiting: 1 },
      json(sel) {
        const v = JSON.parse(text);
        return sel === undefined ? v : getPath(v, sel);
      },
    };
  }

  // A healthy gateway, per ../shared/API.md, reduced to what the scripts use.
  answer(method, u, b, token) {
    const seg = u.pathname.split('/').filter(Boolean);
    const key = `${method} /${seg.map((s) => (/^\d+$/.test(s) ? '{id}' : s)).join('/')}`;
    const err = (status, code) => [status, { error: { code, message: code, request_id: 'r' } }, key];
    const uid = this.users.get(token);
    switch (key) {
      case 'GET /healthz':
        return [200, 'ok\n', key];
      case 'POST /v1/admin/concerts': {
        const concertId = this.nextId++;
        const schedules = (b.schedules || []).map((s) => {
          const id = this.nextId++;
          // Someone else already holds every even seat; the listing does not show it yet.
          this.seats.set(id, new Map(Array.from({ length: 25 }, (_, i) => [2 * (i + 1), 'held'])));
          this.schedulePrice.set(id, s.price);
          return { schedule_id: id, starts_at: s.starts_at, price: s.price, total_seats: 50 };
        });
        return [201, { concert_id: concertId, name: b.name, schedules }, key];
      }
      case 'PUT /v1/admin/concerts/{id}/queue':
      case 'GET /v1/admin/concerts/{id}/queue':
        return [200, { concert_id: Number(seg[3]), waiting: this.places.size, admitted: 0, admit_per_tick: 100, tick_ms: 1000, max_active: 1000, access_ttl_secs: 600 }, key];
      case 'POST /v1/users': {
        const id = this.nextId++;
        this.users.set(`user-${id}`, id);
        return [201, { user_id: id, name: b.name, user_token: `user-${id}` }, key];
      }
      case 'POST /v1/queue': {
        if (uid === undefined) return err(401, 'UNAUTHORIZED');
        const had = this.places.has(uid);
        if (!had) this.places.set(uid, { token: `queue-${uid}`, polls: 0, index: this.places.size });
        const place = this.places.get(uid);
        return [had ? 200 : 201, { queue_token: place.token, status: 'waiting', position: place.index + 1, eta_seconds: 1, poll_after_ms: 1000 }, key];
      }
      case 'GET /v1/queue/status': {
        const place = [...this.places.values()].find((pl) => pl.token === token);
        if (!place) return err(401, 'UNAUTHORIZED');
        place.polls++;
        // The third place in line goes idle while setup waits for admission: 410.
        if (this.phase === 'setup' && place.index === 2) return err(410, 'QUEUE_ENTRY_GONE');
        if (place.polls === 1) return [200, { status: 'waiting', position: 1, eta_seconds: 1, poll_after_ms: 200 }, key];
        return [200, { status: 'admitted', access_token: `access-${token.slice(6)}`, access_expires_at: '2031-01-01T00:00:00Z' }, key];
      }
      case 'GET /v1/queue/events': {
        if (!token.startsWith('queue-')) return err(401, 'UNAUTHORIZED');
        return [200, 'event: position\ndata: {"position":1,"eta_seconds":1}\n\n' +
          `event: admitted\ndata: {"status":"admitted","access_token":"access-${token.slice(6)}","access_expires_at":"2031-01-01T00:00:00Z"}\n\n`, key];
      }
      case 'GET /v1/concerts/{id}/schedules':
        return [200, { concert_id: Number(seg[2]), name: 'k6', schedules: [...this.seats.keys()].map((id) => ({ schedule_id: id, starts_at: '2031-01-01T19:00:00Z', total_seats: 50, available_seats: 25 })) }, key];
      case 'GET /v1/schedules/{id}/seats': {
        const id = Number(seg[2]);
        const taken = this.seats.get(id) || new Map();
        // Lagging listing: seats held by others (the even ones) still show as available.
        const seats = Array.from({ length: 50 }, (_, i) => ({ seat_no: i + 1, price: this.schedulePrice.get(id), status: (i + 1) % 2 === 0 ? 'available' : (taken.get(i + 1) || 'available') }));
        return [200, { schedule_id: id, seats }, key];
      }
      case 'POST /v1/reservations': {
        if (!token.startsWith('access-')) return err(401, 'UNAUTHORIZED');
        const taken = this.seats.get(b.schedule_id);
        if (!taken) return err(404, 'NOT_FOUND');
        if (taken.has(b.seat_no)) return err(409, 'SEAT_UNAVAILABLE');
        taken.set(b.seat_no, 'held');
        const id = this.nextId++;
        const price = this.schedulePrice.get(b.schedule_id);
        this.reservations.set(id, { schedule_id: b.schedule_id, seat_no: b.seat_no, price });
        return [201, { reservation_id: id, schedule_id: b.schedule_id, seat_no: b.seat_no, price, status: 'held', expires_at: '2031-01-01T00:05:00Z' }, key];
      }
      case 'POST /v1/users/{id}/balance/charge':
        return [200, { user_id: Number(seg[2]), balance: b.amount }, key];
      case 'POST /v1/payments': {
        const r = this.reservations.get(b.reservation_id);
        if (!r) return err(404, 'NOT_FOUND');
        this.seats.get(r.schedule_id).set(r.seat_no, 'sold');
        return [201, { payment_id: this.nextId++, reservation_id: b.reservation_id, amount: r.price, status: 'completed' }, key];
      }
      default:
        return [404, { error: { code: 'NOT_FOUND', message: `no such route in the stand-in: ${key}` } }, key];
    }
  }
}

function iterationsOf(options) {
  const scenarios = (options && options.scenarios) || { default: { executor: 'shared-iterations', vus: 1, iterations: 1 } };
  const [name, s] = Object.entries(scenarios)[0];
  let n = 1;
  let vus = s.vus || s.preAllocatedVUs || 1;
  switch (s.executor) {
    case 'shared-iterations': n = s.iterations || 1; break;
    case 'per-vu-iterations': n = (s.vus || 1) * (s.iterations || 1); break;
    case 'constant-arrival-rate': n = s.rate || 1; vus = s.maxVUs || vus; break;
    default: n = vus; // constant-vus, ramping-*: one iteration per VU is enough here
  }
  return { name, n: Math.min(n, MAX_ITERATIONS), vus };
}

async function worker(file) {
  const sim = new Sim();
  globalThis.__k6sim = sim;
  globalThis.__ENV = Object.assign({}, ENV);
  Object.defineProperty(globalThis, '__VU', { get: () => sim.vuId });
  Object.defineProperty(globalThis, '__ITER', { get: () => sim.iteration });
  const logs = [];
  console.log = (...a) => logs.push(a.join(' '));
  console.warn = (...a) => logs.push(a.join(' '));
  const problems = [];
  try {
    const mod = await import(pathToFileURL(file).href);
    const { name, n, vus } = iterationsOf(mod.options);
    sim.scenarioName = name;
    let data;
    if (typeof mod.setup === 'function') {
      sim.phase = 'setup';
      data = mod.setup();
      data = data === undefined ? undefined : JSON.parse(JSON.stringify(data)); // k6 copies it as JSON
    }
    sim.phase = 'run';
    for (let i = 0; i < n; i++) {
      sim.iteration = i; sim.vuId = (i % vus) + 1;
      mod.default(data);
    }
    if (typeof mod.teardown === 'function') { sim.phase = 'teardown'; mod.teardown(data); }
    if (typeof mod.handleSummary === 'function') {
      sim.phase = 'summary';
      const t = { avg: 1, min: 1, med: 1, 'p(90)': 1, 'p(95)': 1, 'p(99)': 1, max: 1 };
      const out = mod.handleSummary({
        metrics: {
          http_reqs: { values: { count: sim.requests.length, rate: 1 } },
          http_req_failed: { values: { rate: 0 } },
          http_req_duration: { values: t },
          checks: { values: { rate: 1, passes: sim.checks.pass, fails: 0 } },
          iterations: { values: { count: n } },
          dropped_iterations: { values: { count: 1 } },
        },
      });
      if (!out || typeof out.stdout !== 'string') problems.push('handleSummary returned no stdout text');
    }
  } catch (e) {
    problems.push(`threw in ${sim.phase}: ${e && e.stack ? e.stack.split('\n').slice(0, 3).join(' | ') : e}`);
  }

  const REAL_FAILURES = [0, 500, 502, 503, 504];
  const counts = {}; const byPhase = {};
  let failed = 0;
  const seen = new Set();
  for (const r of sim.requests) {
    counts[r.status] = (counts[r.status] || 0) + 1;
    byPhase[r.phase] = (byPhase[r.phase] || 0) + 1;
    const what = `${r.phase}: ${r.route} -> ${r.status}`;
    const once = (msg) => { if (!seen.has(msg)) { seen.add(msg); problems.push(msg); } };
    const expected = r.callback === null ? true : r.callback.match(r.status);
    if (!expected) { failed++; once(`${what} would count in http_req_failed (expects ${r.callback} via ${r.source})`); }
    if (r.callback === null) once(`${what}: response callback is off (null), http_req_failed is not emitted`);
    else {
      const lax = REAL_FAILURES.filter((s) => r.callback.match(s));
      if (lax.length) once(`${what}: a real failure (${lax.join(', ')}) would count as expected (expects ${r.callback})`);
    }
    if (r.source === 'k6 default') once(`${what}: no expectation named (no responseCallback, no http.setResponseCallback)`);
    if (!r.tags.name) once(`${what}: no 'name' tag`);
    if ((r.phase === 'setup' || r.phase === 'teardown') && r.tags.phase !== r.phase) once(`${what}: not tagged phase=${r.phase}`);
    if (r.phase === 'run' && r.tags.phase) once(`${what}: a request of the scenario is tagged phase=${r.tags.phase}`);
    if (r.route.endsWith('/v1/queue/events') && r.query) once(`${what}: a query string on the event stream (tokens belong in Authorization)`);
    if (r.status === 404 && /no such route/.test(r.route)) once(`${what}: unknown route`);
  }
  for (const f of new Set(sim.checks.fail)) problems.push(f);
  if (sim.requests.length === 0) problems.push('made no requests');
  const statuses = Object.entries(counts).map(([s, c]) => `${s}x${c}`).join(' ');
  const phases = Object.entries(byPhase).map(([p, c]) => `${p} ${c}`).join(', ');
  const rate = sim.requests.length ? ((failed / sim.requests.length) * 100).toFixed(2) : '-';
  process.stdout.write(JSON.stringify({ problems, summary: `${sim.requests.length} requests (${phases}); statuses ${statuses}; http_req_failed ${rate}%`, logs }) + '\n');
}

async function main() {
  const args = process.argv.slice(2);
  if (args[0] === '--worker') return worker(args[1]);
  const only = new Set(args.map((a) => a.replace(/\.js$/, '')));
  const scripts = fs.readdirSync(HERE).filter((f) => f.endsWith('.js') && f !== 'lib.js')
    .map((f) => f.slice(0, -3)).filter((n) => only.size === 0 || only.has(n)).sort();
  if (scripts.length === 0) { console.error('check-callbacks: no scripts'); process.exit(2); }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'k6-callbacks-'));
  let bad = 0;
  try {
    prepare(tmp);
    for (const name of scripts) {
      const run = spawnSync(process.execPath, [SELF, '--worker', path.join(tmp, `${name}.mjs`)], { encoding: 'utf8', timeout: 60000 });
      let result;
      try { result = JSON.parse(run.stdout.trim().split('\n').pop()); } catch (_) {
        result = { problems: [`worker failed (exit ${run.status}): ${(run.stderr || '').trim().split('\n').slice(0, 5).join(' | ')}`], summary: '' };
      }
      if (result.problems.length) {
        bad++;
        console.log(`FAIL  k6/${name}.js  ${result.summary}`);
        for (const p of result.problems) console.log(`      ${p}`);
      } else {
        console.log(`ok    k6/${name}.js  ${result.summary}`);
      }
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  console.log(bad ? `${bad} of ${scripts.length} scripts have response-callback problems` : `${scripts.length} scripts: every request names what it expects; no healthy answer counts as failed`);
  process.exit(bad ? 1 : 0);
}

main().catch((e) => { console.error(e); process.exit(2); });
