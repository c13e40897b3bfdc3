// realtime.js: a dependency-free client for the realtime service.
//
//   import { connect } from '/client/realtime.js';
//   const rt = connect({ workspaceId: 'acme', getToken: () => fetchToken() });
//   rt.on('approval.created', (event) => ...);
//   rt.onStatus((s) => ...); // {state: 'connecting'|'live'|'reconnecting'|'offline', ...}
//
// It streams with EventSource and falls back to long polling when
// EventSource is missing, when streams keep failing while plain requests
// work, or when a stream's first frame never arrives (a buffering proxy).
// While polling it tries to stream again now and then. Both transports read
// the same log with the same cursor, so a switch never loses an event, and
// ids already delivered are dropped anyway. Nothing here throws into the
// page: every failure becomes a status.
//
// No token goes into a URL: each stream is opened with a single-use ticket
// that getToken()'s token buys (POST .../stream-tickets, with the token in
// the Authorization header); a server without tickets (404) gets the old
// ?access_token=. When the token expires the server ends the stream with
// `event: auth.expired`; the client then calls getToken() again and
// resumes from its last id at once, so a renewal loses and repeats nothing.

const DEFAULTS = {
  baseUrl: '',
  types: null, // e.g. ['approval.*', 'chat.message']; null: every type of the log. Presence and typing are opt-in: ['*'], or name them ('presence.*', 'typing.*')
  cursor: null, // resume point from an earlier session; null: start live
  initialDelay: 1000, // first reconnect delay, doubled per attempt...
  maxDelay: 30000, // ...up to this
  jitter: 0.2, // each delay is scaled by a random factor in [1-jitter, 1+jitter]
  maxAttempts: 10, // reconnect attempts before 'offline' (until retry())
  firstFrameTimeout: 8000, // no 'ready' within this although requests work: a buffering proxy
  streamFailuresBeforePolling: 3, // streams failing while requests work, before polling
  pollWait: 25, // long-poll wait, seconds
  streamRetryInterval: 60000, // while polling, try streaming again this often
  stallTimeout: 45000, // no frame at all (heartbeats come every 15s) for this long: reconnect
  dedupeWindow: 5000, // how many recent ids to remember
  onReset: null, // called with {cursor} when history was lost: refetch your state
  onError: null, // called with errors thrown by your own listeners
  tickets: true, // open streams with a stream ticket; false: ?access_token= (servers before tickets)
  EventSource: undefined, // injectable; default: globalThis.EventSource
  fetch: undefined, // injectable; default: globalThis.fetch
};

const EVENT_TYPES = ['approval.created', 'approval.updated', 'approval.deleted', 'agent.status.changed', 'notification.new', 'chat.message',
  'presence.changed', 'typing.started', 'typing.stopped'];

/**
 * connect opens a real-time connection to one workspace and returns its
 * handle: on(type, fn), onStatus(fn), status, cursor, retry(), close(),
 * optimistic({...}).
 */
