// join.js — the opening rush on the line: many distinct users join one concert.
// setup creates JOIN_USERS users (and a concert unless CONCERT_ID is given); the scenario then
// makes each of them join exactly once (shared-iterations, one user per iteration).
//   k6 run -e ADMIN_TOKEN=... k6/join.js                    (JOIN_USERS=5000 VUS=100)
import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';
import { Counter } from 'k6/metrics';
import {
  url, params, json, createConcert, setQueue, createUsers, intEnv, strEnv, textSummary, summaryOutputs, EXPECT,
} from './lib.js';

const USERS = intEnv('JOIN_USERS', 5000);

const joinedNew = new Counter('joins_new');
const joinedExisting = new Counter('joins_existing');
const joinFailed = new Counter('joins_failed');

export const options = {
  scenarios: {
    join: {
      executor: 'shared-iterations',
      vus: intEnv('VUS', 100),
      iterations: USERS,
      maxDuration: strEnv('MAX_DURATION', '2m'),
    },
  },
  setupTimeout: strEnv('SETUP_TIMEOUT', '600s'),
  batch: 100,
  batchPerHost: 100,
  thresholds: {
    'http_req_duration{name:POST /v1/queue}': ['p(95)<150', 'p(99)<400'],
    'checks{check:join 201}': ['rate>0.999'],
    joins_failed: ['count==0'],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

export function setup() {
  let concertId = intEnv('CONCERT_ID', 0);
  if (!concertId) {
    concertId = createConcert(`k6 join ${Date.now()}`, 1, 10000).concert_id;
    // Keep everybody waiting: this measures joining, not admission.
    setQueue(concertId, { admit_per_tick: 0 });
  }
  return { concertId, users: createUsers(USERS, `k6-join-${Date.now()}`).map((u) => u.user_token) };
}

export default function (data) {
  const i = exec.scenario.iterationInTest;
  if (i >= data.users.length) return;
  const res = http.post(url('/v1/queue'), JSON.stringify({ concert_id: data.concertId }),
    params(data.users[i], 'POST /v1/queue', { expect: EXPECT.joined }));
  joinedNew.add(0); joinedExisting.add(0); joinFailed.add(0);
  check(res, {
    'join 201': (r) => r.status === 201,
    'has queue_token and position': (r) => !!json(r, 'queue_token') && json(r, 'position') >= 1,
  });
  if (res.status === 201) joinedNew.add(1);
  else if (res.status === 200) joinedExisting.add(1);
  else joinFailed.add(1);
}

export function handleSummary(data) {
  const c = (n) => (data.metrics[n] ? data.metrics[n].values.count : 0);
  return summaryOutputs(data, textSummary(data, `join: ${USERS} distinct users join one concert`) +
    `joins: new ${c('joins_new')}, existing ${c('joins_existing')}, failed ${c('joins_failed')}\n`);
}
