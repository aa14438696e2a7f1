#!/usr/bin/env node
// Checks, without k6, what every k6 script would count in `http_req_failed`.
//
// Each script (with lib.js) is copied to a temporary folder with its k6 imports pointed at small
// stand-ins, then run in its own Node process the way k6 runs it: init, setup(), a few
// iterations of the default function, teardown(), handleSummary(). Every http.* request is
// answered by an in-process stand-in of a healthy gateway, which also gives the answers a real
// run gets that are not 2xx: 409 SEAT_UNAVAILABLE for a seat someone else holds (the seat
// listing lags behind, as a replica can) and 410 for a place that is gone while setup waits for
// admission. In gateway mode (proxy.js, tunnel.js: CONCERT_ID names the stand-in's
// UPSTREAM_CONCERT_ID) it also guards /shop like a gateway-mode instance: a live access token
// passes to a stand-in origin (200 HTML; a WebSocket handshake gets 101 and an echo that the
// gateway drops when the visitor leaves the line), no grant gets 403 NOT_ADMITTED (a browser a
// 303); DIRECT_URL is that origin reached directly. Scripts that use setup data in ways a single
// set of knobs would not reach run more than once (RUNS below, e.g. tunnel with LEAVE=1), and
// every scenario of a script runs (with its `exec` function).
// For every request the check then applies the callback k6 would apply (the
// request's `responseCallback`, else the script's http.setResponseCallback, else k6's default
// 200..399) and fails when:
//   - a healthy answer would count as failed (the cause of the 66 % / 29 % "failed" in the
//     summaries of sse.js / seat-rush.js);
//   - a real failure (a 5xx, or status 0: no answer) would count as expected;
//   - a request relies on k6's implicit default instead of naming what it expects
//     (per request, or script-wide with http.setResponseCallback);
//   - a request has no `name` tag, or a request made in setup()/teardown() is not tagged
//     phase=setup/teardown (a request of the measured scenario must not carry `phase`);
//   - a check() fails against the healthy stand-in, or a script throws;
//   - a request goes to a route the stand-in does not know;
//   - a script changed the queue settings of a line it did not create (the gateway's) and did
//     not put them back in teardown.
// WebSocket sessions (k6/ws) have no response callback and do not count in http_req_failed
// (k6 reports them in ws_* metrics; the script checks for 101 itself), so for them only the
// `name` and `phase` tags are checked, besides a ws:// URL, no token in the query, and a session
// that ends (ws.connect returns only when the socket is closed).
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
  SCHEDULES: '2', SETUP_BATCH: '5', VUS: '3', DURATION: '1s', VISITORS: '6', MESSAGES: '4',
};
// The stand-in's gateway mode: UPSTREAM_CONCERT_ID, UPSTREAM_PATHS and the origin (DIRECT_URL).
const GATEWAY = { concertId: 900, paths: ['/shop'], origin: 'http://origin.invalid' };
// Runs per script (default: one, with ENV alone); `env` is added to ENV.
const GW_ENV = { CONCERT_ID: String(GATEWAY.concertId) };
const RUNS = {
  proxy: [{ label: '', env: GW_ENV }, { label: 'DIRECT_URL', env: { ...GW_ENV, DIRECT_URL: GATEWAY.origin } }],
  tunnel: [{ label: '', env: GW_ENV }, { label: 'LEAVE=1', env: { ...GW_ENV, LEAVE: '1' } }],
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
  '__k6_ws.mjs': `
const sim = () => globalThis.__k6sim;
export function connect(url, params, callback) { return sim().wsConnect(url, params, callback); }
export default { connect };
`,
};
const IMPORTS = { 'k6/http': './__k6_http.mjs', k6: './__k6.mjs', 'k6/execution': './__k6_execution.mjs', 'k6/metrics': './__k6_metrics.mjs', 'k6/ws': './__k6_ws.mjs' };

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
    this.problems = []; // found outside a request's bookkeeping (WebSocket sessions)
    this.sockets = new Set(); // open WebSocket sessions
    this.wsEchoes = 0;
    // Queue settings per concert; the gateway's line exists before the script runs, with a
    // small max_active as a shop would set it.
    this.queueSettings = new Map([[GATEWAY.concertId, { admit_per_tick: 1, tick_ms: 1000, max_active: 10, access_ttl_secs: 600 }]]);
    this.gatewayQueueAtStart = JSON.stringify(this.queueSettings.get(GATEWAY.concertId));
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
    const headers = {};
    for (const [k, v] of Object.entries(p.headers || {})) headers[k.toLowerCase()] = String(v);
    const [status, payload, route, extra] = this.answer(method.toUpperCase(), u, parsed, token, headers);
    const own = Object.prototype.hasOwnProperty.call(p, 'responseCallback');
    let callback; let source;
    if (own) { callback = p.responseCallback; source = 'request'; }
    else if (this.globalCallback !== undefined) { callback = this.globalCallback; source = 'script'; }
    else { callback = K6_DEFAULT; source = 'k6 default'; }
    this.requests.push({
      kind: 'http', phase: this.phase, route, status, callback, source,
      tags: Object.assign({}, p.tags || {}), query: u.search, unknown: !!(extra && extra.unknown),
    });
    const text = typeof payload === 'string' ? payload : payload === undefined ? '' : JSON.stringify(payload);
    return {
      status, body: text, error: '', error_code: status >= 400 ? 1000 + status : 0,
      headers: Object.assign({ 'X-Request-Id': `req-${this.requests.length}`, 'Content-Type': 'application/json' }, (extra && extra.headers) || {}),
      timings: { duration: 1, waiting: 1 },
      json(sel) {
        const v = JSON.parse(text);
        return sel === undefined ? v : getPath(v, sel);
      },
    };
  }

  // A healthy gateway, per ../shared/API.md, reduced to what the scripts use.
  answer(method, u, b, token, headers) {
    const seg = u.pathname.split('/').filter(Boolean);
    const key = `${method} /${seg.map((s) => (/^\d+$/.test(s) ? '{id}' : s)).join('/')}`;
    const err = (status, code) => [status, { error: { code, message: code, request_id: 'r' } }, key];
    const uid = this.users.get(token);
    const origin = new URL(GATEWAY.origin);
    if (u.host === origin.host) return this.originAnswer(method, u);
    if (u.host !== new URL(globalThis.__ENV.BASE_URL).host) return [404, { error: { code: 'NOT_FOUND', message: `no such host in the stand-in: ${u.host}` } }, `${method} ${u.origin}${u.pathname}`, { unknown: true }];
    const guarded = this.guarded(u.pathname);
    if (guarded === 'bad') return err(400, 'BAD_REQUEST');
    if (guarded) {
      // Gateway mode: a live grant passes to the origin; otherwise browsers are sent to the
      // line, API clients refused with the envelope naming it.
      if (this.liveGrant(token)) return this.originAnswer(method, u, key);
      const queueUrl = `/concerts/${GATEWAY.concertId}?return=${encodeURIComponent(u.pathname + u.search)}`;
      if ((method === 'GET' || method === 'HEAD') && (headers.accept || '').includes('text/html')) {
        return [303, '', key, { headers: { Location: queueUrl, 'Cache-Control': 'no-store', 'Content-Type': 'text/plain' } }];
      }
      return [403, { error: { code: 'NOT_ADMITTED', message: `you have not been admitted: join the line at ${queueUrl} first`, request_id: 'r', queue_url: queueUrl, concert_id: GATEWAY.concertId } }, key];
    }
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
      case 'GET /v1/admin/concerts/{id}/queue': {
        const id = Number(seg[3]);
        const cur = this.queueSettings.get(id) || { admit_per_tick: 100, tick_ms: 1000, max_active: 1000, access_ttl_secs: 600 };
        if (method === 'PUT') {
          const ranges = { admit_per_tick: [0, 100000], tick_ms: [100, 60000], max_active: [0, 1000000], access_ttl_secs: [10, 86400] };
          for (const [field, [lo, hi]] of Object.entries(ranges)) {
            const v = (b || {})[field];
            if (v !== undefined && !(Number.isInteger(v) && lo <= v && v <= hi)) {
              return [422, { error: { code: 'VALIDATION_FAILED', message: field, request_id: 'r', field } }, key];
            }
          }
          for (const field of Object.keys(ranges)) if ((b || {})[field] !== undefined) cur[field] = b[field];
          this.queueSettings.set(id, cur);
        }
        const mine = [...this.places.values()].filter((pl) => pl.concert === id && !pl.left);
        return [200, { concert_id: id, waiting: mine.filter((pl) => !pl.admitted).length, admitted: mine.filter((pl) => pl.admitted).length, ...cur }, key];
      }
      case 'POST /v1/users': {
        const id = this.nextId++;
        this.users.set(`user-${id}`, id);
        return [201, { user_id: id, name: b.name, user_token: `user-${id}` }, key];
      }
      case 'POST /v1/queue': {
        if (uid === undefined) return err(401, 'UNAUTHORIZED');
        const had = this.places.has(uid);
        if (!had) this.places.set(uid, { token: `queue-${uid}`, polls: 0, index: this.places.size, concert: b.concert_id, admitted: false, left: false });
        const place = this.places.get(uid);
        return [had ? 200 : 201, { queue_token: place.token, status: 'waiting', position: place.index + 1, eta_seconds: 1, poll_after_ms: 1000 }, key];
      }
      case 'GET /v1/queue/status': {
        const place = [...this.places.values()].find((pl) => pl.token === token);
        if (!place) return err(401, 'UNAUTHORIZED');
        if (place.left) return err(410, 'QUEUE_ENTRY_GONE');
        place.polls++;
        // The third place in line goes idle while setup waits for admission: 410.
        if (this.phase === 'setup' && place.index === 2) return err(410, 'QUEUE_ENTRY_GONE');
        if (place.polls === 1) return [200, { status: 'waiting', position: 1, eta_seconds: 1, poll_after_ms: 200 }, key];
        place.admitted = true;
        return [200, { status: 'admitted', access_token: `access-${token.slice(6)}`, access_expires_at: '2031-01-01T00:00:00Z' }, key];
      }
      case 'DELETE /v1/queue': {
        // Idempotent; leaving ends the admission, and the gateway closes that visitor's tunnels.
        if (!token.startsWith('queue-')) return err(401, 'UNAUTHORIZED');
        const place = [...this.places.values()].find((pl) => pl.token === token);
        if (place && !place.left) {
          place.left = true;
          for (const sock of this.sockets) if (sock.token === `access-${token.slice(6)}`) sock.dropByGateway();
        }
        return [204, '', key];
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
        return [404, { error: { code: 'NOT_FOUND', message: `no such route in the stand-in: ${key}` } }, key, { unknown: true }];
    }
  }

  /** Gateway mode: is `path` guarded? true, false (queuegate's own or no prefix), or 'bad'. */
  guarded(path) {
    const own = ['/v1', '/healthz', '/readyz', '/metrics', '/openapi.json', '/docs', '/concerts', '/assets'];
    if (path === '/' || path.startsWith('//') || own.some((o) => path === o || path.startsWith(`${o}/`))) return false;
    if (!GATEWAY.paths.some((pre) => path === pre || path.startsWith(`${pre}/`))) return false;
    if (/(^|\/)(\.|\.\.|%2e|%2e%2e)(\/|$)/i.test(path) || /\/\/|%2f|%5c|%00|\\/i.test(path)) return 'bad';
    return true;
  }

  /** A live admission to the gateway's line behind this bearer token. */
  liveGrant(token) {
    if (!token.startsWith('access-')) return false;
    const place = this.places.get(Number(token.slice(7)));
    return !!place && place.admitted && !place.left && place.concert === GATEWAY.concertId;
  }

  /** The stand-in origin (a static shop): GET/HEAD of a page under /shop. */
  originAnswer(method, u, key) {
    const route = key || `${method} ${GATEWAY.origin}${u.pathname}`;
    if ((method === 'GET' || method === 'HEAD') && u.pathname.startsWith('/shop/')) {
      return [200, '<!doctype html><html><head><title>Shop</title></head><body><p>A static shop page.</p></body></html>\n', route, { headers: { 'Content-Type': 'text/html' } }];
    }
    return [404, '<html><body>404 Not Found</body></html>\n', route, { unknown: true, headers: { 'Content-Type': 'text/html' } }];
  }

  /**
   * k6/ws connect(url, params, callback): the handshake goes through the gateway's gate like a
   * request; with 101 the callback gets a socket to an echo origin, run on a virtual clock until
   * it closes (as k6 does, ws.connect returns only then).
   */
  wsConnect(rawUrl, params, callback) {
    if (callback === undefined && typeof params === 'function') { callback = params; params = undefined; }
    if (this.phase === 'init') throw new Error('using websockets in the init context is not supported');
    if (typeof callback !== 'function') throw new Error('last argument to ws.connect must be a function');
    const p = params || {};
    let u;
    try { u = new URL(rawUrl); } catch (_) { throw new Error(`ws.connect: malformed URL ${rawUrl}`); }
    if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new Error(`ws.connect: malformed ws or wss URL ${rawUrl}`);
    const headers = {};
    for (const [k, v] of Object.entries(p.headers || {})) headers[k.toLowerCase()] = String(v);
    const auth = headers.authorization || '';
    const token = auth.startsWith('Bearer ') ? auth.slice(7) : '';
    const route = `WS GET ${u.pathname}`;
    const gw = new URL(globalThis.__ENV.BASE_URL);
    let status;
    if (u.hostname !== gw.hostname) status = 404;
    else {
      const guarded = this.guarded(u.pathname);
      if (guarded === 'bad') status = 400;
      else if (!guarded) status = 404; // queuegate's own routes upgrade nothing
      else if (!this.liveGrant(token)) status = 403;
      else if ([...this.sockets].filter((x) => x.token === token).length >= 8) status = 429;
      else status = 101;
    }
    this.requests.push({
      kind: 'ws', phase: this.phase, route, status, callback: null, source: 'ws',
      tags: Object.assign({}, p.tags || {}), query: u.search, unknown: status === 404,
    });
    if (status !== 101) {
      return { url: rawUrl, status, headers: { 'Content-Type': 'application/json' }, body: '{"error":{"code":"REFUSED"}}', error: 'websocket: bad handshake' };
    }
    const sock = new SimSocket(this, token, route);
    this.sockets.add(sock);
    try {
      callback(sock);
      sock.emit('open');
      sock.run();
    } finally {
      this.sockets.delete(sock);
    }
    return { url: rawUrl, status: 101, headers: { Upgrade: 'websocket', Connection: 'Upgrade' }, body: '', error: '' };
  }
}

