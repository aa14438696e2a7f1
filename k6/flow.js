// flow.js — the whole journey of one fan per iteration:
//   create user -> join the line -> poll until admitted (honouring poll_after_ms) ->
//   schedules -> seats -> hold a free seat (retrying on 409) -> charge the wallet -> pay.
// setup creates a concert with SCHEDULES dates (50 seats each) and an admission rate of
// ADMIT_PER_TICK per TICK_MS; FLOW_ITERATIONS fans (default 100, fewer than the seats) buy one
// seat each. Payment must be 201 and the seat sold.
//
//   k6 run -e ADMIN_TOKEN=... k6/flow.js                       (VUS=20 FLOW_ITERATIONS=100)
import http from 'k6/http';
import { check, group, sleep } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import {
  url, params, json, createConcert, setQueue, pollUntilAdmitted, intEnv, strEnv,
  textSummary, summaryOutputs, EXPECT,
} from './lib.js';

const SCHEDULES = intEnv('SCHEDULES', 3);
const PRICE = intEnv('PRICE', 50000);
const ITERATIONS = intEnv('FLOW_ITERATIONS', 100);

const purchases = new Counter('purchases');
const soldOut = new Counter('sold_out');
const notAdmitted = new Counter('not_admitted');
const journey = new Trend('journey_duration', true);
const waited = new Trend('queue_wait', true);

export const options = {
  scenarios: {
    fans: {
      executor: 'shared-iterations',
      vus: intEnv('VUS', 20),
      iterations: ITERATIONS,
      maxDuration: strEnv('MAX_DURATION', '5m'),
    },
  },
  setupTimeout: '60s',
  thresholds: {
    checks: ['rate>0.99'],
    purchases: [`count>=${Math.min(ITERATIONS, SCHEDULES * 50) - 1}`],
    'http_req_duration{name:POST /v1/payments}': ['p(95)<300'],
    'http_req_duration{name:POST /v1/reservations}': ['p(95)<300'],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

export function setup() {
  const concert = createConcert(`k6 flow ${Date.now()}`, SCHEDULES, PRICE);
  setQueue(concert.concert_id, {
    admit_per_tick: intEnv('ADMIT_PER_TICK', 10),
    tick_ms: intEnv('TICK_MS', 1000),
    max_active: intEnv('MAX_ACTIVE', 1000),
  });
  return { concertId: concert.concert_id };
}

export default function (data) {
  const started = Date.now();
  purchases.add(0); soldOut.add(0); notAdmitted.add(0);

  const user = group('user', () => {
    const res = http.post(url('/v1/users'), JSON.stringify({ name: `k6-flow-${__VU}-${__ITER}` }), params(null, 'POST /v1/users', { expect: EXPECT.created }));
    check(res, { 'user 201': (r) => r.status === 201 });
    return res.status === 201 ? res.json() : null;
  });
  if (!user) return;

  const access = group('queue', () => {
    const res = http.post(url('/v1/queue'), JSON.stringify({ concert_id: data.concertId }), params(user.user_token, 'POST /v1/queue', { expect: EXPECT.created }));
    check(res, { 'join 201': (r) => r.status === 201 });
    if (res.status !== 201) return null;
    const t0 = Date.now();
    const token = pollUntilAdmitted(res.json('queue_token'), intEnv('ADMIT_TIMEOUT_S', 180));
    waited.add(Date.now() - t0);
    return token;
  });
  check(access, { 'admitted': (t) => !!t });
  if (!access) { notAdmitted.add(1); return; }

  const held = group('book', () => {
    const sres = http.get(url(`/v1/concerts/${data.concertId}/schedules`),
      params(access, 'GET /v1/concerts/{id}/schedules', { expect: EXPECT.ok }));
    check(sres, { 'schedules 200': (r) => r.status === 200 });
    const schedules = (json(sres, 'schedules') || []).filter((s) => s.available_seats > 0);
    if (!schedules.length) return null;
    const schedule = schedules[Math.floor(Math.random() * schedules.length)];
    const seatsRes = http.get(url(`/v1/schedules/${schedule.schedule_id}/seats`),
      params(access, 'GET /v1/schedules/{id}/seats', { expect: EXPECT.ok }));
    check(seatsRes, { 'seats 200': (r) => r.status === 200 });
    const free = (json(seatsRes, 'seats') || []).filter((s) => s.status === 'available').map((s) => s.seat_no);
    for (let attempt = 0; attempt < 5 && free.length; attempt++) {
      const seatNo = free.splice(Math.floor(Math.random() * free.length), 1)[0];
      const res = http.post(url('/v1/reservations'), JSON.stringify({ schedule_id: schedule.schedule_id, seat_no: seatNo }),
        // 409: another fan took the seat since the listing; the loop tries another one.
        params(access, 'POST /v1/reservations', { expect: EXPECT.hold }));
      check(res, { 'hold 201 or 409': (r) => r.status === 201 || r.status === 409 });
      if (res.status === 201) return res.json();
    }
    return null;
  });
  if (!held) { soldOut.add(1); return; }

  group('pay', () => {
    const charge = http.post(url(`/v1/users/${user.user_id}/balance/charge`), JSON.stringify({ amount: held.price }),
      params(user.user_token, 'POST /v1/users/{id}/balance/charge',
        { expect: EXPECT.ok, headers: { 'Idempotency-Key': `k6-charge-${user.user_id}` } }));
    check(charge, { 'charge 200': (r) => r.status === 200 && json(r, 'balance') >= held.price });
    const pay = http.post(url('/v1/payments'), JSON.stringify({ reservation_id: held.reservation_id }),
      params(access, 'POST /v1/payments',
        { expect: EXPECT.created, headers: { 'Idempotency-Key': `k6-pay-${held.reservation_id}` } }));
    check(pay, {
      'payment 201': (r) => r.status === 201,
      'payment completed': (r) => json(r, 'status') === 'completed' && json(r, 'amount') === held.price,
    });
    if (pay.status === 201) purchases.add(1);
  });
  journey.add(Date.now() - started);
  sleep(0.1);
}

export function handleSummary(data) {
  const c = (n) => (data.metrics[n] ? data.metrics[n].values.count : 0);
  const w = data.metrics.queue_wait ? data.metrics.queue_wait.values : {};
  return summaryOutputs(data, textSummary(data, 'flow: join -> admitted -> hold -> charge -> pay') +
    `purchases ${c('purchases')}, sold out ${c('sold_out')}, not admitted ${c('not_admitted')}; ` +
    `queue wait ms p50 ${w.med !== undefined ? w.med.toFixed(0) : '-'} p95 ${w['p(95)'] !== undefined ? w['p(95)'].toFixed(0) : '-'}\n`);
}
