// Unit tests of realtime.js's state machine with a fake EventSource and a
// fake fetch: backoff, giving up, transport fallback and return, dedupe,
// resets, stalls, optimistic updates, listener isolation. Run by
// `node --test` (web/realtime_test.go runs it from go test). Delays are
// shrunk to milliseconds; the tests wait for states, never for a clock.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from './realtime.js';

const BASE = 'http://rt.test';

class FakeES {
  static all = [];
  constructor(url) {
    this.url = new URL(url);
    this.listeners = new Map();
    this.closed = false;
    this.onerror = null;
    this.onmessage = null;
    FakeES.all.push(this);
  }
  addEventListener(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, []);
    this.listeners.get(type).push(fn);
  }
  close() {
    this.closed = true;
  }
  emit(type, data, lastEventId = '') {
    if (this.closed) return;
    for (const fn of this.listeners.get(type) || []) fn({ type, data: typeof data === 'string' ? data : JSON.stringify(data), lastEventId });
  }
  ready(cursor = 'e-0') {
    this.emit('ready', { cursor });
  }
  event(id, type = 'chat.message', extra = {}) {
    this.emit(type, { id, type, workspaceId: 'ws', data: {}, ...extra }, id);
  }
  fail() {
    if (!this.closed && this.onerror) this.onerror(new Event('error'));
  }
  static last() {
    return FakeES.all[FakeES.all.length - 1];
  }
}

function response(status, body) {
  return { ok: status >= 200 && status < 300, status, json: async () => body, text: async () => JSON.stringify(body) };
}

// tickets: false for the transport tests: they watch ?access_token= to see
// a fresh token per attempt; the ticket tests below turn them on.
const fast = { baseUrl: BASE, workspaceId: 'ws', token: 't', tickets: false, initialDelay: 5, maxDelay: 40, jitter: 0.2, maxAttempts: 4, firstFrameTimeout: 60, streamRetryInterval: 30, stallTimeout: 200, pollWait: 1 };

async function until(what, cond, ms = 3000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await new Promise((r) => setTimeout(r, 2));
  }
}

function setup(opts = {}, fetchImpl = async () => { throw new TypeError('Failed to fetch'); }) {
  FakeES.all = [];
  const statuses = [];
  const events = [];
  const rt = connect({ ...fast, EventSource: FakeES, fetch: (...a) => fetchImpl(...a), ...opts });
  rt.onStatus((s) => statuses.push(s));
  rt.on('*', (e) => events.push(e.id));
  return { rt, statuses, events };
}

test('goes live when the stream is ready, and resumes with lastEventId after a drop, never repeating', async () => {
  const { rt, statuses, events } = setup();
  await until('a stream', () => FakeES.all.length === 1);
  const es = FakeES.last();
  assert.equal(es.url.pathname, '/v1/workspaces/ws/events/stream');
  assert.equal(es.url.searchParams.get('access_token'), 't');
  assert.equal(es.url.searchParams.get('lastEventId'), null);
  es.ready('h-5');
  await until('live', () => rt.status.state === 'live');
  assert.deepEqual(rt.status, { state: 'live', transport: 'sse' });
  es.event('h-6');
  es.event('h-7');
  es.fail();
  await until('a second stream', () => FakeES.all.length === 2);
  const es2 = FakeES.last();
  assert.equal(es2.url.searchParams.get('lastEventId'), 'h-7');
  es2.ready('h-7');
  es2.event('h-7'); // a repeat across the reconnect is dropped
  es2.event('h-8');
  assert.deepEqual(events, ['h-6', 'h-7', 'h-8']);
  assert.equal(rt.cursor, 'h-8');
  assert.ok(statuses.some((s) => s.state === 'reconnecting' && s.attempt === 1));
  rt.close();
});

test('starts live from the head the ready event names', async () => {
  const { rt } = setup();
  await until('a stream', () => FakeES.all.length === 1);
  FakeES.last().ready('h-42');
  await until('live', () => rt.status.state === 'live');
  assert.equal(rt.cursor, 'h-42');
  rt.close();
});

