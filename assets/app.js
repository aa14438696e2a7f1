// queuegate — the fan's pages: concert list, waiting room, booking.
// Plain ES2020, no build step, no dependencies; served by the gateway as-is under a strict CSP
// (no inline scripts or style attributes: styles come from classes in app.css, and the only
// inline style writes are element.style properties, which CSP allows).
'use strict';

(() => {
  // ---------------------------------------------------------------- basics

  const $app = document.getElementById('app');
  const $banner = document.getElementById('banner');
  const $alert = document.getElementById('alert');
  const $footer = document.getElementById('footer');
  const params = new URLSearchParams(location.search);
  // `?transport=poll` skips Server-Sent Events (for checking the polling fallback by hand).
  const forcePolling = params.get('transport') === 'poll';

  const store = {
    get(key) {
      try {
        const raw = localStorage.getItem(key);
        return raw == null ? null : JSON.parse(raw);
      } catch (_) {
        return null;
      }
    },
    set(key, value) {
      try {
        localStorage.setItem(key, JSON.stringify(value));
      } catch (_) {
        /* private mode or full storage: the page still works, it just forgets on reload */
      }
    },
    del(key) {
      try {
        localStorage.removeItem(key);
      } catch (_) {
        /* ignore */
      }
    },
  };

  const KEY = {
    user: 'qg.user',
    queue: (cid) => `qg.queue.${cid}`,
    arrival: (cid) => `qg.arrival.${cid}`,
    hold: (cid) => `qg.hold.${cid}`,
  };

  function uuid() {
    if (window.crypto && typeof crypto.randomUUID === 'function') return crypto.randomUUID();
    const b = new Uint8Array(16);
    crypto.getRandomValues(b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const hex = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }

  /** Builds an element. attrs: class, text, testid, on<event>, boolean props, other attributes. */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k === 'testid') el.dataset.testid = v;
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'disabled' || k === 'hidden') el[k] = Boolean(v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat(Infinity)) {
      if (c == null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  const money = (n) => `${Number(n).toLocaleString('en-US')} credits`;

  // Times are shown in the fan's own time zone, always with its name ("7:00 PM CEST").
  function fmtDate(iso) {
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return iso || '';
    return d.toLocaleString('en-US', {
      weekday: 'short',
      month: 'short',
      day: 'numeric',
      year: 'numeric',
      hour: 'numeric',
      minute: '2-digit',
      timeZoneName: 'short',
    });
  }

  /** A clock time today-ish, with the zone: "6:05 PM UTC". Takes ms since the epoch. */
  function fmtTime(ms) {
    const d = new Date(ms);
    if (Number.isNaN(d.getTime())) return '';
    return d.toLocaleTimeString('en-US', { hour: 'numeric', minute: '2-digit', timeZoneName: 'short' });
  }

  /** The fan's time zone, e.g. "Europe/Berlin" (or its short name when the IANA name is unknown). */
  function zoneName() {
    try {
      const tz = Intl.DateTimeFormat().resolvedOptions().timeZone;
      if (tz) return tz.replace(/_/g, ' ');
    } catch (_) {
      /* fall through */
    }
    const part = new Intl.DateTimeFormat('en-US', { timeZoneName: 'short' }).formatToParts(new Date())
      .find((p) => p.type === 'timeZoneName');
    return part ? part.value : 'local time';
  }

  function fmtClock(ms) {
    const s = Math.max(0, Math.ceil(ms / 1000));
    const m = Math.floor(s / 60);
    return `${m}:${String(s % 60).padStart(2, '0')}`;
  }

  function fmtEta(seconds) {
    if (seconds == null) return 'Paused — admission is on hold for now. You keep your place.';
    if (seconds <= 10) return 'Any moment now';
    if (seconds < 60) return `About ${seconds} seconds`;
    const min = Math.round(seconds / 60);
    if (min < 60) return `About ${min} minute${min === 1 ? '' : 's'}`;
    const hours = Math.floor(min / 60);
    return `About ${hours} h ${min % 60} min`;
  }

  // ---------------------------------------------------------------- view lifecycle
  // Every screen change bumps `epoch`; timers, streams and async flows of the old screen check it
  // and stop, so nothing from a previous screen writes into the current one.

  let epoch = 0;
  const timers = new Set();
  let eventSource = null;

  function newView() {
    epoch += 1;
    for (const t of timers) clearTimeout(t);
    timers.clear();
    closeStream();
    hideAlert();
    hideBanner();
    showFooter(false);
    return epoch;
  }

  const alive = (e) => e === epoch;

  /** setTimeout bound to the current screen. */
  function later(fn, ms) {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
    return t;
  }

  /** A pause bound to the current screen; never resolves once the screen changed. */
  function sleep(ms, wake) {
    return new Promise((resolve) => {
      const t = later(resolve, ms);
      if (wake) {
        wake.now = () => {
          clearTimeout(t);
          timers.delete(t);
          resolve();
        };
      }
    });
  }

  function closeStream() {
    if (eventSource) {
      eventSource.close();
      eventSource = null;
    }
  }

  function show(...nodes) {
    $app.replaceChildren(...nodes);
  }

  function focusHeading() {
    const el = $app.querySelector('h1');
    if (el) {
      el.setAttribute('tabindex', '-1');
      el.focus({ preventScroll: false });
    }
  }

  function showAlert(text, ...extra) {
    $alert.replaceChildren(h('p', { class: 'alert__text', text }), ...extra);
    $alert.hidden = false;
    // On a phone the fan may be scrolled down to the buttons: bring the message into view.
    if ($alert.getBoundingClientRect().top < 0) $alert.scrollIntoView({ block: 'start' });
  }
  function hideAlert() {
    $alert.hidden = true;
    $alert.replaceChildren();
  }
  /** The "keep this tab open" footer matters only while a place or a hold is kept. */
  function showFooter(on) {
    if (!$footer) return;
    // In front of an organiser's shop (gateway mode) nothing is booked here: only the place.
    if (on && gatewayReturn) {
      $footer.firstElementChild.textContent = 'Keep this tab open while you wait — your place is saved in this browser.';
    }
    $footer.hidden = !on;
  }
  function showBanner(text) {
    $banner.textContent = text;
    $banner.hidden = false;
  }
  function hideBanner() {
    $banner.hidden = true;
    $banner.textContent = '';
  }

  // ---------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(status, code, message, retryAfter, requestId, details) {
      super(message || code);
      this.status = status;
      this.code = code;
      this.retryAfter = retryAfter;
      this.requestId = requestId;
      // Facts beside the message: `field` (422), `balance`/`due` (402), `reservation_id` (409).
      this.details = details || {};
    }
    get transient() {
      return this.status === 0 || this.status === 429 || this.status === 502 ||
        this.status === 503 || this.status === 504;
    }
  }

  /** One HTTP call, bounded in time. Resolves {status, data}; rejects with ApiError. */
  async function request(method, path, opts = {}) {
    const headers = { Accept: 'application/json' };
    if (opts.token) headers.Authorization = `Bearer ${opts.token}`;
    if (opts.idemKey) headers['Idempotency-Key'] = opts.idemKey;
    let body;
    if (opts.body !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(opts.body);
    }
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), opts.timeoutMs || 15000);
    try {
      let res;
      try {
        res = await fetch(path, { method, headers, body, signal: ctrl.signal, cache: 'no-store' });
      } catch (_) {
        throw new ApiError(0, 'NETWORK', 'The connection dropped.');
      }
      let text = '';
      try {
        text = await res.text();
      } catch (_) {
        throw new ApiError(0, 'NETWORK', 'The connection dropped.');
      }
      let data = null;
      if (text) {
        try {
          data = JSON.parse(text);
        } catch (_) {
          data = null;
        }
      }
      if (!res.ok) {
        const err = (data && data.error) || {};
        const ra = Number(res.headers.get('retry-after'));
        throw new ApiError(
          res.status,
          err.code || `HTTP_${res.status}`,
          err.message || res.statusText,
          Number.isFinite(ra) && ra > 0 ? ra : null,
          err.request_id,
          err,
        );
      }
      return { status: res.status, data };
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * `request` with automatic retries while the service is busy (429/503) or — for calls that are
   * safe to repeat (GET, or carrying an Idempotency-Key) — while the connection is down.
   * Shows "Busy, retrying…" meanwhile.
   */
  async function api(method, path, opts = {}) {
    const e = epoch;
    const safe = method === 'GET' || Boolean(opts.idemKey);
    const tries = opts.tries || 6;
    for (let attempt = 1; ; attempt += 1) {
      try {
        const r = await request(method, path, opts);
        if (attempt > 1 && alive(e)) hideBanner();
        return r;
      } catch (err) {
        const retryable = err instanceof ApiError &&
          (err.status === 429 || err.status === 503 || (safe && err.transient));
        if (!retryable || attempt >= tries || !alive(e)) {
          if (attempt > 1 && alive(e)) hideBanner();
          throw err;
        }
        const wait = err.retryAfter ? Math.min(err.retryAfter, 15) * 1000 : Math.min(8000, 500 * 2 ** attempt);
        showBanner(err.status === 0 ? 'Connection lost — retrying…' : 'Busy, retrying…');
        await sleep(wait);
      }
    }
  }

  /** What an API error means for a fan. */
  function friendly(err) {
    if (!(err instanceof ApiError)) return 'Something went wrong in this page. Please reload.';
    switch (err.code) {
      case 'SEAT_UNAVAILABLE':
        return 'Someone just took that seat — pick another.';
      case 'HOLD_EXPIRED':
        return 'Your hold ran out before payment, so the seat went back on sale. Please pick a seat again.';
      case 'HOLD_LIMIT_REACHED':
        return 'You are already holding 4 seats for this date. Pay for or release one before holding another.';
      case 'INSUFFICIENT_BALANCE':
        return 'Your wallet does not have enough for these seats. Add the missing amount, then pay.';
      case 'ALREADY_PAID':
        return 'This seat is already paid for — you are all set.';
      case 'TOKEN_REVOKED':
      case 'UNAUTHORIZED':
        return 'Your booking window ended.';
      case 'FORBIDDEN':
        return 'Your pass is for a different concert. Go back and join this concert’s line.';
      case 'NOT_FOUND':
        return 'We could not find that — it may no longer be on sale.';
      case 'QUEUE_ENTRY_GONE':
        return 'Your place in line had lapsed — we are getting it back for you.';
      case 'RATE_LIMITED':
      case 'SERVICE_UNAVAILABLE':
      case 'BUSY':
        return 'Busy, retrying… If this keeps up, try again in a minute.';
      case 'NETWORK':
        return 'The connection dropped. Check your internet connection and try again.';
      case 'VALIDATION_FAILED':
      case 'BAD_REQUEST':
        return 'That request was not accepted. Please reload the page and try again.';
      default:
        if (err.status >= 500) return 'Something went wrong on our side. Please try again in a moment.';
        return 'Something went wrong. Please try again.';
    }
  }

  const isAuthError = (err) =>
    err instanceof ApiError && (err.code === 'TOKEN_REVOKED' || err.code === 'UNAUTHORIZED' || err.status === 401);

  function retryButton(label, fn) {
    return h('button', { type: 'button', class: 'btn btn--secondary', onclick: fn, testid: 'retry-button' }, label);
  }

  // ---------------------------------------------------------------- landing page

  async function landing() {
    const e = newView();
    document.title = 'Concerts on sale — queuegate';
    const list = h('ul', { class: 'concert-list', testid: 'concert-list', 'aria-busy': 'true' },
      h('li', { class: 'muted' }, 'Loading concerts…'));
    show(
      h('section', { class: 'hero' },
        h('h1', {}, 'Concerts on sale'),
        h('p', { class: 'lead' },
          'Pick a concert to join its waiting room. Everyone gets a fair place in line, ' +
          'and you are let in to book in the order you arrived.')),
      h('h2', { class: 'visually-hidden' }, 'Concerts'),
      list,
    );
    try {
      const { data } = await api('GET', '/v1/concerts');
      if (!alive(e)) return;
      const concerts = (data && data.concerts) || [];
      list.removeAttribute('aria-busy');
      if (!concerts.length) {
        list.replaceChildren(h('li', { class: 'empty', testid: 'empty-concerts' },
          'No concerts are on sale right now. Check back soon.'));
        return;
      }
      list.replaceChildren(...concerts.map((c) =>
        h('li', { class: 'concert' },
          h('a', { class: 'concert__link', href: `/concerts/${encodeURIComponent(c.concert_id)}`, testid: 'concert-link' },
            h('span', { class: 'concert__date', 'aria-hidden': 'true' }, dateBadge(c.next_starts_at)),
            h('span', { class: 'concert__body' },
              h('span', { class: 'concert__name' }, c.name),
              h('span', { class: 'concert__meta' },
                `Next show ${fmtDate(c.next_starts_at)} · ${c.dates} date${c.dates === 1 ? '' : 's'}`)),
            h('span', { class: 'concert__cta' }, 'Join the line')))));
    } catch (err) {
      if (!alive(e)) return;
      list.removeAttribute('aria-busy');
      list.replaceChildren();
      showAlert(`We could not load the concerts. ${friendly(err)}`, retryButton('Try again', landing));
    }
  }

  function dateBadge(iso) {
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return [];
    return [
      h('span', { class: 'badge__month' }, d.toLocaleString('en-US', { month: 'short' })),
      h('span', { class: 'badge__day' }, String(d.getDate())),
    ];
  }

  // ---------------------------------------------------------------- concert: user + queue

  let concert = null; // { id, name }

  async function concertPage(rawId) {
    const id = Number(rawId);
    if (!Number.isSafeInteger(id) || id <= 0) {
      newView();
      show(h('section', { class: 'panel' },
        h('h1', {}, 'Concert not found'),
        h('p', {}, 'That link does not lead to a concert on sale.'),
        h('a', { class: 'btn', href: '/' }, 'See concerts on sale')));
      return;
    }
    concert = { id, name: null };
    loadConcertName();
    await joinQueue();
  }

  /** The concert's name for headings (public list); failures only cost the name. */
  async function loadConcertName() {
    try {
      const { data } = await request('GET', '/v1/concerts', { timeoutMs: 8000 });
      const c = ((data && data.concerts) || []).find((x) => Number(x.concert_id) === concert.id);
      if (c) setConcertName(c.name);
    } catch (_) {
      /* the heading falls back to a generic one */
    }
  }

  function setConcertName(name) {
    if (!name) return;
    concert.name = name;
    document.title = `${name} — queuegate`;
    for (const el of document.querySelectorAll('[data-concert-name]')) el.textContent = name;
  }

  const concertNameEl = () =>
    h('p', { class: 'eyebrow', 'data-concert-name': '', testid: 'concert-name' }, concert.name || 'Concert');

  async function ensureUser(forceNew) {
    if (!forceNew) {
      const u = store.get(KEY.user);
      if (u && u.user_id && u.user_token) return u;
    }
    const name = `Fan ${Math.floor(1000 + Math.random() * 9000)}`;
    const { data } = await api('POST', '/v1/users', { body: { name } });
    const u = { user_id: data.user_id, user_token: data.user_token, name: data.name };
    store.set(KEY.user, u);
    return u;
  }

  let rejoins = [];

  /** Joins (or re-joins, with the kept queue token) this concert's line and shows the result. */
  async function joinQueue() {
    const e = newView();
    showFooter(true);
    show(h('section', { class: 'panel waiting', testid: 'joining' },
      concertNameEl(),
      h('h1', {}, 'Getting your place in line…'),
      h('div', { class: 'spinner', 'aria-hidden': 'true' })));

    const now = Date.now();
    rejoins = rejoins.filter((t) => now - t < 60000);
    rejoins.push(now);
    if (rejoins.length > 6) {
      showAlert('We keep losing your place in line. Please wait a moment and try again.',
        retryButton('Try again', () => { rejoins = []; joinQueue(); }));
      return;
    }

    let user;
    let joined;
    try {
      user = await ensureUser(false);
      joined = await postJoin(user);
    } catch (err) {
      if (!alive(e)) return;
      if (err instanceof ApiError && err.status === 401) {
        // The saved demo user is no longer accepted (e.g. the service was reset): start afresh.
        try {
          store.del(KEY.queue(concert.id));
          store.del(KEY.arrival(concert.id));
          user = await ensureUser(true);
          joined = await postJoin(user);
        } catch (err2) {
          if (alive(e)) joinFailed(err2);
          return;
        }
      } else {
        joinFailed(err);
        return;
      }
    }
    if (!alive(e)) return;
    const { status, data } = joined;
    store.set(KEY.queue(concert.id), data.queue_token);
    if (data.status === 'admitted') {
      admitted(data);
      return;
    }
    if (typeof data.position === 'number') {
      const kept = store.get(KEY.arrival(concert.id));
      const arrival = status === 201 || !kept || kept < data.position ? data.position : kept;
      store.set(KEY.arrival(concert.id), arrival);
    }
    waitingRoom(data);
  }

  async function postJoin(user) {
    const body = { concert_id: concert.id };
    const kept = store.get(KEY.queue(concert.id));
    if (kept) body.queue_token = kept;
    try {
      return await api('POST', '/v1/queue', { token: user.user_token, body, tries: 8 });
    } catch (err) {
      if (kept && err instanceof ApiError && err.code === 'VALIDATION_FAILED') {
        // The kept token does not fit this user or concert any more: join without it.
        store.del(KEY.queue(concert.id));
        return api('POST', '/v1/queue', { token: user.user_token, body: { concert_id: concert.id }, tries: 8 });
      }
      throw err;
    }
  }

  function joinFailed(err) {
    if (err instanceof ApiError && err.code === 'NOT_FOUND') {
      showFooter(false);
      show(h('section', { class: 'panel', testid: 'not-found' },
        h('h1', {}, 'Concert not found'),
        h('p', {}, 'This concert is not on sale (any more).'),
        h('a', { class: 'btn', href: '/' }, 'See concerts on sale')));
      focusHeading();
      return;
    }
    show(h('section', { class: 'panel' }, concertNameEl(), h('h1', {}, 'We could not get you in line yet')));
    showAlert(friendly(err), retryButton('Try again', joinQueue));
  }

  // ---------------------------------------------------------------- waiting room

  let ui = null; // elements of the waiting room that change

  function waitingRoom(first) {
    const e = epoch;
    const bar = h('div', { class: 'progress__bar' });
    ui = {
      heading: h('h1', {}, 'You’re in line'),
      position: h('span', { class: 'position__number', testid: 'queue-position' }, String(first.position ?? '')),
      ahead: h('span', { class: 'position__ahead', testid: 'queue-ahead' }),
      eta: h('p', { class: 'eta', testid: 'queue-eta' }),
      bar,
      progress: h('div', {
        class: 'progress', role: 'progressbar', testid: 'queue-progress',
        'aria-label': 'Your progress through the line', 'aria-valuemin': '0', 'aria-valuemax': '100',
      }, bar),
      conn: h('p', { class: 'conn', testid: 'connection-status' }),
      pre: h('div', { class: 'prequeue', testid: 'pre-queue', 'aria-live': 'polite', hidden: true }),
      startsAt: null,
    };
    ui.live = h('div', { class: 'position', 'aria-live': 'polite', 'aria-atomic': 'true', testid: 'queue-live' },
      h('p', { class: 'position__label' }, 'Your place in line'),
      ui.position,
      ui.ahead,
      ui.eta);
    show(h('section', { class: 'panel waiting', testid: 'waiting-room' },
      concertNameEl(),
      ui.heading,
      ui.pre,
      ui.live,
      ui.progress,
      ui.conn,
      h('ul', { class: 'tips', testid: 'waiting-tips' },
        // In front of an organiser's shop (gateway mode) there is no booking here to promise.
        gatewayReturn
          ? h('li', {}, 'Keep this tab open. When it is your turn, it takes you on to the shop by itself.')
          : h('li', {}, 'Keep this tab open. When it is your turn, booking opens by itself.'),
        h('li', {}, 'Reloading is fine — your place is saved in this browser.'),
        gatewayReturn
          ? h('li', {}, 'Once you are in, your visit to the shop lasts a limited time.')
          : h('li', {}, 'Once you are in, you have a limited time to pick a seat and pay.')),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'btn btn--quiet', testid: 'leave-queue', onclick: leaveQueue },
          'Leave the line'))));
    updateQueue(first);
    focusHeading();
    watchQueue(e, 0);
  }

  /** A status (polled, streamed or from joining): before the sale starts, or a place in line. */
  function updateQueue(d) {
    if (!ui || !d) return;
    if (d.status === 'pre_queue') updatePreQueue(d.sale_starts_at);
    else updatePosition(d.position, d.eta_seconds);
  }

  /** Before the sale: when it opens (with the fan's zone), counting down; no position yet. */
  function updatePreQueue(startsAtIso) {
    const startsAt = Date.parse(startsAtIso);
    const first = ui.startsAt === null;
    ui.startsAt = Number.isNaN(startsAt) ? Date.now() : startsAt;
    ui.live.hidden = true;
    ui.progress.hidden = true;
    ui.pre.hidden = false;
    ui.heading.textContent = 'You’re in early';
    if (!first) return;
    const e = epoch;
    const when = h('strong', { testid: 'sale-starts-at' }, fmtDate(ui.startsAt));
    const left = h('strong', { class: 'prequeue__clock', testid: 'sale-countdown', role: 'timer' });
    ui.pre.replaceChildren(
      h('p', {}, 'The sale opens ', when, '.'),
      h('p', { class: 'prequeue__left' }, 'Opens in ', left),
      h('p', { class: 'muted' }, 'Everyone who is here before the start gets a place in a random draw, ' +
        'so there is no need to rush. Your place shows here when the sale opens.'));
    const tick = () => {
      if (!alive(e) || ui.pre.hidden) return;
      const ms = ui.startsAt - Date.now();
      left.textContent = ms > 3600000 ? `${Math.floor(ms / 3600000)} h ${Math.floor((ms % 3600000) / 60000)} min` : fmtClock(ms);
      later(tick, 1000);
    };
    tick();
  }

  function updatePosition(position, etaSeconds) {
    if (!ui || typeof position !== 'number') return;
    if (ui.live.hidden) {
      // The sale opened: the draw gave this place a position.
      ui.live.hidden = false;
      ui.progress.hidden = false;
      ui.pre.hidden = true;
      ui.heading.textContent = 'You’re in line';
    }
    let arrival = store.get(KEY.arrival(concert.id)) || position;
    if (position > arrival) {
      arrival = position;
      store.set(KEY.arrival(concert.id), arrival);
    }
    ui.position.textContent = String(position);
    const ahead = position - 1;
    ui.ahead.textContent = ahead === 0 ? 'You are next!' : `${ahead.toLocaleString('en-US')} ${ahead === 1 ? 'person' : 'people'} ahead of you`;
    ui.eta.textContent = etaSeconds == null ? fmtEta(null) : `Estimated wait: ${fmtEta(etaSeconds)}`;
    ui.eta.classList.toggle('eta--paused', etaSeconds == null);
    // Progress since arrival: 0 % when you arrived, 100 % when admitted.
    const pct = arrival > 0 ? Math.round(((arrival - position) / arrival) * 100) : 0;
    const clamped = Math.min(100, Math.max(2, pct));
    ui.bar.style.width = `${clamped}%`;
    ui.progress.setAttribute('aria-valuenow', String(clamped));
    ui.progress.setAttribute('aria-valuetext', `Number ${position} in line (you arrived at number ${arrival})`);
  }

  function setConn(kind, text, action) {
    if (!ui) return;
    ui.conn.className = `conn conn--${kind}`;
    ui.conn.dataset.state = kind;
    ui.conn.replaceChildren(
      h('span', { class: 'conn__text' }, h('span', { class: 'conn__dot', 'aria-hidden': 'true' }), text),
      ...(action ? [action] : []));
  }

  /**
   * A single-use stream ticket for one EventSource connection. An EventSource cannot send an
   * Authorization header, and the queue token must never travel in a URL (logs, history), so
   * the page trades it for a short-lived ticket first — and for a new one on every reconnect.
   */
  async function streamTicket(token) {
    const { data } = await request('POST', '/v1/queue/events/ticket', { token, timeoutMs: 8000 });
    if (!data || typeof data.ticket !== 'string' || !data.ticket) {
      throw new ApiError(0, 'BAD_TICKET', 'The server gave no stream ticket.');
    }
    return data.ticket;
  }

  /** Live updates over SSE; on failure falls back to polling and tries the stream again later. */
  async function watchQueue(e, sseFailures) {
    if (!alive(e)) return;
    const token = store.get(KEY.queue(concert.id));
    if (forcePolling || !window.EventSource || sseFailures >= 3) {
      pollQueue(e, sseFailures, forcePolling || !window.EventSource ? Infinity : Date.now() + 30000);
      return;
    }
    setConn('connecting', 'Connecting for live updates…');
    closeStream();
    let ticket;
    try {
      ticket = await streamTicket(token);
    } catch (_) {
      // No ticket (the place is gone, the token is refused, the network dropped): polling
      // finds out which and carries on; the stream is tried again later.
      if (alive(e)) pollQueue(e, sseFailures + 1, Date.now() + 5000 * (sseFailures + 1));
      return;
    }
    if (!alive(e)) return;
    const es = new EventSource(`/v1/queue/events?ticket=${encodeURIComponent(ticket)}`);
    eventSource = es;
    const parse = (ev) => {
      try {
        return JSON.parse(ev.data);
      } catch (_) {
        return null;
      }
    };
    es.addEventListener('open', () => {
      if (alive(e)) setConn('live', 'Live — your place updates automatically');
    });
    es.addEventListener('pre_queue', (ev) => {
      const d = parse(ev);
      if (!alive(e) || !d) return;
      sseFailures = 0;
      setConn('live', 'Live — this page updates automatically');
      updateQueue({ ...d, status: 'pre_queue' });
    });
    es.addEventListener('position', (ev) => {
      const d = parse(ev);
      if (!alive(e) || !d) return;
      sseFailures = 0;
      setConn('live', 'Live — your place updates automatically');
      updatePosition(d.position, d.eta_seconds);
    });
    es.addEventListener('admitted', (ev) => {
      const d = parse(ev);
      closeStream();
      if (alive(e) && d) admitted(d);
    });
    es.addEventListener('gone', () => {
      closeStream();
      if (alive(e)) joinQueue();
    });
    es.addEventListener('error', () => {
      // Closed by the server, refused (410/401) or the network dropped: ask /status, which
      // tells us which, and keep going by polling. EventSource's own reconnect would reuse the
      // spent ticket, so the stream is closed here and reopened later with a fresh one.
      if (eventSource !== es) return;
      closeStream();
      if (!alive(e)) return;
      pollQueue(e, sseFailures + 1, Date.now() + 5000 * (sseFailures + 1));
    });
  }

  /** Polls /v1/queue/status, honouring poll_after_ms; retries with a visible message when the connection drops. */
  async function pollQueue(e, sseFailures, retrySseAt) {
    let failures = 0;
    while (alive(e)) {
      const token = store.get(KEY.queue(concert.id));
      try {
        const { data } = await request('GET', '/v1/queue/status', { token, timeoutMs: 10000 });
        if (!alive(e)) return;
        failures = 0;
        if (data.status === 'admitted') {
          admitted(data);
          return;
        }
        updateQueue(data);
        if (Date.now() >= retrySseAt) {
          watchQueue(e, sseFailures);
          return;
        }
        const every = Math.max(1000, Number(data.poll_after_ms) || 5000);
        setConn('polling', `Checking for updates every ${Math.round(every / 1000)} s`);
        await sleep(every);
      } catch (err) {
        if (!alive(e)) return;
        if (err instanceof ApiError && err.status === 410) {
          joinQueue(); // re-join with the kept token: the place comes back
          return;
        }
        if (err instanceof ApiError && err.status === 401) {
          store.del(KEY.queue(concert.id)); // the token itself is no good any more
          joinQueue();
          return;
        }
        failures += 1;
        const delay = err.retryAfter ? Math.min(err.retryAfter, 30) : Math.min(30, 2 ** Math.min(failures, 5));
        const wake = {};
        const what = err.status === 0 ? 'Connection lost.' : 'The waiting room is busy.';
        const retryNow = h('button', {
          type: 'button', class: 'btn btn--small btn--secondary', testid: 'retry-now',
          onclick: () => wake.now && wake.now(),
        }, 'Retry now');
        const tick = (left) => {
          if (!alive(e)) return;
          setConn('lost', `${what} Don’t worry, you keep your place. Retrying in ${left} s…`, retryNow);
          if (left > 1) later(() => tick(left - 1), 1000);
        };
        tick(delay);
        await sleep(delay * 1000, wake);
        if (alive(e)) setConn('connecting', 'Reconnecting…');
      }
    }
  }

  async function leaveQueue() {
    const e = epoch;
    const token = store.get(KEY.queue(concert.id));
    try {
      if (token) await api('DELETE', '/v1/queue', { token, tries: 3 });
    } catch (err) {
      if (!(err instanceof ApiError && (err.status === 401 || err.status === 410))) {
        if (alive(e)) showAlert(`We could not take you out of the line. ${friendly(err)}`);
        return;
      }
    }
    store.del(KEY.queue(concert.id));
    store.del(KEY.arrival(concert.id));
    newView();
    show(h('section', { class: 'panel', testid: 'left-queue' },
      concertNameEl(),
      h('h1', {}, 'You left the line'),
      h('p', {}, 'Your place has been given up. You can join again at the back of the line.'),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'btn', onclick: joinQueue, testid: 'rejoin-button' }, 'Join the line again'),
        h('a', { class: 'btn btn--secondary', href: '/' }, 'See all concerts'))));
    focusHeading();
  }

  // ---------------------------------------------------------------- booking
  // Admitted: pick a date, pick up to MAX_SEATS seats, hold them, pay for all of them at once.
  // Holds are kept in localStorage so a reload picks them up again.

  const MAX_SEATS = 4; // holds per date, and reservations per checkout

  let booking = null; // { access, expiresAt, schedule, holds, payKey, step, steps, body, windowLine }

  /** A token for the step on screen: timers of an older step (same screen) see it changed. */
  function newStep() {
    booking.step = {};
    return booking.step;
  }
  const stepAlive = (e, step) => alive(e) && booking && booking.step === step;

  function saveHolds() {
    if (!booking.holds.length) {
      store.del(KEY.hold(concert.id));
      return;
    }
    store.set(KEY.hold(concert.id), { holds: booking.holds, pay_key: booking.payKey });
  }

  /** The set of holds changed: a new payment is a new request, so it gets a new key. */
  function setHolds(holds) {
    booking.holds = holds;
    booking.payKey = null;
    saveHolds();
  }

  const holdOf = (r, schedule) => ({
    reservation_id: r.reservation_id,
    schedule_id: r.schedule_id,
    seat_no: r.seat_no,
    price: r.price,
    expires_at: r.expires_at,
    starts_at: (schedule && schedule.starts_at) || r.starts_at || null,
  });

  const seatList = (nos) => {
    const s = [...nos].sort((a, b) => a - b).map(String);
    if (s.length <= 1) return s.join('');
    return `${s.slice(0, -1).join(', ')} and ${s[s.length - 1]}`;
  };
  const seatsLabel = (nos) => `${nos.length === 1 ? 'Seat' : 'Seats'} ${seatList(nos)}`;

  function admitted(data) {
    if (gatewayReturn) return enterShop(data);
    const e = newView();
    showFooter(true);
    booking = {
      access: data.access_token,
      expiresAt: Date.parse(data.access_expires_at) || Date.now() + 600000,
      schedule: null,
      holds: [],
      payKey: null,
      step: null,
    };
    const left = h('strong', { testid: 'access-countdown' });
    const until = h('span', { class: 'window__until', testid: 'access-until' });
    booking.windowLine = h('p', { class: 'window', role: 'timer', 'aria-live': 'off', testid: 'booking-window' },
      'Your booking window closes in ', left, ' ', until);
    until.textContent = `(at ${fmtTime(booking.expiresAt)})`;
    booking.steps = h('ol', { class: 'steps', 'aria-label': 'Booking steps' },
      h('li', {}, 'Date'), h('li', {}, 'Seats'), h('li', {}, 'Pay'));
    booking.body = h('div', { class: 'step-body' });
    show(h('section', { class: 'panel booking', testid: 'booking' },
      concertNameEl(),
      h('h1', {}, 'It’s your turn!'),
      booking.windowLine,
      booking.steps,
      booking.body));
    focusHeading();
    const tickWindow = () => {
      if (!alive(e)) return;
      const ms = booking.expiresAt - Date.now();
      left.textContent = fmtClock(ms);
      booking.windowLine.classList.toggle('window--urgent', ms < 60000);
      if (ms <= 0) {
        windowEnded();
        return;
      }
      later(tickWindow, 1000);
    };
    tickWindow();
    resumeOrPickDate(e);
  }

  function setStep(n) {
    [...booking.steps.children].forEach((li, i) => {
      li.className = i < n ? 'done' : i === n ? 'current' : '';
      if (i === n) li.setAttribute('aria-current', 'step');
      else li.removeAttribute('aria-current');
    });
    // At checkout the hold's own countdown is the one that matters (a hold never outlives the
    // booking window), so the window line steps aside rather than show a second clock.
    booking.windowLine.hidden = n === 2;
  }

  function bookingBody(...nodes) {
    booking.body.replaceChildren(...nodes);
  }

  /** Handles an error from a booking call: a revoked/expired pass ends the window. */
  function bookingFailed(err, again) {
    if (isAuthError(err)) {
      windowEnded();
      return;
    }
    showAlert(friendly(err), again ? retryButton('Try again', again) : null);
  }

  function windowEnded() {
    newView();
    store.del(KEY.hold(concert.id));
    // The admission is over: this place is spent, a new line place is needed.
    store.del(KEY.queue(concert.id));
    store.del(KEY.arrival(concert.id));
    show(h('section', { class: 'panel', testid: 'window-ended' },
      concertNameEl(),
      h('h1', {}, 'Your booking window ended'),
      h('p', {}, 'Booking time is limited so everyone in line gets a chance. Seats you held but did not pay for go back on sale.'),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'btn', testid: 'rejoin-button', onclick: joinQueue }, 'Join the line again'),
        h('a', { class: 'btn btn--secondary', href: '/' }, 'See all concerts'))));
    focusHeading();
  }

  /** The kept holds that are still held, asked of the server (dropped: paid, expired, released). */
  async function liveHolds(holds) {
    const kept = [];
    for (const hold of holds) {
      try {
        const { data } = await api('GET', `/v1/reservations/${encodeURIComponent(hold.reservation_id)}`, { token: booking.access });
        if (data.status === 'held' && Date.parse(data.expires_at) > Date.now()) {
          kept.push({ ...hold, expires_at: data.expires_at });
        }
      } catch (err) {
        if (isAuthError(err)) throw err;
        if (!(err instanceof ApiError) || err.status === 0 || err.status >= 500) throw err;
        // 403/404: not ours (any more); leave it out.
      }
    }
    return kept;
  }

  /** After a reload during booking, seats still held are picked up again. */
  async function resumeOrPickDate(e) {
    let kept = store.get(KEY.hold(concert.id));
    if (kept && kept.reservation_id) kept = { holds: [kept], pay_key: kept.pay_key }; // older pages kept one hold
    if (kept && Array.isArray(kept.holds) && kept.holds.length) {
      try {
        const holds = await liveHolds(kept.holds);
        if (!alive(e)) return;
        if (holds.length) {
          booking.holds = holds;
          booking.payKey = holds.length === kept.holds.length ? kept.pay_key || null : null;
          saveHolds();
          const first = holds[0];
          booking.schedule = { schedule_id: first.schedule_id, starts_at: first.starts_at };
          checkout(e);
          return;
        }
      } catch (err) {
        if (!alive(e)) return;
        if (isAuthError(err)) {
          windowEnded();
          return;
        }
      }
      store.del(KEY.hold(concert.id));
    }
    pickDate(e);
  }

  async function pickDate(e) {
    newStep();
    setStep(0);
    hideAlert();
    const list = h('ul', { class: 'dates', testid: 'schedule-list', 'aria-busy': 'true' },
      h('li', { class: 'muted' }, 'Loading dates…'));
    bookingBody(h('h2', {}, 'Choose a date'),
      h('p', { class: 'muted tz-note' }, `Times are shown in your time zone (${zoneName()}).`),
      list);
    let data;
    try {
      ({ data } = await api('GET', `/v1/concerts/${concert.id}/schedules`, { token: booking.access }));
    } catch (err) {
      if (!alive(e)) return;
      list.replaceChildren();
      bookingFailed(err, () => pickDate(e));
      return;
    }
    if (!alive(e)) return;
    setConcertName(data.name);
    list.removeAttribute('aria-busy');
    const schedules = data.schedules || [];
    if (!schedules.length) {
      list.replaceChildren(h('li', { class: 'empty' }, 'No dates are open for booking any more.'));
      return;
    }
    list.replaceChildren(...schedules.map((s) => {
      const soldOut = s.available_seats <= 0;
      return h('li', {},
        h('button', {
          type: 'button', class: 'date-option', testid: 'schedule-option', disabled: soldOut,
          'data-schedule-id': s.schedule_id,
          onclick: () => pickSeat(e, s),
        },
        h('span', { class: 'date-option__when' }, fmtDate(s.starts_at)),
        h('span', { class: `date-option__left${soldOut ? ' date-option__left--none' : ''}` },
          soldOut ? 'Sold out' : `${s.available_seats} of ${s.total_seats} seats left`)));
    }));
  }

  async function pickSeat(e, schedule, notice) {
    const step = newStep();
    booking.schedule = schedule;
    setStep(1);
    if (notice) showAlert(notice);
    else hideAlert();
    const mine = () => new Map(booking.holds
      .filter((x) => x.schedule_id === schedule.schedule_id)
      .map((x) => [x.seat_no, x]));
    const room = () => Math.max(0, MAX_SEATS - booking.holds.length);
    let selected = []; // seats picked on the map, not held yet
    const grid = h('div', { class: 'seat-grid', role: 'group', 'aria-label': 'Seats, stage at the front', testid: 'seat-map', 'aria-busy': 'true' });
    const summary = h('p', { class: 'selection', testid: 'seat-selection', 'aria-live': 'polite' });
    const holdBtn = h('button', { type: 'button', class: 'btn', testid: 'hold-seat', disabled: true }, 'Hold seats');
    const refreshBtn = h('button', { type: 'button', class: 'btn btn--quiet', testid: 'refresh-seats' }, 'Refresh seats');
    const toCheckout = booking.holds.length
      ? h('button', { type: 'button', class: 'btn btn--secondary', testid: 'back-to-checkout', onclick: () => checkout(e) },
        `Go to checkout (${booking.holds.length} held)`)
      : null;
    bookingBody(
      h('div', { class: 'step-head' },
        h('h2', { tabindex: '-1' }, 'Pick your seats'),
        h('button', { type: 'button', class: 'btn btn--quiet btn--small', testid: 'change-date', onclick: () => pickDate(e) }, 'Change date')),
      h('p', { class: 'muted', testid: 'chosen-date' }, fmtDate(schedule.starts_at)),
      h('p', { class: 'muted hint' }, `Pick up to ${MAX_SEATS} seats, hold them, then pay for them together.`),
      h('div', { class: 'stage', 'aria-hidden': 'true' }, 'Stage'),
      grid,
      h('ul', { class: 'legend', 'aria-label': 'Seat colours' },
        h('li', {}, h('span', { class: 'swatch swatch--available' }), 'Available'),
        h('li', {}, h('span', { class: 'swatch swatch--selected' }), 'Your pick'),
        h('li', {}, h('span', { class: 'swatch swatch--mine' }), 'Held for you'),
        h('li', {}, h('span', { class: 'swatch swatch--held' }), 'Held by someone'),
        h('li', {}, h('span', { class: 'swatch swatch--sold' }), 'Sold')),
      h('div', { class: 'selection-bar' }, summary, h('div', { class: 'actions' }, holdBtn, toCheckout, refreshBtn)),
    );

    booking.body.querySelector('h2').focus();

    const load = async () => {
      grid.setAttribute('aria-busy', 'true');
      let data;
      try {
        ({ data } = await api('GET', `/v1/schedules/${schedule.schedule_id}/seats`, { token: booking.access }));
      } catch (err) {
        if (!stepAlive(e, step)) return;
        bookingFailed(err, load);
        return;
      }
      if (!stepAlive(e, step)) return;
      grid.removeAttribute('aria-busy');
      const seats = data.seats || [];
      const own = mine();
      const free = new Set(seats.filter((s) => s.status === 'available').map((s) => s.seat_no));
      selected = selected.filter((s) => free.has(s.seat_no));
      grid.replaceChildren(...seats.map((s) => {
        const isFree = s.status === 'available';
        const isMine = own.has(s.seat_no);
        const status = isMine ? 'mine' : s.status;
        const label = isMine ? `Seat ${s.seat_no}, held for you` : `Seat ${s.seat_no}, ${s.status}${isFree ? `, ${money(s.price)}` : ''}`;
        return h('button', {
          type: 'button',
          class: `seat seat--${status}`,
          testid: `seat-${s.seat_no}`,
          'data-status': status,
          'aria-label': label,
          'aria-pressed': isFree ? 'false' : null,
          disabled: !isFree,
          onclick: isFree ? () => toggle(s) : null,
        }, String(s.seat_no));
      }));
      updateSelection();
    };

    const updateSelection = () => {
      const picked = new Set(selected.map((s) => s.seat_no));
      for (const b of grid.querySelectorAll('.seat--available')) {
        const on = picked.has(Number(b.textContent));
        b.classList.toggle('seat--selected', on);
        b.setAttribute('aria-pressed', String(on));
      }
      const total = selected.reduce((sum, s) => sum + Number(s.price), 0);
      if (selected.length) {
        summary.textContent = `${seatsLabel(selected.map((s) => s.seat_no))} · ${money(total)}`;
        holdBtn.disabled = false;
        holdBtn.textContent = selected.length === 1 ? `Hold seat ${selected[0].seat_no}` : `Hold ${selected.length} seats`;
      } else {
        summary.textContent = room() > 0
          ? `Tap available seats to select them (up to ${room()} more).`
          : `You hold ${MAX_SEATS} seats, the most at once. Pay for them or release one first.`;
        holdBtn.disabled = true;
        holdBtn.textContent = 'Hold seats';
      }
    };

    const toggle = (s) => {
      hideAlert();
      if (selected.some((x) => x.seat_no === s.seat_no)) {
        selected = selected.filter((x) => x.seat_no !== s.seat_no);
      } else if (selected.length < room()) {
        selected = [...selected, s];
      } else {
        showAlert(`You can hold up to ${MAX_SEATS} seats at once${booking.holds.length ? ` (you already hold ${booking.holds.length})` : ''}. Tap a picked seat to unpick it.`);
        return;
      }
      updateSelection();
    };

    holdBtn.addEventListener('click', async () => {
      if (!selected.length) return;
      const wanted = selected;
      holdBtn.disabled = true;
      holdBtn.textContent = 'Holding…';
      const held = [];
      const lost = [];
      let stop = null;
      for (const seat of wanted) {
        try {
          const { data } = await api('POST', '/v1/reservations', {
            token: booking.access,
            body: { schedule_id: schedule.schedule_id, seat_no: seat.seat_no },
          });
          held.push(holdOf(data, schedule));
        } catch (err) {
          if (!stepAlive(e, step)) return;
          if (isAuthError(err)) {
            windowEnded();
            return;
          }
          const yours = err instanceof ApiError && err.code === 'SEAT_UNAVAILABLE' && err.details.reservation_id;
          if (yours) {
            // Already ours (an earlier try whose answer was lost): carry on with that hold.
            try {
              const { data } = await api('GET', `/v1/reservations/${encodeURIComponent(yours)}`, { token: booking.access });
              held.push(holdOf(data, schedule));
              continue;
            } catch (_) {
              /* counted as lost below */
            }
          }
          if (err instanceof ApiError && err.code === 'SEAT_UNAVAILABLE') {
            lost.push(seat.seat_no);
            continue;
          }
          stop = err;
          break;
        }
      }
      if (!stepAlive(e, step)) return;
      const known = new Set(booking.holds.map((x) => x.reservation_id));
      setHolds([...booking.holds, ...held.filter((x) => !known.has(x.reservation_id))]);
      const notes = [];
      if (lost.length) notes.push(`Someone just took ${seatsLabel(lost).toLowerCase()} — ${held.length ? 'we held the others' : 'pick another'}.`);
      if (stop) notes.push(friendly(stop));
      if (held.length) {
        checkout(e, notes.join(' ') || null);
        return;
      }
      selected = [];
      showAlert(notes.join(' ') || friendly(null));
      await load();
    });
    refreshBtn.addEventListener('click', () => { hideAlert(); load(); });
    updateSelection();
    await load();
  }

  /** The held seats, one countdown, the wallet, and one payment for all of them. */
  function checkout(e, notice) {
    const step = newStep();
    setStep(2);
    if (notice) showAlert(notice);
    else hideAlert();
    const holds = [...booking.holds].sort((a, b) => a.seat_no - b.seat_no);
    const total = holds.reduce((sum, x) => sum + Number(x.price), 0);
    const nos = holds.map((x) => x.seat_no);
    // The earliest hold decides; a hold never outlives the booking window, and says so.
    const firstEnd = Math.min(...holds.map((x) => Date.parse(x.expires_at) || Date.now()));
    const windowDecides = firstEnd >= booking.expiresAt - 2000;
    const clock = h('span', { class: 'countdown__clock', testid: 'hold-countdown' });
    const countdown = h('div', { class: 'countdown', role: 'timer', 'aria-label': 'Time left to pay for your seats' },
      h('span', { class: 'countdown__label' }, 'Time left to pay'), clock);
    const until = h('p', { class: 'countdown__note', testid: 'hold-until' }, windowDecides
      ? `Your ${holds.length === 1 ? 'seat is' : 'seats are'} held until your booking window closes at ${fmtTime(firstEnd)}.`
      : `Held for you until ${fmtTime(firstEnd)}. Unpaid seats then go back on sale.`);
    const balanceEl = h('strong', { testid: 'wallet-balance' }, '…');
    const missingEl = h('p', { class: 'wallet__missing', testid: 'wallet-missing', hidden: true });
    const chargeBtn = h('button', { type: 'button', class: 'btn btn--secondary', testid: 'charge-button', hidden: true });
    const payLabel = `Pay ${money(total)}`;
    const payBtn = h('button', { type: 'button', class: 'btn btn--primary btn--wide', testid: 'pay-button', disabled: true }, payLabel);
    const addBtn = holds.length < MAX_SEATS
      ? h('button', { type: 'button', class: 'btn btn--quiet', testid: 'add-seat', onclick: () => pickSeat(e, booking.schedule || { schedule_id: holds[0].schedule_id, starts_at: holds[0].starts_at }) }, 'Add another seat')
      : null;
    const releaseBtns = [];
    const rows = holds.map((x) => {
      const releaseBtn = h('button', {
        type: 'button', class: 'btn btn--quiet btn--small', testid: 'cancel-hold', 'data-seat': x.seat_no,
        'aria-label': `Release seat ${x.seat_no}`, onclick: () => release(x),
      }, 'Release');
      releaseBtns.push(releaseBtn);
      return h('li', { class: 'held-seat', testid: 'held-seat', 'data-seat': x.seat_no },
        h('span', { class: 'held-seat__what' },
          h('strong', {}, `Seat ${x.seat_no}`),
          x.starts_at ? h('span', { class: 'muted' }, fmtDate(x.starts_at)) : null),
        h('span', { class: 'held-seat__price' }, money(x.price)),
        releaseBtn);
    });

    bookingBody(
      h('div', { class: 'hold', testid: 'hold-panel' },
        h('h2', { tabindex: '-1' }, holds.length === 1 ? `Seat ${nos[0]} is held for you` : `${seatsLabel(nos)} are held for you`),
        countdown,
        until,
        h('ul', { class: 'held-seats', 'aria-label': 'Your held seats' }, rows),
        h('p', { class: 'checkout-total' }, 'Total: ', h('strong', { testid: 'checkout-total' }, money(total))),
        h('div', { class: 'wallet', testid: 'wallet' },
          h('p', {}, 'Wallet balance: ', balanceEl),
          missingEl,
          chargeBtn),
        h('div', { class: 'actions' }, payBtn, addBtn)));
    booking.body.querySelector('h2').focus();

    const busy = (on) => {
      for (const b of releaseBtns) b.disabled = on;
      if (addBtn) addBtn.disabled = on;
    };

    let warned = false;
    const tick = () => {
      if (!stepAlive(e, step)) return;
      const ms = firstEnd - Date.now();
      clock.textContent = fmtClock(ms);
      countdown.classList.toggle('countdown--urgent', ms < 60000);
      if (ms < 60000 && !warned) {
        warned = true;
        showBanner('Less than a minute left to pay for your seats.');
      }
      if (ms <= 0) {
        expired();
        return;
      }
      later(tick, 1000);
    };

    /** A hold ran out: keep the ones still held, or back to the map when none is. */
    const expired = async (why) => {
      let still = [];
      try {
        still = await liveHolds(booking.holds);
      } catch (err) {
        if (!stepAlive(e, step)) return;
        if (isAuthError(err)) {
          windowEnded();
          return;
        }
      }
      if (!stepAlive(e, step)) return;
      const gone = booking.holds.filter((x) => !still.some((y) => y.reservation_id === x.reservation_id)).map((x) => x.seat_no);
      setHolds(still);
      const text = why || (gone.length
        ? `The hold on ${seatsLabel(gone).toLowerCase()} ran out before payment, so ${gone.length === 1 ? 'it went' : 'they went'} back on sale.`
        : null);
      if (still.length) checkout(e, text);
      else pickSeat(e, booking.schedule || { schedule_id: holds[0].schedule_id, starts_at: holds[0].starts_at }, `${text || 'Your hold ran out.'} Please pick seats again.`);
    };
    tick();

    let balance = null;
    let chargeKey = `charge-${uuid()}`;
    const user = store.get(KEY.user);

    const renderWallet = () => {
      balanceEl.textContent = balance == null ? 'unknown' : money(balance);
      const missing = balance == null ? 0 : Math.max(0, total - balance);
      missingEl.hidden = missing === 0;
      chargeBtn.hidden = missing === 0;
      if (missing > 0) {
        missingEl.textContent = `You need ${money(missing)} more to pay for ${holds.length === 1 ? 'this seat' : 'these seats'}.`;
        chargeBtn.textContent = `Add ${money(missing)} to my wallet`;
        chargeBtn.dataset.amount = String(missing);
      }
      payBtn.disabled = balance == null || missing > 0;
    };

    const loadBalance = async () => {
      try {
        const { data } = await api('GET', `/v1/users/${encodeURIComponent(user.user_id)}/balance`, { token: user.user_token });
        if (!stepAlive(e, step)) return;
        balance = data.balance;
        renderWallet();
      } catch (err) {
        if (!stepAlive(e, step)) return;
        showAlert(`We could not load your wallet. ${friendly(err)}`, retryButton('Try again', loadBalance));
      }
    };

    chargeBtn.addEventListener('click', async () => {
      const amount = Number(chargeBtn.dataset.amount);
      if (!(amount > 0)) return;
      chargeBtn.disabled = true;
      chargeBtn.textContent = 'Adding…';
      hideAlert();
      try {
        // The key is kept until the charge is confirmed, so a retry never charges twice.
        const { data } = await api('POST', `/v1/users/${encodeURIComponent(user.user_id)}/balance/charge`, {
          token: user.user_token, body: { amount }, idemKey: chargeKey,
        });
        if (!stepAlive(e, step)) return;
        chargeKey = `charge-${uuid()}`;
        balance = data.balance;
        renderWallet();
        payBtn.focus();
      } catch (err) {
        if (!stepAlive(e, step)) return;
        showAlert(`The top-up did not go through. ${friendly(err)}`);
        renderWallet();
      } finally {
        chargeBtn.disabled = false;
      }
    });

    payBtn.addEventListener('click', async () => {
      payBtn.disabled = true;
      busy(true);
      payBtn.textContent = 'Paying…';
      hideAlert();
      if (!booking.payKey) {
        // Kept until the set of holds changes, so a retry of a lost answer never pays twice.
        booking.payKey = `pay-${uuid()}`;
        saveHolds();
      }
      try {
        const { data } = await api('POST', '/v1/payments', {
          token: booking.access, body: { reservation_ids: holds.map((x) => x.reservation_id) }, idemKey: booking.payKey,
        });
        if (!alive(e)) return;
        confirmation(data, holds);
      } catch (err) {
        if (!stepAlive(e, step)) return;
        payBtn.textContent = payLabel;
        busy(false);
        if (isAuthError(err)) {
          windowEnded();
          return;
        }
        if (err.code === 'HOLD_EXPIRED') {
          expired();
          return;
        }
        showAlert(friendly(err));
        if (err.code === 'INSUFFICIENT_BALANCE' && Number.isFinite(err.details.balance)) {
          balance = err.details.balance;
          renderWallet();
        } else if (err.code === 'INSUFFICIENT_BALANCE') {
          await loadBalance();
        } else {
          payBtn.disabled = false;
        }
      }
    });

    const release = async (x) => {
      busy(true);
      payBtn.disabled = true;
      try {
        await api('DELETE', `/v1/reservations/${encodeURIComponent(x.reservation_id)}`, { token: booking.access });
      } catch (err) {
        if (!stepAlive(e, step)) return;
        if (isAuthError(err)) {
          windowEnded();
          return;
        }
        if (err.code !== 'HOLD_EXPIRED') {
          busy(false);
          renderWallet();
          showAlert(`We could not release seat ${x.seat_no}. ${friendly(err)}`);
          return;
        }
      }
      if (!stepAlive(e, step)) return;
      setHolds(booking.holds.filter((y) => y.reservation_id !== x.reservation_id));
      const text = `Seat ${x.seat_no} was released.`;
      if (booking.holds.length) checkout(e, text);
      else pickSeat(e, booking.schedule || { schedule_id: x.schedule_id, starts_at: x.starts_at }, `${text} Pick another one whenever you like.`);
    };

    loadBalance();
  }

  /** The receipt. `pay` is a checkout answer: {payments: [...], balance}. */
  function confirmation(pay, holds) {
    newView();
    store.del(KEY.hold(concert.id));
    // Paying ends this admission and the place in line; a new booking needs a new place.
    store.del(KEY.queue(concert.id));
    store.del(KEY.arrival(concert.id));
    const payments = Array.isArray(pay.payments) ? pay.payments : [pay];
    const first = payments[0] || {};
    if (first.concert_name) setConcertName(first.concert_name);
    const nos = payments.map((p) => p.seat_no).filter((n) => n != null);
    const seatNos = nos.length ? nos : holds.map((x) => x.seat_no);
    const paid = payments.reduce((sum, p) => sum + Number(p.amount || 0), 0);
    const dates = [...new Set(payments.map((p) => p.starts_at).filter(Boolean))];
    const fallbackDate = holds[0] && holds[0].starts_at;
    const row = (label, value, testid) => [h('dt', {}, label), h('dd', { testid }, value)];
    show(h('section', { class: 'panel confirmation', testid: 'confirmation' },
      h('div', { class: 'confirmation__icon', 'aria-hidden': 'true' }),
      h('h1', {}, 'You’re going!'),
      h('p', { class: 'lead' }, `Your payment went through and ${seatNos.length === 1 ? 'the seat is' : 'the seats are'} yours.`),
      h('dl', { class: 'receipt' },
        row('Concert', first.concert_name || concert.name || '', 'confirm-concert'),
        row(dates.length > 1 ? 'Dates' : 'Date', (dates.length ? dates : [fallbackDate]).filter(Boolean).map(fmtDate).join('; '), 'confirm-date'),
        row(seatNos.length === 1 ? 'Seat' : 'Seats', seatsLabel(seatNos), 'confirm-seat'),
        row('Paid', money(paid), 'confirm-amount'),
        row('Wallet balance left', money(pay.balance), 'confirm-balance'),
        row(payments.length === 1 ? 'Booking reference' : 'Booking references', payments.map((p) => String(p.payment_id)).join(', '), 'confirm-reference')),
      h('div', { class: 'actions' },
        h('a', { class: 'btn', href: '/' }, 'See all concerts'),
        h('button', { type: 'button', class: 'btn btn--secondary', testid: 'book-another', onclick: joinQueue }, 'Book more seats'))));
    focusHeading();
  }

  // ---------------------------------------------------------------- gateway mode

  /**
   * A same-origin absolute path, or null: one leading '/' not followed by '/' or '\\' (another
   * host to a browser), no backslash, space or control character anywhere, not absurdly long.
   * The server applies the same rule (POST /v1/gateway/session answers 422 otherwise).
   */
  function safeReturnPath(p) {
    if (typeof p !== 'string' || p.length === 0 || p.length > 2048) return null;
    if (p[0] !== '/' || p[1] === '/' || p[1] === '\\') return null;
    if (!/^[\x21-\x7e]+$/.test(p) || p.includes('\\')) return null;
    try {
      if (new URL(p, location.origin).origin !== location.origin) return null;
    } catch (_) {
      return null;
    }
    return p;
  }

  // `?return=/path` is set by the gateway's redirect when a visitor asked for a page of the
  // organiser's shop: once admitted, the page trades the access token for the gateway's grant
  // cookie and goes back there instead of showing the booking steps.
  const gatewayReturn = safeReturnPath(params.get('return'));

  async function enterShop(data) {
    const e = newView();
    show(h('section', { class: 'panel', testid: 'entering-shop' },
      concertNameEl(),
      h('h1', {}, 'It’s your turn!'),
      h('p', {}, 'Taking you to the shop…')));
    focusHeading();
    try {
      const r = await api('POST', '/v1/gateway/session', { token: data.access_token, body: { return: gatewayReturn } });
      const to = safeReturnPath(r.data && r.data.return_to) || gatewayReturn;
      if (alive(e)) location.replace(to);
    } catch (err) {
      if (!alive(e)) return;
      showAlert(friendly(err), retryButton('Try again', () => enterShop(data)));
    }
  }

  // ---------------------------------------------------------------- start

  function start() {
    const m = location.pathname.match(/^\/concerts\/([^/]+)\/?$/);
    if (m) concertPage(decodeURIComponent(m[1]));
    else landing();
  }

  window.addEventListener('pagehide', closeStream);
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