/** A k6/ws Socket talking to an echo origin through the stand-in gateway, on a virtual clock. */
class SimSocket {
  constructor(sim, token, route) {
    this.sim = sim; this.token = token; this.route = route;
    this.handlers = {}; this.timers = []; this.now = 0; this.seq = 0; this.closed = false;
  }
  on(event, fn) { if (typeof fn === 'function') (this.handlers[event] = this.handlers[event] || []).push(fn); }
  emit(event, ...args) { for (const fn of this.handlers[event] || []) fn(...args); }
  later(delay, fn, every) { this.timers.push({ at: this.now + Math.max(0, Number(delay) || 0), seq: this.seq++, fn, every }); }
  send(data) {
    if (this.closed) { this.emit('error', wsError('websocket: close sent')); return; }
    const text = String(data);
    this.later(1, () => { this.sim.wsEchoes++; this.emit('message', text); }); // the echo origin
  }
  sendBinary(data) { if (!this.closed) this.later(1, () => this.emit('binaryMessage', data)); }
  ping() { if (!this.closed) this.later(1, () => this.emit('pong')); }
  setTimeout(fn, ms) { this.later(ms, fn); }
  setInterval(fn, ms) { this.later(ms, fn, Math.max(1, Number(ms) || 1)); }
  close(code) {
    if (this.closed) return;
    this.closed = true;
    this.emit('close', code === undefined ? 1001 : code);
  }
  /** The gateway ends the tunnel: both connections closed, no close frame (k6: error, then close 1006). */
  dropByGateway() {
    this.later(3, () => {
      if (this.closed) return;
      this.emit('error', wsError('websocket: close 1006 (abnormal closure): unexpected EOF'));
      this.closed = true;
      this.emit('close', 1006);
    });
  }
  run() {
    for (let steps = 0; !this.closed; steps++) {
      if (this.timers.length === 0) {
        this.sim.problems.push(`${this.sim.phase}: ${this.route}: the socket stays open with nothing left to happen (ws.connect would never return; close it or set a timeout)`);
        this.closed = true;
        return;
      }
      if (steps > 100000) {
        this.sim.problems.push(`${this.sim.phase}: ${this.route}: the socket never closes (over 100000 events)`);
        this.closed = true;
        return;
      }
      this.timers.sort((a, b) => a.at - b.at || a.seq - b.seq);
      const t = this.timers.shift();
      this.now = t.at;
      if (t.every) this.later(t.every, t.fn, t.every);
      t.fn();
    }
  }
}