test('backs off with growing delays, gives up after maxAttempts, and retry() starts over', async () => {
  let tokens = 0;
  const { rt, statuses } = setup({ token: undefined, getToken: async () => `tok${++tokens}` });
  // Every stream fails at once and plain requests fail too: the server is down.
  const failer = setInterval(() => FakeES.all.forEach((es) => es.fail()), 1);
  await until('offline', () => rt.status.state === 'offline');
  clearInterval(failer);
  const waits = statuses.filter((s) => s.state === 'reconnecting');
  assert.deepEqual(waits.map((s) => s.attempt), [1, 2, 3, 4]);
  for (const s of waits) assert.equal(s.maxAttempts, 4);
  for (let i = 1; i < waits.length; i++) assert.ok(waits[i].delay > waits[i - 1].delay || waits[i].delay === 40, `delays grow: ${waits.map((s) => s.delay)}`);
  assert.ok(waits.every((s) => s.delay <= 40 * 1.2), 'capped at maxDelay');
  assert.equal(rt.status.state, 'offline');
  const streams = FakeES.all.length;
  assert.equal(streams, 5); // the first try and four reconnects
  const used = FakeES.all.map((es) => es.url.searchParams.get('access_token'));
  assert.equal(new Set(used).size, used.length, `a fresh token per attempt: ${used}`);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(FakeES.all.length, streams, 'no attempts while offline');
  rt.retry();
  await until('a new stream after retry', () => FakeES.all.length === streams + 1);
  FakeES.last().ready();
  await until('live after retry', () => rt.status.state === 'live');
  rt.close();
});

test('polls when EventSource is missing', async () => {
  const polls = [];
  const { rt, events } = setup({ EventSource: null }, async (url) => {
    const u = new URL(url);
    polls.push(u.search);
    const cursor = u.searchParams.get('cursor');
    if (!cursor) return response(200, { events: [], nextCursor: 'h-1', hasMore: false, reset: false });
    if (cursor === 'h-1') return response(200, { events: [{ id: 'h-2', type: 'chat.message' }], nextCursor: 'h-2', hasMore: false, reset: false });
    await new Promise((r) => setTimeout(r, 5));
    return response(200, { events: [], nextCursor: cursor, hasMore: false, reset: false });
  });
  await until('live polling', () => rt.status.state === 'live');
  assert.deepEqual(rt.status, { state: 'live', transport: 'polling' });
  await until('an event', () => events.length === 1);
  assert.deepEqual(events, ['h-2']);
  assert.equal(polls[0], '', 'the first poll asks for the head, without waiting');
  assert.match(polls[1], /cursor=h-1&wait=1/);
  rt.close();
});

test('a stream that never sends its first frame (buffering proxy) switches to polling at once, then back to streaming', async () => {
  let head = 0;
  const { rt, events } = setup({}, async (url) => {
    const u = new URL(url);
    if (u.searchParams.get('wait')) await new Promise((r) => setTimeout(r, 5));
    return response(200, { events: head ? [{ id: 'h-' + head, type: 'chat.message' }] : [], nextCursor: head ? 'h-' + head : 'h-0', hasMore: false, reset: false });
  });
  await until('live over polling', () => rt.status.state === 'live' && rt.status.transport === 'polling');
  head = 1;
  await until('a polled event', () => events.includes('h-1'));
  head = 0;
  // The next probe gets through.
  const probes = FakeES.all.length;
  await until('a probe', () => FakeES.all.length > probes);
  const probe = FakeES.last();
  probe.ready('h-1');
  await until('back to streaming', () => rt.status.state === 'live' && rt.status.transport === 'sse');
  probe.event('h-1'); // already seen over polling
  probe.event('h-2');
  assert.deepEqual(events, ['h-1', 'h-2']);
  rt.close();
});

test('streams that keep failing while requests work switch to polling', async () => {
  const { rt } = setup({}, async () => {
    await new Promise((r) => setTimeout(r, 1));
    return response(200, { events: [], nextCursor: 'h-0', hasMore: false, reset: false });
  });
  const failer = setInterval(() => FakeES.all.forEach((es) => es.fail()), 1);
  await until('live over polling', () => rt.status.state === 'live' && rt.status.transport === 'polling');
  clearInterval(failer);
  assert.equal(FakeES.all.length >= 3, true, 'a few streams were tried first');
  rt.close();
});

test('sync.reset calls onReset with the head and continues from it', async () => {
  const resets = [];
  const { rt, events } = setup({ onReset: (r) => resets.push(r.cursor) });
  await until('a stream', () => FakeES.all.length === 1);
  const es = FakeES.last();
  es.ready('old-9');
  es.emit('sync.reset', { reason: 'cursor_expired', head: 'new-3' }, 'new-3');
  assert.deepEqual(resets, ['new-3']);
  assert.equal(rt.cursor, 'new-3');
  es.event('new-4');
  assert.deepEqual(events, ['new-4']);
  rt.close();
});