export function connect(options) {
  const o = { ...DEFAULTS };
  for (const [k, v] of Object.entries(options || {})) if (v !== undefined) o[k] = v; // undefined keeps the default
  const ES = o.EventSource === undefined ? globalThis.EventSource : o.EventSource;
  const doFetch = o.fetch || ((...a) => globalThis.fetch(...a));
  const listeners = new Map(); // type -> Set<fn>
  const statusListeners = new Set();
  const seen = new Set();
  const seenOrder = [];
  const pending = new Map(); // correlationId -> {confirm, rollback, timer}

  let status = Object.freeze({ state: 'connecting' });
  let cursor = o.cursor || null;
  let closed = false;
  let attempt = 0; // consecutive failed attempts
  let streamFailures = 0; // streams that failed while plain requests worked
  let noTickets = !o.tickets; // the server has no stream tickets (or they are turned off here)
  let generation = 0; // bumps whenever the current attempt is replaced
  let es = null; // the live EventSource
  let pollAbort = null; // aborts the live poll loop
  let timers = new Set(); // transport timers, cleared on every switch

  function later(fn, ms) {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
    return t;
  }
  function cancel(t) {
    clearTimeout(t);
    timers.delete(t);
  }
  function safe(fn, arg) {
    try {
      fn(arg);
    } catch (err) {
      try {
        if (o.onError) o.onError(err);
        else console.warn('realtime: a listener threw', err);
      } catch (_) { /* nothing left to tell */ }
    }
  }
  function setStatus(next) {
    status = Object.freeze(next);
    for (const fn of [...statusListeners]) safe(fn, status);
  }
  function emit(type, payload) {
    const set = listeners.get(type);
    if (set) for (const fn of [...set]) safe(fn, payload);
  }

  function remember(id) {
    if (seen.has(id)) return false;
    seen.add(id);
    seenOrder.push(id);
    if (seenOrder.length > o.dedupeWindow) seen.delete(seenOrder.shift());
    return true;
  }

  function deliver(event) {
    if (event && event.id === undefined && typeof event.type === 'string') {
      // Ephemeral (presence, typing): not in the log, no id, no cursor.
      emit(event.type, event);
      return;
    }
    if (!event || typeof event.id !== 'string' || !remember(event.id)) return;
    cursor = event.id;
    const p = event.correlationId && pending.get(event.correlationId);
    if (p) {
      pending.delete(event.correlationId);
      clearTimeout(p.timer);
      if (p.confirm) safe(p.confirm, event);
    }
    emit(event.type, event);
    emit('*', event);
  }

  function reset(head) {
    cursor = head || cursor;
    seen.clear();
    seenOrder.length = 0;
    const info = { cursor };
    if (o.onReset) safe(o.onReset, info);
    emit('sync.reset', info);
  }

  async function token() {
    if (o.getToken) return await o.getToken();
    return o.token || '';
  }

  function url(path, params) {
    const u = new URL(o.baseUrl + '/v1/workspaces/' + encodeURIComponent(o.workspaceId) + path,
      globalThis.location ? globalThis.location.href : undefined);
    for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== '') u.searchParams.set(k, String(v));
    return u.toString();
  }

  function stopTransport() {
    if (es) {
      es.onerror = null;
      es.close();
      es = null;
    }
    if (pollAbort) {
      pollAbort.abort();
      pollAbort = null;
    }
    for (const t of timers) clearTimeout(t);
    timers = new Set();
  }

  // next replaces whatever attempt is running and returns its generation.
  function next() {
    generation += 1;
    return generation;
  }

  // failed ends the current attempt and schedules another, or gives up.
  function failed(gen, reason) {
    if (gen !== generation || closed) return;
    stopTransport();
    attempt += 1;
    if (attempt > o.maxAttempts) {
      next();
      setStatus({ state: 'offline', reason, attempt: o.maxAttempts, maxAttempts: o.maxAttempts });
      return;
    }
    const base = Math.min(o.initialDelay * 2 ** (attempt - 1), o.maxDelay);
    const delay = Math.round(base * (1 - o.jitter + 2 * o.jitter * Math.random()));
    const g = next();
    setStatus({ state: 'reconnecting', reason, attempt, maxAttempts: o.maxAttempts, delay, nextAt: Date.now() + delay });
    later(() => tryConnect(g), delay);
  }

  function live(transport) {
    attempt = 0;
    if (status.state !== 'live' || status.transport !== transport) setStatus({ state: 'live', transport });
  }

  function tryConnect(gen) {
    if (closed || gen !== generation) return;
    if (!ES || streamFailures >= o.streamFailuresBeforePolling) poll(gen);
    else stream(gen, false);
  }

  // stream opens an EventSource. A probe is a stream opened while polling
  // works: if it becomes ready it takes over, if not polling goes on.
  async function stream(gen, probe) {
    let tok;
    try {
      tok = await token();
    } catch (_) {
      if (!probe) failed(gen, 'no token');
      return;
    }
    if (closed || gen !== generation) return;
    let auth;
    try {
      auth = await streamAuth(tok);
    } catch (_) {
      if (!probe && !closed && gen === generation) failed(gen, 'no ticket');
      return;
    }
    if (closed || gen !== generation) return;
    let source;
    try {
      source = new ES(url('/events/stream', { ...auth, lastEventId: cursor }));
    } catch (_) {
      if (!probe) failed(gen, 'stream refused');
      return;
    }
    if (!probe) es = source;
    let ready = false;
    let stall = 0;
    const firstFrame = later(() => {
      if (ready || gen !== generation) return;
      source.onerror = null;
      source.close();
      if (!probe) blocked(gen, true);
    }, o.firstFrameTimeout);
    const touch = () => {
      cancel(stall);
      stall = later(() => failed(gen, 'stalled'), o.stallTimeout);
    };
    source.addEventListener('ready', (e) => {
      if (gen !== generation || closed) {
        source.close();
        return;
      }
      ready = true;
      cancel(firstFrame);
      if (probe) {
        // Streaming works again: it replaces polling.
        stopTransport();
        gen = next();
        es = source;
      }
      streamFailures = 0;
      try {
        const d = JSON.parse(e.data);
        if (!cursor && d.cursor) cursor = d.cursor;
      } catch (_) { /* still ready */ }
      touch();
      live('sse');
    });
    // A filtered stream is told, with an id-only frame, that events it may
    // not see have passed; the browser then hands that id to the next
    // event it dispatches (a heartbeat, presence, typing), which is where
    // the resume point moves, or a reconnect would be reset for nothing.
    const advance = (e) => {
      if (e.lastEventId) cursor = e.lastEventId;
    };
    source.addEventListener('heartbeat', (e) => {
      if (!ready) return;
      advance(e);
      touch();
    });
    // The token (or the ticket's) expired: the server closes the stream.
    // Renew at once, from the last id, without counting a failure.
    source.addEventListener('auth.expired', () => {
      if (!ready || gen !== generation || closed) return;
      source.onerror = null;
      source.close();
      stopTransport();
      stream(next(), false);
    });
    source.addEventListener('sync.reset', (e) => {
      if (!ready) return;
      touch();
      let head = e.lastEventId;
      try {
        head = JSON.parse(e.data).head || head;
      } catch (_) { /* use the frame's id */ }
      reset(head);
    });
    const onData = (e) => {
      if (!ready) return;
      touch();
      let ev;
      try {
        ev = JSON.parse(e.data);
      } catch (_) {
        return;
      }
      if (!ev || !ev.id) advance(e); // ephemeral: no id of its own
      deliver(ev);
    };
    const custom = [...listeners.keys()].filter((t) => t !== '*' && t !== 'sync.reset' && !EVENT_TYPES.includes(t));
    for (const t of [...EVENT_TYPES, ...custom]) source.addEventListener(t, onData);
    source.onmessage = onData;
    source.onerror = () => {
      // The browser would reconnect by itself, with the stale token in
      // the URL; we take over so that every attempt gets a fresh token,
      // our backoff, and a transport decision.
      source.onerror = null;
      source.close();
      cancel(firstFrame);
      cancel(stall);
      if (gen !== generation || closed) return;
      if (probe && !ready) return; // keep polling
      if (!ready) blocked(gen, false);
      else failed(gen, 'stream dropped');
    };
  }

  // streamAuth returns the query parameters that authenticate a stream:
  // a fresh ticket bought with tok, bound to the types; or, from a server
  // without tickets, the token and the types.
  async function streamAuth(tok) {
    const types = o.types && o.types.join(',');
    if (!noTickets) {
      const res = await doFetch(url('/stream-tickets', {}), {
        method: 'POST',
        headers: { Authorization: 'Bearer ' + tok, 'Content-Type': 'application/json' },
        body: JSON.stringify(types ? { types } : {}),
        cache: 'no-store',
      });
      if (res.status !== 404 && res.status !== 405) {
        if (!res.ok) throw new Error('ticket refused: ' + res.status);
        const body = await res.json();
        if (!body || typeof body.ticket !== 'string') throw new Error('no ticket in the answer');
        return { ticket: body.ticket };
      }
      noTickets = true; // an older server: it has no such route
    }
    return { access_token: tok, types };
  }

  // blocked handles a stream that never became ready. If a plain request
  // gets through, the server is up and streaming is what fails: a missing
  // first frame (a buffering proxy) switches to polling at once, repeated
  // stream errors after a few tries. Otherwise it is an ordinary failure.
  async function blocked(gen, noFirstFrame) {
    if (es) {
      es.onerror = null;
      es.close();
      es = null;
    }
    let ok = false;
    try {
      const res = await doFetch(url('/events', {}), { headers: { Authorization: 'Bearer ' + (await token()) }, cache: 'no-store' });
      ok = res.ok;
      await res.text();
    } catch (_) {
      ok = false;
    }
    if (gen !== generation || closed) return;
    if (ok) {
      streamFailures = noFirstFrame ? o.streamFailuresBeforePolling : streamFailures + 1;
      if (streamFailures >= o.streamFailuresBeforePolling) {
        poll(gen);
        return;
      }
    }
    failed(gen, noFirstFrame ? 'no first frame' : 'stream failed');
  }

  // poll runs the long-poll loop until it fails or something replaces it.
  async function poll(gen) {
    if (closed || gen !== generation) return;
    const ctl = new AbortController();
    pollAbort = ctl;
    let first = true;
    while (!closed && gen === generation) {
      let body;
      const started = Date.now();
      try {
        // The first request answers at once, so the status is honest.
        const params = { cursor, wait: first ? null : o.pollWait, types: o.types && o.types.join(',') };
        const res = await doFetch(url('/events', params), {
          headers: { Authorization: 'Bearer ' + (await token()) },
          cache: 'no-store',
          signal: ctl.signal,
        });
        if (!res.ok) throw new Error('poll answered ' + res.status);
        body = await res.json();
      } catch (_) {
        if (!ctl.signal.aborted) failed(gen, 'poll failed');
        return;
      }
      if (gen !== generation || closed) return;
      if (body.reset) reset(body.nextCursor);
      else {
        for (const e of body.events || []) deliver(e);
        if (body.nextCursor) cursor = body.nextCursor;
      }
      for (const e of body.ephemeral || []) deliver(e);
      const wasFirst = first;
      if (first) {
        first = false;
        live('polling');
        if (ES) probeLater(gen);
      }
      // An empty answer long before the wait was up (a proxy that cuts
      // long requests, a server draining) must not turn into a busy loop.
      const early = !wasFirst && !body.hasMore && !(body.events || []).length && !(body.ephemeral || []).length && Date.now() - started < (o.pollWait * 1000) / 2;
      if (early) await new Promise((r) => later(r, Math.min(1000, (o.pollWait * 1000) / 2)));
    }
  }

  function probeLater(gen) {
    later(() => {
      if (gen !== generation || closed) return;
      stream(gen, true);
      probeLater(gen);
    }, o.streamRetryInterval);
  }

  function start() {
    stopTransport();
    const gen = next();
    setStatus({ state: 'connecting' });
    tryConnect(gen);
  }

  const handle = {
    /** on(type, fn) subscribes to an event type ('*' for all, 'sync.reset'); returns an unsubscribe function. */
    on(type, fn) {
      if (!listeners.has(type)) listeners.set(type, new Set());
      listeners.get(type).add(fn);
      return () => listeners.get(type).delete(fn);
    },
    /** onStatus(fn) calls fn now and on every status change; returns an unsubscribe function. */
    onStatus(fn) {
      statusListeners.add(fn);
      safe(fn, status);
      return () => statusListeners.delete(fn);
    },
    get status() {
      return status;
    },
    get cursor() {
      return cursor;
    },
    /** retry() starts over now, with a fresh attempt budget. */
    retry() {
      if (closed) return;
      attempt = 0;
      streamFailures = 0;
      start();
    },
    /** close() stops everything for good. */
    close() {
      if (closed) return;
      closed = true;
      next();
      stopTransport();
      for (const p of pending.values()) clearTimeout(p.timer);
      pending.clear();
      setStatus({ state: 'offline', reason: 'closed' });
    },
    /**
     * optimistic registers a change the page applies before the server
     * confirms it. apply() runs now; when the event with this correlationId
     * arrives, confirm(event) runs; if none arrives within timeout ms,
     * rollback() runs. Publish with the returned correlationId.
     */
    optimistic({ correlationId, apply, confirm, rollback, timeout = 10000 } = {}) {
      const id = correlationId || newCorrelationId();
      if (apply) safe(apply);
      const timer = setTimeout(() => {
        if (pending.delete(id) && rollback) safe(rollback);
      }, timeout);
      pending.set(id, { confirm, rollback, timer });
      return {
        correlationId: id,
        cancel() {
          clearTimeout(timer);
          pending.delete(id);
        },
      };
    },
  };
  // Start once the caller has registered its listeners.
  Promise.resolve().then(() => {
    if (!closed) start();
  });
  return handle;
}

/** newCorrelationId returns a random id that ties a request to its event. */
export function newCorrelationId() {
  const b = new Uint8Array(16);
  globalThis.crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}