/** What k6/ws hands an 'error' handler: an object whose error() is the message. */
function wsError(message) {
  return { error: () => message, toString: () => message };
}

/** Every scenario of the script, in order of startTime: its name, exec function, iterations, VUs. */
function scenariosOf(options) {
  const scenarios = (options && options.scenarios) || { default: { executor: 'shared-iterations', vus: 1, iterations: 1 } };
  const secs = (d) => { const m = String(d || '0s').match(/^(\d+(?:\.\d+)?)(ms|s|m|h)$/); return m ? Number(m[1]) * { ms: 0.001, s: 1, m: 60, h: 3600 }[m[2]] : 0; };
  return Object.entries(scenarios).map(([name, s]) => {
    let n = 1;
    let vus = s.vus || s.preAllocatedVUs || 1;
    switch (s.executor) {
      case 'shared-iterations': n = s.iterations || 1; break;
      case 'per-vu-iterations': n = (s.vus || 1) * (s.iterations || 1); break;
      case 'constant-arrival-rate': n = s.rate || 1; vus = s.maxVUs || vus; break;
      default: n = vus; // constant-vus, ramping-*: one iteration per VU is enough here
    }
    return { name, exec: s.exec || 'default', n: Math.min(n, MAX_ITERATIONS), vus, start: secs(s.startTime) };
  }).sort((a, b) => a.start - b.start);
}