test('a silent stream is treated as dropped', async () => {
  const { rt } = setup();
  await until('a stream', () => FakeES.all.length === 1);
  FakeES.last().ready();
  await until('live', () => rt.status.state === 'live');
  await until('reconnecting after the stall', () => rt.status.state === 'reconnecting' && rt.status.reason === 'stalled');
  assert.equal(FakeES.all[0].closed, true);
  rt.close();
});

test('heartbeats keep a quiet stream alive', async () => {
  const { rt } = setup();
  await until('a stream', () => FakeES.all.length === 1);
  const es = FakeES.last();
  es.ready();
  const beat = setInterval(() => es.emit('heartbeat', {}), 20);
  await new Promise((r) => setTimeout(r, 400)); // twice the stall timeout
  clearInterval(beat);
  assert.equal(rt.status.state, 'live');
  rt.close();
});

test('optimistic changes are confirmed by their event or rolled back', async () => {
  const { rt } = setup();
  await until('a stream', () => FakeES.all.length === 1);
  const es = FakeES.last();
  es.ready();
  const log = [];
  const a = rt.optimistic({ apply: () => log.push('apply a'), confirm: (e) => log.push('confirm a ' + e.id), rollback: () => log.push('rollback a'), timeout: 1000 });
  rt.optimistic({ correlationId: 'c-b', apply: () => log.push('apply b'), confirm: () => log.push('confirm b'), rollback: () => log.push('rollback b'), timeout: 20 });
  es.event('h-1', 'chat.message', { correlationId: a.correlationId });
  await until('rollback of b', () => log.includes('rollback b'));
  assert.deepEqual(log, ['apply a', 'apply b', 'confirm a h-1', 'rollback b']);
  rt.close();
});

test('a listener that throws does not stop the others or throw into the page', async () => {
  const errors = [];
  const { rt, events } = setup({ onError: (e) => errors.push(e.message) });
  rt.on('chat.message', () => {
    throw new Error('page bug');
  });
  await until('a stream', () => FakeES.all.length === 1);
  const es = FakeES.last();
  es.ready();
  es.event('h-1');
  assert.deepEqual(events, ['h-1']);
  assert.deepEqual(errors, ['page bug']);
  rt.close();
});

test('close stops everything', async () => {
  const { rt } = setup();
  await until('a stream', () => FakeES.all.length === 1);
  rt.close();
  assert.equal(FakeES.all[0].closed, true);
  assert.equal(rt.status.state, 'offline');
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(FakeES.all.length, 1);
});

test('ephemeral events (presence, typing) reach listeners without moving the cursor', async () => {
  const { rt, events } = setup();
  const seen = [];
  rt.on('presence.changed', (e) => seen.push(e.data.away.join()));
  rt.on('typing.started', (e) => seen.push('typing ' + e.data.userId));
  await until('a stream', () => FakeES.all.length === 1);
  const es = FakeES.last();
  es.ready('h-1');
  es.emit('presence.changed', { type: 'presence.changed', workspaceId: 'ws', data: { online: [], away: ['u'], busy: [], offline: [] } });
  es.emit('typing.started', { type: 'typing.started', workspaceId: 'ws', data: { chatId: 'c', userId: 'u' } });
  es.emit('presence.changed', { type: 'presence.changed', workspaceId: 'ws', data: { online: [], away: ['u'], busy: [], offline: [] } });
  assert.deepEqual(seen, ['u', 'typing u', 'u'], 'never deduplicated: they have no id');
  assert.equal(rt.cursor, 'h-1');
  assert.deepEqual(events, [], "'*' is for durable events");
  rt.close();
});

test('the resume point moves past events hidden from a filtered stream (id-only frames)', async () => {
  const { rt } = setup();
  await until('a stream', () => FakeES.all.length === 1);
  const es = FakeES.last();
  es.ready('h-1');
  es.event('h-2', 'approval.created');
  assert.equal(rt.cursor, 'h-2');
  // The server wrote "id: h-9" (hidden events 3..9), then a heartbeat: the
  // browser gives the heartbeat lastEventId h-9.
  es.emit('heartbeat', {}, 'h-9');
  assert.equal(rt.cursor, 'h-9');
  // An ephemeral event carries the stream's last id the same way.
  es.emit('presence.changed', { type: 'presence.changed', workspaceId: 'ws', data: { online: [], away: [], busy: [], offline: [] } }, 'h-12');
  assert.equal(rt.cursor, 'h-12');
  // A heartbeat before any id (a resumed stream) leaves it alone.
  es.emit('heartbeat', {}, '');
  assert.equal(rt.cursor, 'h-12');
  rt.close();
});

