// Small helpers shared by the e2e setup and test: a bounded JSON client for the gateway API.

export const BASE_URL = (process.env.QG_E2E_BASE_URL || 'http://127.0.0.1:18091').replace(/\/$/, '');
export const ADMIN_TOKEN = process.env.QG_E2E_ADMIN_TOKEN || '';

export class HttpError extends Error {
  constructor(method, path, status, body) {
    super(`${method} ${path} -> ${status}: ${JSON.stringify(body)}`);
    this.status = status;
    this.body = body;
    this.code = body && body.error && body.error.code;
  }
}

/** One API call with a hard timeout; resolves the parsed JSON body (or null), rejects with HttpError. */
export async function call(method, path, { token, body, idemKey, timeoutMs = 10_000 } = {}) {
  const headers = { accept: 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  if (idemKey) headers['idempotency-key'] = idemKey;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(BASE_URL + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!res.ok) throw new HttpError(method, path, res.status, data);
  return data;
}

export const admin = (method, path, body) => call(method, path, { token: ADMIN_TOKEN, body });

/** Pauses (0) or sets the admission pace of one concert's line. */
export function setAdmission(concertId, settings) {
  return admin('PUT', `/v1/admin/concerts/${concertId}/queue`, settings);
}

/** A new user who joins the concert's line; returns {user_id, user_token, queue_token, position}. */
export async function queuedUser(concertId, name) {
  const user = await call('POST', '/v1/users', { body: { name } });
  const joined = await call('POST', '/v1/queue', { token: user.user_token, body: { concert_id: concertId } });
  return { ...user, queue_token: joined.queue_token, position: joined.position, status: joined.status };
}

/** Polls a queued user's status until admitted; returns the access token. */
export async function waitAdmitted(user, timeoutMs = 30_000) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const s = await call('GET', '/v1/queue/status', { token: user.queue_token });
    if (s.status === 'admitted') return s.access_token;
    if (Date.now() > until) throw new Error(`user ${user.user_id} not admitted within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 300));
  }
}

export async function waitHealthy(timeoutMs = 60_000) {
  const until = Date.now() + timeoutMs;
  let last;
  while (Date.now() < until) {
    try {
      const res = await fetch(`${BASE_URL}/readyz`, { signal: AbortSignal.timeout(2000) });
      if (res.ok) return;
      last = `readyz ${res.status}`;
    } catch (e) {
      last = e.message;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`gateway at ${BASE_URL} not ready within ${timeoutMs} ms (${last})`);
}

/**
 * Creates a concert (two dates, 50 seats each at `price`), pauses its admission and puts `ahead`
 * other fans in line, so a fan arriving next sees a real position behind them.
 */
export async function prepareConcert({ ahead = 3, price = 50_000 } = {}) {
  await waitHealthy();
  const day = 24 * 3600 * 1000;
  const at = (days) => {
    const d = new Date(Date.now() + days * day);
    d.setUTCHours(19, 30, 0, 0);
    return d.toISOString();
  };
  const name = `Aurora Skies Live ${Math.random().toString(36).slice(2, 6).toUpperCase()}`;
  const concert = await admin('POST', '/v1/admin/concerts', {
    name,
    schedules: [
      { starts_at: at(10), price },
      { starts_at: at(17), price },
    ],
  });
  // Hold the line still while it fills, so the next fan gets a position behind the others.
  await setAdmission(concert.concert_id, { admit_per_tick: 0 });
  const waiting = [];
  for (let i = 0; i < ahead; i += 1) waiting.push(await queuedUser(concert.concert_id, `Early fan ${i + 1}`));
  return { base_url: BASE_URL, concert, price, ahead: waiting };
}
