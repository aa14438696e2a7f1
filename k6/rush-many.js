// rush-many.js — admitted users rush RANDOM seats of SCHEDULES dates (50 seats each).
// Several users collide on each seat; every seat may be won once. Checks: only 201/409, no 5xx,
// at most 50 x SCHEDULES wins, and (teardown) the seats shown held equal the 201s.
//
//   k6 run -e ADMIN_TOKEN=... k6/rush-many.js                 (RUSH_USERS=2000 SCHEDULES=3, 1 s)
import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';
import { Counter, Trend } from 'k6/metrics';
import {
  url, params, teardownParams, json, createConcert, setQueue, createUsers, joinAll, waitAllAdmitted,
  intEnv, strEnv, textSummary, summaryOutputs, EXPECT,
} from './lib.js';

const USERS = intEnv('RUSH_USERS', 2000);
const SCHEDULES = intEnv('SCHEDULES', 3);
const DURATION_S = intEnv('RUSH_DURATION_S', 1);
const VUS = intEnv('RUSH_VUS', 500);
const SEATS = 50;

const won = new Counter('holds_201');
const lost = new Counter('holds_409');
const serverErrors = new Counter('holds_5xx');
const other = new Counter('holds_other');
const heldAfter = new Counter('seats_held_after');
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
  setupTimeout: strEnv('SETUP_TIMEOUT', '600s'),
  teardownTimeout: '60s',
  batch: 200,
  batchPerHost: 200,
  thresholds: {
    holds_201: [`count<=${SEATS * SCHEDULES}`],
    holds_5xx: ['count==0'],
    holds_other: ['count==0'],
    'checks{check:201 or 409}': ['rate==1'],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

export function setup() {
  const concert = createConcert(`k6 rush many ${Date.now()}`, SCHEDULES, 10000);
  setQueue(concert.concert_id, { admit_per_tick: 100000, max_active: 1000000, tick_ms: 100 });
  const users = createUsers(USERS, `k6-rushmany-${Date.now()}`);
  const access = waitAllAdmitted(joinAll(users, concert.concert_id), intEnv('ADMIT_TIMEOUT_S', 120)).filter((t) => !!t);
  console.log(`rush-many setup: concert ${concert.concert_id}, ${access.length}/${USERS} users admitted`);
  return { schedules: concert.schedules.map((s) => s.schedule_id), tokens: access };
}

export default function (data) {
  won.add(0); lost.add(0); serverErrors.add(0); other.add(0);
  const i = exec.scenario.iterationInTest;
  if (i >= data.tokens.length) return;
  const scheduleId = data.schedules[Math.floor(Math.random() * data.schedules.length)];
  const seatNo = 1 + Math.floor(Math.random() * SEATS);
  const res = http.post(url('/v1/reservations'), JSON.stringify({ schedule_id: scheduleId, seat_no: seatNo }),
    // 409 (someone else has the seat) is an expected answer: not a failed request.
    params(data.tokens[i], 'POST /v1/reservations', { expect: EXPECT.hold }));
  holdTime.add(res.timings.duration);
  check(res, { '201 or 409': (r) => r.status === 201 || r.status === 409 });
  if (res.status === 201) won.add(1);
  else if (res.status === 409) lost.add(1);
  else if (res.status >= 500) serverErrors.add(1);
  else other.add(1);
}

export function teardown(data) {
  if (!data.tokens.length) return;
  let held = 0;
  for (const id of data.schedules) {
    const res = http.get(url(`/v1/schedules/${id}/seats`),
      teardownParams(data.tokens[0], 'GET /v1/schedules/{id}/seats', EXPECT.ok));
    held += (json(res, 'seats') || []).filter((s) => s.status === 'held').length;
  }
  heldAfter.add(held);
  console.log(`rush-many teardown: ${held} seats held after the rush`);
}

export function handleSummary(data) {
  const m = data.metrics;
  const c = (n) => (m[n] ? m[n].values.count : 0);
  const consistent = c('holds_201') === c('seats_held_after');
  const text = [
    `\n=== rush-many: ${USERS} holds on random seats of ${SCHEDULES} x ${SEATS} ===`,
    `201 held: ${c('holds_201')}  409: ${c('holds_409')}  5xx: ${c('holds_5xx')}  other: ${c('holds_other')}  dropped: ${c('dropped_iterations')}`,
    ...(c('dropped_iterations') > 0 ? [`WARNING: k6 never sent ${c('dropped_iterations')} of ${USERS} holds (too few VUs or too little CPU for k6): the rush was smaller than asked`] : []),
    `seats shown held afterwards: ${c('seats_held_after')}  (${consistent ? 'matches' : 'DOES NOT MATCH'} the 201s)`,
    `verdict: ${consistent && c('holds_5xx') === 0 && c('holds_other') === 0 ? 'PASS' : 'FAIL'}`,
  ].join('\n') + '\n';
  return summaryOutputs(data, text + textSummary(data, 'rush-many: all requests'));
}
