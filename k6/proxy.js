// proxy.js — gateway mode's cost: admitted visitors fetch a page of the origin (the shop behind
// the waiting room) through a gateway-mode instance, with their access token as bearer (the
// token's signature, the live-admission check, then the pooled forward). The k6 counterpart of
// `queuegate-load proxy` (scripts/bench.sh proxy), which is the reference for recorded numbers.
//
// BASE_URL must be a gateway-mode instance (UPSTREAM_URL, UPSTREAM_PATHS, UPSTREAM_CONCERT_ID)
// and CONCERT_ID its UPSTREAM_CONCERT_ID (required). setup: an unadmitted request for
// PROTECTED_PATH must get 403 NOT_ADMITTED naming that concert; the line is opened (SET_QUEUE=1,
// put back in teardown) and VISITORS users join it and are polled until admitted.
// gateway: VUS VUs for DURATION, each GETting PROTECTED_PATH with its visitor's token; every
//   answer must be the origin's 200.
// direct (only with DIRECT_URL, the origin's own URL): after the gateway scenario, the same VUs
//   fetch the same path straight from the origin for DURATION, so that both show side by side
//   (requests tagged target:gateway / target:direct).
// teardown: every visitor leaves the line; the line's settings are put back.
//
//   k6 run -e BASE_URL=http://127.0.0.1:8090 -e CONCERT_ID=7 k6/proxy.js
//   k6 run -e BASE_URL=http://127.0.0.1:8090 -e CONCERT_ID=7 -e DIRECT_URL=http://127.0.0.1:8091 k6/proxy.js
import http from 'k6/http';
import { check, fail } from 'k6';
import exec from 'k6/execution';
import { Counter, Trend } from 'k6/metrics';
import {
  url, params, intEnv, strEnv, textSummary, summaryOutputs, EXPECT,
  gatewayConcertId, gatewayVisitors, gatewayTeardown,
} from './lib.js';

const CONCERT_ID = gatewayConcertId();
const PATH = strEnv('PROTECTED_PATH', '/shop/index.html');
const VISITORS = intEnv('VISITORS', 64);
const VUS = intEnv('VUS', VISITORS);
const DURATION = strEnv('DURATION', '30s');
const DURATION_S = seconds(DURATION);
const DIRECT_URL = strEnv('DIRECT_URL', '').replace(/\/+$/, '');
const P99_MS = intEnv('P99_MS', 250);
const NAME = `GET ${PATH}`;

const gatewayReqs = new Counter('proxy_gateway_requests');
const directReqs = new Counter('proxy_direct_requests');
const gatewayTime = new Trend('proxy_gateway_duration', true);
const directTime = new Trend('proxy_direct_duration', true);
const serverErrors = new Counter('proxy_5xx');

const scenarios = {
  gateway: {
    executor: 'constant-vus',
    vus: VUS,
    duration: DURATION,
    gracefulStop: '5s',
    tags: { target: 'gateway' },
  },
};
if (DIRECT_URL) {
  scenarios.direct = {
    executor: 'constant-vus',
    exec: 'direct',
    vus: VUS,
    duration: DURATION,
    startTime: `${DURATION_S + 5}s`, // after the gateway scenario and its graceful stop
    gracefulStop: '5s',
    tags: { target: 'direct' },
  };
}

export const options = {
  scenarios,
  setupTimeout: strEnv('SETUP_TIMEOUT', '300s'),
  teardownTimeout: '120s',
  batch: 100,
  batchPerHost: 100,
  thresholds: {
    // Every answer through the gateway is the origin's 200: no refusal, no 502/504.
    'http_req_failed{target:gateway}': ['rate==0'],
    'http_req_duration{target:gateway}': [`p(99)<${P99_MS}`],
    proxy_5xx: ['count==0'],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

/** Seconds in a k6 duration such as '30s', '2m', '1m30s', '500ms', '1h'. */
function seconds(d) {
  const parts = String(d).match(/^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?$/);
  if (!parts || d === '') fail(`DURATION must be a k6 duration such as 30s or 1m30s, got ${d}`);
  const [h, m, s, ms] = parts.slice(1).map((v) => Number(v || 0));
  return Math.max(1, Math.ceil(h * 3600 + m * 60 + s + ms / 1000));
}

export function setup() {
  return gatewayVisitors(CONCERT_ID, PATH, VISITORS, `k6-proxy-${Date.now()}`);
}

function fetch(target, address, token) {
  const p = params(token, NAME, { expect: EXPECT.ok });
  p.tags.target = target;
  const res = http.get(address, p);
  if (res.status >= 500) serverErrors.add(1, { target });
  check(res, {
    'origin page 200': (r) => r.status === 200,
    'has a body': (r) => typeof r.body === 'string' && r.body.length > 0,
  });
  return res;
}

// gateway: through the gateway, with the VU's visitor's access token.
export default function (data) {
  serverErrors.add(0);
  const v = data.visitors[(exec.vu.idInTest - 1) % data.visitors.length];
  const res = fetch('gateway', url(PATH), v.access_token);
  gatewayReqs.add(1);
  gatewayTime.add(res.timings.duration);
}

// direct: the same page straight from the origin (no token: the origin checks nothing).
export function direct() {
  serverErrors.add(0);
  const res = fetch('direct', `${DIRECT_URL}${PATH}`, null);
  directReqs.add(1);
  directTime.add(res.timings.duration);
}

export function teardown(data) {
  gatewayTeardown(CONCERT_ID, data);
}

export function handleSummary(data) {
  const m = data.metrics || {};
  const c = (n) => (m[n] ? m[n].values.count : 0);
  const t = (n) => (m[n] ? m[n].values : {});
  const f = (v) => (v === undefined ? '-' : Number(v).toFixed(2));
  const line = (label, reqs, trend) => {
    const d = t(trend);
    return `${label} ${String(c(reqs)).padStart(8)} requests  ${(c(reqs) / DURATION_S).toFixed(1).padStart(9)} req/s   ` +
      `latency ms p50 ${f(d.med)}  p95 ${f(d['p(95)'])}  p99 ${f(d['p(99)'])}  max ${f(d.max)}`;
  };
  const lines = [
    `\n=== proxy: GET ${PATH} through the gateway (concert ${CONCERT_ID}), ${VUS} VUs, ${DURATION} per target ===`,
    line('through the gateway     ', 'proxy_gateway_requests', 'proxy_gateway_duration'),
  ];
  if (DIRECT_URL) {
    lines.push(line('straight from the origin', 'proxy_direct_requests', 'proxy_direct_duration'));
    const g = c('proxy_gateway_requests');
    const d = c('proxy_direct_requests');
    const gp = t('proxy_gateway_duration')['p(99)'];
    const dp = t('proxy_direct_duration')['p(99)'];
    const added = gp !== undefined && dp !== undefined ? `${gp >= dp ? '+' : ''}${f(gp - dp)} ms` : '-';
    // Closed loop: once saturated, latency is only VUs / throughput (the Rust tool also paces).
    lines.push(`ratio: ${d ? (g / d).toFixed(2) : '-'} of direct req/s; p99 ${added} through the gateway`);
  }
  lines.push(`5xx: ${c('proxy_5xx')}`);
  return summaryOutputs(data, lines.join('\n') + '\n' + textSummary(data, 'proxy: all requests (setup and teardown included)'));
}