async function worker(file, extraEnv) {
  const sim = new Sim();
  globalThis.__k6sim = sim;
  globalThis.__ENV = Object.assign({}, ENV, extraEnv || {});
  Object.defineProperty(globalThis, '__VU', { get: () => sim.vuId });
  Object.defineProperty(globalThis, '__ITER', { get: () => sim.iteration });
  const logs = [];
  console.log = (...a) => logs.push(a.join(' '));
  console.warn = (...a) => logs.push(a.join(' '));
  const problems = [];
  try {
    const mod = await import(pathToFileURL(file).href);
    const scenarios = scenariosOf(mod.options);
    for (const sc of scenarios) {
      if (typeof mod[sc.exec] !== 'function') throw new Error(`scenario ${sc.name}: no exported function ${sc.exec}`);
    }
    let data;
    if (typeof mod.setup === 'function') {
      sim.phase = 'setup';
      data = mod.setup();
      data = data === undefined ? undefined : JSON.parse(JSON.stringify(data)); // k6 copies it as JSON
    }
    sim.phase = 'run';
    let vuBase = 0;
    for (const sc of scenarios) {
      sim.scenarioName = sc.name;
      for (let i = 0; i < sc.n; i++) {
        sim.iteration = i; sim.vuId = vuBase + (i % sc.vus) + 1;
        mod[sc.exec](data);
      }
      vuBase += sc.vus;
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
          iterations: { values: { count: scenarios.reduce((a, sc) => a + sc.n, 0) } },
          dropped_iterations: { values: { count: 1 } },
        },
      });
      if (!out || typeof out.stdout !== 'string') problems.push('handleSummary returned no stdout text');
    }
  } catch (e) {
    problems.push(`threw in ${sim.phase}: ${e && e.stack ? e.stack.split('\n').slice(0, 3).join(' | ') : e}`);
  }

  problems.push(...new Set(sim.problems));
  if (JSON.stringify(sim.queueSettings.get(GATEWAY.concertId)) !== sim.gatewayQueueAtStart) {
    problems.push(`the queue settings of the gateway's line (concert ${GATEWAY.concertId}, not the script's own) were changed and not put back: ${sim.gatewayQueueAtStart} -> ${JSON.stringify(sim.queueSettings.get(GATEWAY.concertId))}`);
  }

  const REAL_FAILURES = [0, 500, 502, 503, 504];
  const counts = {}; const byPhase = {};
  let failed = 0; let httpCount = 0; let wsCount = 0;
  const seen = new Set();
  for (const r of sim.requests) {
    counts[r.status] = (counts[r.status] || 0) + 1;
    byPhase[r.phase] = (byPhase[r.phase] || 0) + 1;
    const what = `${r.phase}: ${r.route} -> ${r.status}`;
    const once = (msg) => { if (!seen.has(msg)) { seen.add(msg); problems.push(msg); } };
    if (r.unknown) once(`${what}: unknown route`);
    if (!r.tags.name) once(`${what}: no 'name' tag`);
    if ((r.phase === 'setup' || r.phase === 'teardown') && r.tags.phase !== r.phase) once(`${what}: not tagged phase=${r.phase}`);
    if (r.phase === 'run' && r.tags.phase) once(`${what}: a request of the scenario is tagged phase=${r.tags.phase}`);
    if (r.kind === 'ws') {
      // No response callback in k6/ws and no http_req_failed: the script checks for 101.
      wsCount++;
      if (r.query) once(`${what}: a query string on a WebSocket URL (tokens belong in Authorization)`);
      continue;
    }
    httpCount++;
    const expected = r.callback === null ? true : r.callback.match(r.status);
    if (!expected) { failed++; once(`${what} would count in http_req_failed (expects ${r.callback} via ${r.source})`); }
    if (r.callback === null) once(`${what}: response callback is off (null), http_req_failed is not emitted`);
    else {
      const lax = REAL_FAILURES.filter((s) => r.callback.match(s));
      if (lax.length) once(`${what}: a real failure (${lax.join(', ')}) would count as expected (expects ${r.callback})`);
    }
    if (r.source === 'k6 default') once(`${what}: no expectation named (no responseCallback, no http.setResponseCallback)`);
    if (r.route.endsWith('/v1/queue/events') && r.query) once(`${what}: a query string on the event stream (tokens belong in Authorization)`);
  }
  for (const f of new Set(sim.checks.fail)) problems.push(f);
  if (sim.requests.length === 0) problems.push('made no requests');
  const statuses = Object.entries(counts).map(([s, c]) => `${s}x${c}`).join(' ');
  const phases = Object.entries(byPhase).map(([p, c]) => `${p} ${c}`).join(', ');
  const rate = httpCount ? ((failed / httpCount) * 100).toFixed(2) : '-';
  const ws = wsCount ? `, ${wsCount} of them WebSocket sessions (${sim.wsEchoes} echoes)` : '';
  process.stdout.write(JSON.stringify({ problems, summary: `${sim.requests.length} requests${ws} (${phases}); statuses ${statuses}; http_req_failed ${rate}%`, logs }) + '\n');
}