// A fetch that sells tickets (and answers polls with nothing), recording
// every request.
function ticketServer(log, { status = 201 } = {}) {
  let n = 0;
  return async (url, init = {}) => {
    const u = new URL(url);
    log.push({ url: u, method: init.method || 'GET', auth: (init.headers || {}).Authorization, body: init.body });
    if (u.pathname.endsWith('/stream-tickets')) {
      if (status !== 201) return response(status, { code: 'not_found' });
      n += 1;
      return response(201, { ticket: 'tk' + n, expiresAt: new Date(Date.now() + 30000).toISOString() });
    }
    return response(200, { events: [], nextCursor: 'h-0', hasMore: false, reset: false });
  };
}

test('streams with a ticket bought with the token in a header: no token in any URL', async () => {
  const requests = [];
  let tokens = 0;
  const { rt } = setup({ tickets: true, token: undefined, getToken: async () => `secret-token-${++tokens}`, types: ['chat.*', 'approval.*'] }, ticketServer(requests));
  await until('a stream', () => FakeES.all.length === 1);
  const es = FakeES.last();
  const buy = requests.find((r) => r.url.pathname === '/v1/workspaces/ws/stream-tickets');
  assert.ok(buy, 'a ticket was bought');
  assert.equal(buy.method, 'POST');
  assert.equal(buy.auth, 'Bearer secret-token-1');
  assert.deepEqual(JSON.parse(buy.body), { types: 'chat.*,approval.*' });
  assert.equal(es.url.searchParams.get('ticket'), 'tk1');
  assert.equal(es.url.searchParams.get('access_token'), null);
  for (const u of [...requests.map((r) => r.url), ...FakeES.all.map((e) => e.url)]) assert.ok(!u.href.includes('secret-token'), `a token in ${u.href}`);
  es.ready('h-1');
  await until('live', () => rt.status.state === 'live');
  rt.close();
});

test('falls back to access_token on a server without tickets, and asks only once', async () => {
  const requests = [];
  const { rt } = setup({ tickets: true }, ticketServer(requests, { status: 404 }));
  await until('a stream', () => FakeES.all.length === 1);
  assert.equal(FakeES.last().url.searchParams.get('access_token'), 't');
  FakeES.last().ready('h-1');
  await until('live', () => rt.status.state === 'live');
  FakeES.last().fail();
  await until('a second stream', () => FakeES.all.length === 2);
  assert.equal(FakeES.last().url.searchParams.get('access_token'), 't');
  assert.equal(requests.filter((r) => r.url.pathname.endsWith('/stream-tickets')).length, 1);
  rt.close();
});

test('a refused ticket is a failed attempt, retried with a fresh token', async () => {
  const requests = [];
  const { rt, statuses } = setup({ tickets: true }, ticketServer(requests, { status: 401 }));
  await until('reconnecting', () => statuses.some((s) => s.state === 'reconnecting' && s.reason === 'no ticket'));
  await until('another ticket request', () => requests.filter((r) => r.url.pathname.endsWith('/stream-tickets')).length >= 2);
  assert.equal(FakeES.all.length, 0);
  rt.close();
});

test('on auth.expired it renews the token and resumes from its last id at once, without a gap, a repeat or a reconnecting status', async () => {
  const requests = [];
  let tokens = 0;
  const { rt, statuses, events } = setup({ tickets: true, token: undefined, getToken: async () => `tok${++tokens}` }, ticketServer(requests));
  await until('a stream', () => FakeES.all.length === 1);
  const es = FakeES.last();
  es.ready('h-0');
  es.event('h-1');
  es.event('h-2');
  await until('live', () => rt.status.state === 'live');
  const before = statuses.length;
  es.emit('auth.expired', { reason: 'token_expired' });
  await until('a renewed stream', () => FakeES.all.length === 2);
  assert.ok(es.closed, 'the expired stream is closed');
  const es2 = FakeES.last();
  assert.equal(es2.url.searchParams.get('ticket'), 'tk2');
  assert.equal(es2.url.searchParams.get('lastEventId'), 'h-2');
  const buys = requests.filter((r) => r.url.pathname.endsWith('/stream-tickets'));
  assert.deepEqual(buys.map((r) => r.auth), ['Bearer tok1', 'Bearer tok2']);
  es2.ready('h-2');
  es2.event('h-2'); // a repeat is dropped
  es2.event('h-3');
  assert.deepEqual(events, ['h-1', 'h-2', 'h-3']);
  assert.ok(statuses.slice(before).every((s) => s.state === 'live'), `statuses during renewal: ${JSON.stringify(statuses.slice(before))}`);
  rt.close();
});
