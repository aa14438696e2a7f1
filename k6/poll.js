// poll.js — the load of a sale in progress: every waiting user polls GET /v1/queue/status,
// honouring poll_after_ms loosely (x POLL_SCALE, +-20% jitter). Admission is paused by default
// so everybody stays in line for the whole run.
//
// setup: creates a concert (or uses CONCERT_ID), sets its queue (admit_per_tick=ADMIT_PER_TICK,
// default 0 = paused), creates USERS users and joins each to the line. One VU per user.
//   k6 run -e ADMIN_TOKEN=... k6/poll.js                    (USERS=200 DURATION=60s)
//   k6 run -e USERS=1000 -e POLL_SCALE=0.25 k6/poll.js      (poll 4x more often than told)
import { check, sleep } from 'k6';
import exec from 'k6/execution';
import { Counter } from 'k6/metrics';
import {
  createConcert, setQueue, createUsers, joinAll, status, json, intEnv, strEnv,
  textSummary, summaryOutputs,
} from './lib.js';

const USERS = intEnv('USERS', 200);
const POLL_SCALE = Number(strEnv('POLL_SCALE', '1'));
const MIN_SLEEP = Number(strEnv('MIN_SLEEP_S', '0.05'));

const waiting = new Counter('status_waiting');
const admitted = new Counter('status_admitted');
const gone = new Counter('status_gone');

export const options = {
  scenarios: {
    poll: {
      executor: 'constant-vus',
      vus: USERS,
      duration: strEnv('DURATION', '60s'),
      gracefulStop: '10s',
    },
  },
  setupTimeout: strEnv('SETUP_TIMEOUT', '300s'),
  batch: 100,
  batchPerHost: 100,
  thresholds: {
    http_req_failed: ['rate<0.01'],
    'http_req_duration{name:GET /v1/queue/status}': ['p(95)<100', 'p(99)<250'],
    checks: ['rate>0.99'],
    status_gone: ['count==0'],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

export function setup() {
  let concertId = intEnv('CONCERT_ID', 0);
  if (!concertId) concertId = createConcert(`k6 poll ${Date.now()}`, 1, 10000).concert_id;
  setQueue(concertId, { admit_per_tick: intEnv('ADMIT_PER_TICK', 0) });
  const users = createUsers(USERS, `k6-poll-${Date.now()}`);
  const queueTokens = joinAll(users, concertId);
  return { concertId, queueTokens };
}

export default function (data) {
  const token = data.queueTokens[(exec.vu.idInTest - 1) % data.queueTokens.length];
  const res = status(token);
  waiting.add(0); admitted.add(0); gone.add(0);
  const ok = check(res, {
    'status 200': (r) => r.status === 200,
    'status is waiting or admitted': (r) => ['waiting', 'admitted'].includes(json(r, 'status')),
  });
  let pause = 1;
  if (res.status === 410) {
    gone.add(1);
  } else if (ok && json(res, 'status') === 'waiting') {
    waiting.add(1);
    pause = (json(res, 'poll_after_ms') || 1000) / 1000;
  } else if (ok) {
    admitted.add(1);
    pause = 2; // admitted users have nothing to poll for; keep them quiet
  }
  sleep(Math.max(MIN_SLEEP, pause * POLL_SCALE * (0.8 + Math.random() * 0.4)));
}

export function handleSummary(data) {
  const m = data.metrics;
  const extra = `status answers: waiting ${m.status_waiting ? m.status_waiting.values.count : 0}, ` +
    `admitted ${m.status_admitted ? m.status_admitted.values.count : 0}, gone ${m.status_gone ? m.status_gone.values.count : 0}\n`;
  return summaryOutputs(data, textSummary(data, `poll: ${USERS} users polling /v1/queue/status`) + extra);
}
