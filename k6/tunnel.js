// tunnel.js — gateway mode's WebSockets: admitted visitors open a WebSocket to a protected path;
// the gateway checks the grant and tunnels it to the origin (101), then joins the two
// connections byte for byte. The k6 counterpart of `queuegate-load tunnel` (scripts/bench.sh
// tunnel), which is the reference for recorded numbers (k6's clock here is whole milliseconds).
//
// The origin must answer PROTECTED_PATH as a WebSocket ECHO server (every text message comes
// back as sent): e.g. e2e/ws-echo.mjs behind the origin's nginx (ORIGIN_WS=… scripts/origin-nginx.sh
// passes /shop/live to it). The Rust load tool's own origin echoes raw bytes, not WebSocket
// frames, and does not do for k6.
//
// BASE_URL must be a gateway-mode instance and CONCERT_ID its UPSTREAM_CONCERT_ID (required).
// setup: as proxy.js (an unadmitted request gets 403 NOT_ADMITTED; the line is opened with
// SET_QUEUE=1 and put back in teardown; VISITORS users are admitted).
// tunnels (default): VUS VUs for DURATION; each opens a WebSocket to PROTECTED_PATH with its
//   visitor's access token as bearer, sends MESSAGES text messages one at a time, expects each
//   echoed back intact (round trip in tunnel_echo_rtt), then closes, and starts again.
// leave (LEAVE=1): each visitor once: open, echo MESSAGES, then leave the line
//   (DELETE /v1/queue) with the socket open; the gateway must close the tunnel within
//   LEAVE_CLOSE_MS (2000) of the leave (tunnel_closed_after_leave).
// One visitor may hold 8 open tunnels on an instance (the ninth gets 429), so VUS <= 8 x VISITORS.
//
//   k6 run -e BASE_URL=http://127.0.0.1:8090 -e CONCERT_ID=7 k6/tunnel.js
//   k6 run -e BASE_URL=http://127.0.0.1:8090 -e CONCERT_ID=7 -e LEAVE=1 k6/tunnel.js
import http from 'k6/http';
import ws from 'k6/ws';
import { check, fail } from 'k6';
import exec from 'k6/execution';
import { Counter, Rate, Trend } from 'k6/metrics';
import {
  url, params, intEnv, strEnv, textSummary, summaryOutputs, EXPECT,
  gatewayConcertId, gatewayVisitors, gatewayTeardown, wsUrl,
} from './lib.js';

const CONCERT_ID = gatewayConcertId();
const PATH = strEnv('PROTECTED_PATH', '/shop/live');
const VISITORS = intEnv('VISITORS', 64);
const VUS = intEnv('VUS', VISITORS);
const MESSAGES = intEnv('MESSAGES', 20);
const LEAVE = intEnv('LEAVE', 0) !== 0;
const LEAVE_CLOSE_MS = intEnv('LEAVE_CLOSE_MS', 2000);
const SESSION_TIMEOUT_MS = intEnv('SESSION_TIMEOUT_S', 30) * 1000;
const P99_MS = intEnv('P99_MS', 250);
const NAME = `GET ${PATH} (websocket)`;
if (!LEAVE && VUS > 8 * VISITORS) fail(`VUS=${VUS} would open more than 8 tunnels per visitor (VISITORS=${VISITORS}); the gateway refuses the ninth with 429`);

const echoRtt = new Trend('tunnel_echo_rtt', true);
const echoes = new Counter('tunnel_echoes');
const sessionOk = new Rate('tunnel_session_ok');
const refused = new Counter('tunnel_refused');
const closedAfterLeave = new Rate('tunnel_closed_after_leave');
const closeAfterLeave = new Trend('tunnel_close_after_leave', true);

const thresholds = {
  // Every tunnel opened (101) and carried every echo intact, with no error before the end.
  tunnel_session_ok: ['rate==1'],
  tunnel_echo_rtt: [`p(99)<${P99_MS}`],
  http_req_failed: ['rate<0.01'],
};
if (LEAVE) thresholds.tunnel_closed_after_leave = ['rate==1'];

