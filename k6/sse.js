// sse.js — waiting users on Server-Sent Events instead of polling.
// k6 has no native SSE client: each VU opens GET /v1/queue/events (queue token in the
// Authorization header, never in the URL) with http.get and a timeout. k6 hands over the body
// only when the stream ends, which it does after the `admitted` event; a stream still open at
// SSE_TIMEOUT counts as timed out (a k6 limit, not an error of the gateway). Admission runs
// at ADMIT_PER_TICK per TICK_MS so streams end over time.
// Watch queuegate_sse_streams in Grafana (waiting-room dashboard) while this runs.
//
//   k6 run -e ADMIN_TOKEN=... k6/sse.js                 (STREAMS=200 ADMIT_PER_TICK=20 SSE_TIMEOUT=60s)
//   k6 run -e BASE_URL=http://127.0.0.1:8080 k6/sse.js   (through nginx: checks the SSE proxying)
import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';
import { Counter, Trend } from 'k6/metrics';
import {
  url, params, createConcert, setQueue, createUsers, joinAll, intEnv, strEnv, textSummary, summaryOutputs, EXPECT,
} from './lib.js';

const STREAMS = intEnv('STREAMS', 200);
const TIMEOUT = strEnv('SSE_TIMEOUT', '60s');

const completed = new Counter('sse_completed');
const timedOut = new Counter('sse_timed_out');
const positionEvents = new Counter('sse_position_events');
const streamTime = new Trend('sse_stream_duration', true);

export const options = {
  scenarios: {
    streams: {
      executor: 'per-vu-iterations',
      vus: STREAMS,
      iterations: 1,
      maxDuration: strEnv('MAX_DURATION', '3m'),
    },
  },
  setupTimeout: '300s',
  batch: 100,
  batchPerHost: 100,
  thresholds: {
    'checks{check:stream ended with admitted}': ['rate>0.95'],
    'checks{check:no 5xx}': ['rate==1'],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

export function setup() {
  const concert = createConcert(`k6 sse ${Date.now()}`, 1, 10000);
  // Paused while everybody joins, then admission starts at the configured rate.
  setQueue(concert.concert_id, { admit_per_tick: 0 });
  const queueTokens = joinAll(createUsers(STREAMS, `k6-sse-${Date.now()}`), concert.concert_id);
  setQueue(concert.concert_id, { admit_per_tick: intEnv('ADMIT_PER_TICK', 20), tick_ms: intEnv('TICK_MS', 1000) });
  return { queueTokens };
}

export default function (data) {
  completed.add(0); timedOut.add(0); positionEvents.add(0);
  const token = data.queueTokens[(exec.vu.idInTest - 1) % data.queueTokens.length];
  // The stream must open with 200. A stream cut by SSE_TIMEOUT is reported by k6 as an error
  // (status 0, like a refused connection), so it does count in http_req_failed; sse_timed_out
  // tells the two apart.
  const res = http.get(url('/v1/queue/events'), params(token, 'GET /v1/queue/events', {
    expect: EXPECT.ok,
    headers: { Accept: 'text/event-stream' },
    timeout: TIMEOUT,
  }));
  streamTime.add(res.timings.duration);
  const body = typeof res.body === 'string' ? res.body : '';
  const positions = (body.match(/^event: position$/gm) || []).length;
  positionEvents.add(positions);
  const ended = res.status === 200 && /^event: admitted$/m.test(body);
  check(res, {
    'no 5xx': (r) => r.status < 500,
    'stream ended with admitted': () => ended,
    'admitted event carries an access token': () => !ended || /"access_token":"[^"]+"/.test(body),
  });
  if (ended) completed.add(1);
  else if (res.error_code === 1050 || res.status === 0) timedOut.add(1);
}

export function handleSummary(data) {
  const c = (n) => (data.metrics[n] ? data.metrics[n].values.count : 0);
  return summaryOutputs(data, textSummary(data, `sse: ${STREAMS} event streams`) +
    `streams ended with admitted: ${c('sse_completed')}, timed out (k6 SSE limit): ${c('sse_timed_out')}, position events: ${c('sse_position_events')}\n`);
}
