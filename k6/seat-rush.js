// seat-rush.js — "10,000 reservations in 1 s": RUSH_USERS admitted users all try to hold the
// SAME seat within RUSH_DURATION. Exactly one may win (201); every other answer must be
// 409 SEAT_UNAVAILABLE; no 5xx, no other status.
//
// setup: creates a concert with one date, makes its queue admit fast
//   (PUT /v1/admin/concerts/{id}/queue {"admit_per_tick":100000,"max_active":1000000,"tick_ms":100}),
//   creates RUSH_USERS users, joins them, polls until all are admitted and keeps their access tokens.
// rush: constant-arrival-rate, RUSH_USERS requests spread over RUSH_DURATION (default 1 s),
//   each with its own user's access token.
//
//   k6 run -e ADMIN_TOKEN=... k6/seat-rush.js
//   k6 run -e RUSH_USERS=2000 -e RUSH_DURATION_S=4 -e RUSH_VUS=300 k6/seat-rush.js   (2 cores)
//
// Memory: k6 copies the setup data (RUSH_USERS access tokens, ~2.5 MB at 10,000) into every VU;
// RUSH_VUS=1000 therefore needs a few GB. Lower RUSH_VUS if k6 runs short.
// CPU: an arrival with no idle VU is dropped (never sent). On 2 cores shared with the stack,
// RUSH_VUS=300 drops about half of a 1 s rush; see "Machine size for the rushes" in README.md.
import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';
import { Counter, Trend } from 'k6/metrics';
import {
  url, params, teardownParams, json, createConcert, setQueue, createUsers, joinAll, waitAllAdmitted,
  intEnv, strEnv, textSummary, summaryOutputs, EXPECT,
} from './lib.js';

const USERS = intEnv('RUSH_USERS', 10000);
const SEAT = intEnv('SEAT_NO', 1);
const DURATION_S = intEnv('RUSH_DURATION_S', 1);
const VUS = intEnv('RUSH_VUS', 1000);

const won = new Counter('holds_201');
const lost = new Counter('holds_409');
const serverErrors = new Counter('holds_5xx');
const other = new Counter('holds_other');
const holdTime = new Trend('hold_duration', true);

export const options = {
  scenarios: {
    rush: {
      executor: 'constant-arrival-rate',
      rate: USERS,
      timeUnit: `${DURATION_S}s`,
      duration: `${DURATION_S}s`,
      preAllocatedVUs: VUS,
      maxVUs: VUS,
      gracefulStop: '30s',
    },
  },
  setupTimeout: strEnv('SETUP_TIMEOUT', '900s'),
  teardownTimeout: '60s',
  batch: 200,
  batchPerHost: 200,
  noConnectionReuse: false,
  thresholds: {
    holds_201: ['count==1'],
    holds_5xx: ['count==0'],
    holds_other: ['count==0'],
    'checks{check:201 or 409}': ['rate==1'],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

export function setup() {
  const started = Date.now();
  const concert = createConcert(`k6 seat rush ${Date.now()}`, 1, 10000);
  const concertId = concert.concert_id;
  const scheduleId = concert.schedules[0].schedule_id;
  setQueue(concertId, { admit_per_tick: 100000, max_active: 1000000, tick_ms: 100 });
  const users = createUsers(USERS, `k6-rush-${Date.now()}`);
  const queueTokens = joinAll(users, concertId);
  const access = waitAllAdmitted(queueTokens, intEnv('ADMIT_TIMEOUT_S', 120)).filter((t) => !!t);
  console.log(`seat-rush setup: concert ${concertId} schedule ${scheduleId}, ${access.length}/${USERS} users admitted in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  if (access.length < USERS) console.warn(`only ${access.length} of ${USERS} users were admitted; the rush uses those`);
  return { concertId, scheduleId, tokens: access };
}

export default function (data) {
  won.add(0); lost.add(0); serverErrors.add(0); other.add(0);
  const i = exec.scenario.iterationInTest;
  if (i >= data.tokens.length) return;
  const res = http.post(url('/v1/reservations'), JSON.stringify({ schedule_id: data.scheduleId, seat_no: SEAT }),
    // 409 (the seat is taken) is the expected answer for all but one: not a failed request.
    params(data.tokens[i], 'POST /v1/reservations', { expect: EXPECT.hold }));
  holdTime.add(res.timings.duration);
  check(res, {
    '201 or 409': (r) => r.status === 201 || r.status === 409,
    '409 is SEAT_UNAVAILABLE': (r) => r.status !== 409 || json(r, 'error.code') === 'SEAT_UNAVAILABLE',
  });
  if (res.status === 201) won.add(1);
  else if (res.status === 409) lost.add(1);
  else if (res.status >= 500) serverErrors.add(1);
  else other.add(1);
}

// After the rush: the seat must show as held (by the one winner).
export function teardown(data) {
  if (!data.tokens.length) return;
  const res = http.get(url(`/v1/schedules/${data.scheduleId}/seats`),
    teardownParams(data.tokens[0], 'GET /v1/schedules/{id}/seats', EXPECT.ok));
  const seat = (json(res, 'seats') || []).find((s) => s.seat_no === SEAT);
  check(res, { 'after the rush the seat is held': () => !!seat && seat.status === 'held' });
  console.log(`seat-rush teardown: seat ${SEAT} of schedule ${data.scheduleId} is ${seat ? seat.status : 'unknown (' + res.status + ')'}`);
}

export function handleSummary(data) {
  const m = data.metrics;
  const c = (n) => (m[n] ? m[n].values.count : 0);
  const total = c('holds_201') + c('holds_409') + c('holds_5xx') + c('holds_other');
  const h = m.hold_duration ? m.hold_duration.values : {};
  const f = (v) => (v === undefined ? '-' : v.toFixed(1));
  const verdict = c('holds_201') === 1 && c('holds_5xx') === 0 && c('holds_other') === 0 ? 'PASS' : 'FAIL';
  const text = [
    `\n=== seat-rush: ${USERS} holds on one seat in ${DURATION_S} s ===`,
    `attempts:   ${total}   (dropped by k6: ${c('dropped_iterations')})`,
    ...(c('dropped_iterations') > 0 ? [`WARNING:    k6 never sent ${c('dropped_iterations')} of ${USERS} holds (too few VUs or too little CPU for k6): the rush was smaller than asked`] : []),
    `201 held:   ${c('holds_201')}   (must be exactly 1)`,
    `409 taken:  ${c('holds_409')}`,
    `5xx:        ${c('holds_5xx')}   other: ${c('holds_other')}`,
    `hold latency ms: avg ${f(h.avg)}  p50 ${f(h.med)}  p95 ${f(h['p(95)'])}  p99 ${f(h['p(99)'])}  max ${f(h.max)}`,
    `verdict:    ${verdict}`,
  ].join('\n') + '\n';
  return summaryOutputs(data, text + textSummary(data, 'seat-rush: all requests (setup included)'));
}