export const options = {
  scenarios: LEAVE
    ? {
      leave: {
        executor: 'shared-iterations',
        vus: Math.max(1, Math.min(VUS, VISITORS)),
        iterations: VISITORS,
        maxDuration: strEnv('MAX_DURATION', '5m'),
      },
    }
    : {
      tunnels: {
        executor: 'constant-vus',
        vus: VUS,
        duration: strEnv('DURATION', '30s'),
        gracefulStop: '10s',
      },
    },
  setupTimeout: strEnv('SETUP_TIMEOUT', '300s'),
  teardownTimeout: '120s',
  batch: 100,
  batchPerHost: 100,
  thresholds,
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

export function setup() {
  return gatewayVisitors(CONCERT_ID, PATH, VISITORS, `k6-tunnel-${Date.now()}`);
}

export default function (data) {
  echoes.add(0);
  let v;
  if (LEAVE) {
    // Each visitor once: after leaving, its access token opens nothing any more.
    const i = exec.scenario.iterationInTest;
    if (i >= data.visitors.length) return;
    v = data.visitors[i];
  } else {
    v = data.visitors[(exec.vu.idInTest - 1) % data.visitors.length];
  }
  const s = {
    echoed: 0, bad: 0, error: '', closedEarly: false, timedOut: false,
    mine: false, leaveStatus: 0, leftAt: 0, closedAt: 0,
  };
  const tag = `${exec.vu.idInTest}:${exec.scenario.iterationInTest}:`;
  let res;
  try {
    res = ws.connect(wsUrl(PATH), {
      headers: { Authorization: `Bearer ${v.access_token}` },
      tags: { name: NAME },
    }, (socket) => {
      let expected = '';
      let sentAt = 0;
      const closeMine = () => { s.mine = true; socket.close(); };
      const next = () => {
        if (s.echoed < MESSAGES) {
          expected = `${tag}${s.echoed}:`.padEnd(64, 'q'); // 64 bytes, as the Rust tool sends
          sentAt = Date.now();
          socket.send(expected);
        } else if (!LEAVE) {
          closeMine();
        } else {
          // Leave the line with the socket open: the gateway must close the tunnel.
          const started = Date.now();
          const left = http.del(url('/v1/queue'), null, params(v.queue_token, 'DELETE /v1/queue', { expect: EXPECT.left }));
          s.leaveStatus = left.status;
          s.leftAt = started;
          socket.setTimeout(() => { if (!s.closedAt) closeMine(); }, Math.max(1, started + LEAVE_CLOSE_MS - Date.now()));
        }
      };
      // Closed by the other side: after the leave that is the gateway doing its job; before
      // it, the tunnel broke.
      const closedByPeer = () => {
        if (s.mine || s.closedAt) return;
        s.closedAt = Date.now();
        if (!s.leftAt) s.closedEarly = true;
      };
      socket.on('open', next);
      socket.on('message', (msg) => {
        if (s.leftAt) return;
        echoRtt.add(Date.now() - sentAt);
        echoes.add(1);
        if (msg !== expected) s.bad++;
        s.echoed++;
        next();
      });
      socket.on('error', (e) => {
        if (!s.leftAt && !s.mine && !s.error) s.error = String(e && e.error ? e.error() : e);
        closedByPeer();
      });
      socket.on('close', closedByPeer);
      socket.setTimeout(() => { s.timedOut = true; closeMine(); }, SESSION_TIMEOUT_MS);
    });
  } catch (e) {
    s.error = String(e);
  }
  const opened = !!res && res.status === 101;
  if (!opened) refused.add(1);
  const ok = check(res, {
    'tunnel opened (101)': () => opened,
    'every echo came back intact': () => !opened || (s.echoed === MESSAGES && s.bad === 0),
    'no error, no early close, no timeout': () => !s.error && !s.closedEarly && !s.timedOut,
  });
  sessionOk.add(ok);
  if (LEAVE && opened && !s.closedEarly && s.echoed === MESSAGES) {
    const within = s.closedAt > 0 && s.closedAt - s.leftAt <= LEAVE_CLOSE_MS;
    check(res, {
      'leave: 204': () => s.leaveStatus === 204,
      [`leave: tunnel closed by the gateway within ${LEAVE_CLOSE_MS} ms`]: () => within,
    });
    closedAfterLeave.add(within);
    if (s.closedAt) closeAfterLeave.add(s.closedAt - s.leftAt);
  }
}

export function teardown(data) {
  gatewayTeardown(CONCERT_ID, data);
}

export function handleSummary(data) {
  const m = data.metrics || {};
  const c = (n) => (m[n] ? m[n].values.count : 0);
  const v = (n) => (m[n] ? m[n].values : {});
  const f = (x) => (x === undefined ? '-' : Number(x).toFixed(2));
  const pct = (n) => (m[n] ? `${(m[n].values.rate * 100).toFixed(2)}%` : '-');
  const rtt = v('tunnel_echo_rtt');
  const conn = v('ws_connecting');
  const lines = [
    `\n=== tunnel: WebSockets to ${PATH} through the gateway (concert ${CONCERT_ID}), ${LEAVE ? `each of ${VISITORS} visitors once, leaving with the socket open` : `${VUS} VUs`} ===`,
    `sessions:    ${c('ws_sessions')} opened, ${pct('tunnel_session_ok')} ok (101, ${MESSAGES} echoes intact, no error), refused: ${c('tunnel_refused')}`,
    `echoes:      ${c('tunnel_echoes')}   round trip ms (whole ms) p50 ${f(rtt.med)}  p95 ${f(rtt['p(95)'])}  p99 ${f(rtt['p(99)'])}  max ${f(rtt.max)}`,
    `handshake:   ms p50 ${f(conn.med)}  p99 ${f(conn['p(99)'])}  (ws_connecting: grant check + origin upgrade)`,
  ];
  if (LEAVE) {
    const cl = v('tunnel_close_after_leave');
    lines.push(`after leave: ${pct('tunnel_closed_after_leave')} closed by the gateway within ${LEAVE_CLOSE_MS} ms; ms p50 ${f(cl.med)}  max ${f(cl.max)}`);
  }
  return summaryOutputs(data, lines.join('\n') + '\n' + textSummary(data, 'tunnel: HTTP requests (setup, leaves, teardown)'));
}
