// baseline.js — the floor: GET /healthz as fast as the VUs can (no Redis, no database).
//   k6 run k6/baseline.js                       (VUS=20 DURATION=30s)
//   k6 run -e BASE_URL=http://127.0.0.1:8081 -e VUS=50 -e DURATION=1m k6/baseline.js
import http from 'k6/http';
import { check } from 'k6';
import { url, intEnv, strEnv, textSummary, summaryOutputs } from './lib.js';

// Every request of this script is GET /healthz, whose only right answer is 200.
http.setResponseCallback(http.expectedStatuses(200));

export const options = {
  scenarios: {
    healthz: {
      executor: 'constant-vus',
      vus: intEnv('VUS', 20),
      duration: strEnv('DURATION', '30s'),
      gracefulStop: '5s',
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.001'],
    http_req_duration: ['p(95)<50', 'p(99)<200'],
    checks: ['rate>0.999'],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

export default function () {
  const res = http.get(url('/healthz'), { tags: { name: 'GET /healthz' } });
  check(res, {
    'status 200': (r) => r.status === 200,
    'has x-request-id': (r) => !!r.headers['X-Request-Id'],
  });
}

export function handleSummary(data) {
  return summaryOutputs(data, textSummary(data, 'baseline: GET /healthz'));
}