async function main() {
  const args = process.argv.slice(2);
  if (args[0] === '--worker') return worker(args[1], JSON.parse(args[2] || '{}'));
  const only = new Set(args.map((a) => a.replace(/\.js$/, '')));
  const scripts = fs.readdirSync(HERE).filter((f) => f.endsWith('.js') && f !== 'lib.js')
    .map((f) => f.slice(0, -3)).filter((n) => only.size === 0 || only.has(n)).sort();
  if (scripts.length === 0) { console.error('check-callbacks: no scripts'); process.exit(2); }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'k6-callbacks-'));
  let bad = 0; let runs = 0;
  try {
    prepare(tmp);
    for (const name of scripts) for (const variant of RUNS[name] || [{ label: '', env: {} }]) {
      runs++;
      const label = variant.label ? `k6/${name}.js (${variant.label})` : `k6/${name}.js`;
      const run = spawnSync(process.execPath, [SELF, '--worker', path.join(tmp, `${name}.mjs`), JSON.stringify(variant.env)], { encoding: 'utf8', timeout: 60000 });
      let result;
      try { result = JSON.parse(run.stdout.trim().split('\n').pop()); } catch (_) {
        result = { problems: [`worker failed (exit ${run.status}): ${(run.stderr || '').trim().split('\n').slice(0, 5).join(' | ')}`], summary: '' };
      }
      if (result.problems.length) {
        bad++;
        console.log(`FAIL  ${label}  ${result.summary}`);
        for (const p of result.problems) console.log(`      ${p}`);
      } else {
        console.log(`ok    ${label}  ${result.summary}`);
      }
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  const of = runs === scripts.length ? `${scripts.length} scripts` : `${scripts.length} scripts (${runs} runs)`;
  console.log(bad ? `${bad} of ${runs} runs of ${scripts.length} scripts have response-callback problems` : `${of}: every request names what it expects; no healthy answer counts as failed`);
  process.exit(bad ? 1 : 0);
}

main().catch((e) => { console.error(e); process.exit(2); });
