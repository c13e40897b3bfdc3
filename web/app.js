// The dashboard: an approvals queue, agent statuses, a notification badge
// and a chat panel, kept live by realtime.js.
//
// Configuration comes from the URL, so the page can be embedded or tested
// without a build step: the fragment carries the token and workspace
// (#token=...&workspace=..., never sent to a server), and query parameters
// tune the client (?initialDelay=200&maxAttempts=4&...). In --dev mode the
// server puts a dev token in a <meta> tag instead.
import { connect, newCorrelationId } from '/client/realtime.js';

const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};

const frag = new URLSearchParams(location.hash.slice(1));
const query = new URLSearchParams(location.search);
const devMeta = document.querySelector('meta[name="realtime-dev-token"]');
const token = frag.get('token') || (devMeta && devMeta.content) || '';
const workspace = frag.get('workspace') || query.get('workspace') || 'demo';
const dev = !!devMeta && !frag.get('token');
const user = subjectOf(token);

function subjectOf(tok) {
  try {
    const p = tok.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(p + '='.repeat((4 - (p.length % 4)) % 4))).sub || '';
  } catch (_) {
    return '';
  }
}

function numberOption(name) {
  const v = query.get(name);
  return v === null || v === '' || Number.isNaN(Number(v)) ? undefined : Number(v);
}

const api = (path) => '/v1/workspaces/' + encodeURIComponent(workspace) + path;
const auth = () => ({ Authorization: 'Bearer ' + token });

// ---- state, folded from events ------------------------------------------

const state = { approvals: new Map(), agents: new Map(), notifications: 0, chat: new Map(), people: new Map(), typing: new Map() };

const handlers = {
  'approval.created': (e) => upsertApproval(e.data, true),
  'approval.updated': (e) => upsertApproval(e.data, false),
  'approval.deleted': (e) => removeApproval(e.data.id),
  'agent.status.changed': (e) => setAgent(e.data),
  'notification.new': (e) => addNotification(e),
  'chat.message': (e) => addChat(e),
  'presence.changed': (e) => applyPresence(e.data),
  'typing.started': (e) => setTyping(e.data, true),
  'typing.stopped': (e) => setTyping(e.data, false),
};

// ---- presence and typing ------------------------------------------------
// The stream asks for them (types=*); a presence.changed event carries
// every change of an interval, grouped by new status. GET .../presence is
// the full state, read at start and whenever the stream comes back, since
// changes made while it was away are not replayed.

const PRESENT = ['online', 'away', 'busy'];

function applyPresence(d) {
  for (const status of PRESENT) for (const u of d[status] || []) state.people.set(u, status);
  for (const u of d.offline || []) state.people.delete(u);
  renderPeople();
}

async function loadPresence() {
  const res = await fetch(api('/presence'), { headers: auth() });
  if (!res.ok) throw new Error('presence: ' + res.status);
  const body = await res.json();
  state.people.clear();
  for (const p of body.users) state.people.set(p.userId, p.status);
  renderPeople();
}

function renderPeople() {
  const list = $('people');
  for (const c of [...list.children]) if (!c.classList.contains('empty')) c.remove();
  const others = [...state.people.entries()].sort(([a], [b]) => a.localeCompare(b));
  for (const [u, status] of others) {
    const row = el('li', 'person');
    row.dataset.user = u;
    row.dataset.status = status;
    row.append(el('span', 'dot dot-' + status), el('span', 'name', u === user ? u + ' (you)' : u), el('span', 'state', status));
    list.append(row);
  }
  list.querySelector('.empty').classList.toggle('hidden', others.length > 0);
  $('people-count').textContent = String(others.length);
}

function setTyping(d, on) {
  if (d.chatId !== 'general' || d.userId === user) return;
  clearTimeout(state.typing.get(d.userId));
  if (on) {
    // The server says when typing stops; the timer only covers a lost stop.
    state.typing.set(d.userId, setTimeout(() => setTyping(d, false), 10000));
  } else {
    state.typing.delete(d.userId);
  }
  const who = [...state.typing.keys()].sort();
  $('typing').textContent = who.length === 0 ? '' : who.join(', ') + (who.length === 1 ? ' is typing…' : ' are typing…');
}

function apply(e) {
  const h = handlers[e.type];
  if (h) h(e);
}

function upsertApproval(d, created) {
  const list = $('approvals');
  let card = list.querySelector(`[data-id="${CSS.escape(d.id)}"]`);
  const status = d.status || (created ? 'pending' : 'updated');
  if (!card) {
    card = el('article', 'card approval enter');
    card.dataset.id = d.id;
    const left = el('div');
    left.append(el('div', 'title'), el('div', 'meta'));
    card.append(left, el('span', 'status'));
    card.addEventListener('animationend', () => card.classList.remove('enter', 'changed'));
    list.prepend(card);
  } else if (!created) {
    card.classList.add('changed');
  }
  const prev = state.approvals.get(d.id) || {};
  const merged = { ...prev, ...d, status };
  state.approvals.set(d.id, merged);
  card.querySelector('.title').textContent = merged.title || d.id;
  card.querySelector('.meta').textContent = merged.requestedBy ? 'requested by ' + merged.requestedBy : d.id;
  const badge = card.querySelector('.status');
  badge.textContent = status;
  badge.className = 'status status-' + status.replace(/[^a-z-]/g, '');
  card.dataset.status = status;
  refreshCounts();
}

function removeApproval(id) {
  state.approvals.delete(id);
  const card = $('approvals').querySelector(`[data-id="${CSS.escape(id)}"]`);
  if (card) {
    card.dataset.removed = 'true';
    card.classList.add('leave');
    // Removed when the animation ends, or at once where there is none.
    const done = () => card.remove();
    card.addEventListener('animationend', done, { once: true });
    setTimeout(done, 400);
  }
  refreshCounts();
}

function setAgent(d) {
  const list = $('agents');
  let row = list.querySelector(`[data-agent="${CSS.escape(d.agentId)}"]`);
  if (!row) {
    row = el('li', 'agent');
    row.dataset.agent = d.agentId;
    row.append(el('span', 'dot'), el('span', 'name'), el('span', 'state'));
    list.append(row);
  }
  row.querySelector('.dot').className = 'dot dot-' + d.status;
  row.querySelector('.name').textContent = d.name || d.agentId;
  row.querySelector('.state').textContent = d.status;
  row.dataset.status = d.status;
  state.agents.set(d.agentId, d);
  refreshCounts();
}

function addNotification(e) {
  // The server only sends this page notifications meant for its user (or
  // for everyone); nothing to filter here.
  state.notifications += 1;
  const item = el('li', 'notification', e.data.title || e.data.body || 'New notification');
  item.dataset.id = e.data.id;
  $('notifications').prepend(item);
  $('notifications-panel').classList.remove('hidden');
  refreshCounts();
}

function addChat(e) {
  const d = e.data;
  let msg = state.chat.get(d.id);
  if (!msg) {
    msg = el('div', 'msg');
    msg.dataset.id = d.id;
    msg.append(el('span', 'author'), el('span', 'text'));
    $('chat').append(msg);
    state.chat.set(d.id, msg);
  }
  msg.classList.remove('pending', 'failed');
  msg.dataset.eventId = e.id;
  msg.querySelector('.author').textContent = d.author || 'someone';
  msg.querySelector('.text').textContent = d.text;
  msg.scrollIntoView({ block: 'nearest' });
  refreshCounts();
}

function refreshCounts() {
  $('approvals-count').textContent = String(state.approvals.size);
  const badge = $('notif-badge');
  badge.textContent = String(state.notifications);
  badge.classList.toggle('hidden', state.notifications === 0);
  for (const [list, has] of [['approvals', state.approvals.size], ['agents', state.agents.size], ['chat', state.chat.size]]) {
    const empty = $(list).querySelector('.empty');
    if (empty) empty.classList.toggle('hidden', has > 0);
  }
}

function clearState() {
  state.approvals.clear();
  state.agents.clear();
  state.chat.clear();
  state.notifications = 0;
  for (const id of ['approvals', 'agents', 'chat']) for (const c of [...$(id).children]) if (!c.classList.contains('empty')) c.remove();
  $('notifications').replaceChildren();
  refreshCounts();
}

// loadHistory folds every retained event into the page and returns the
// cursor to go live from.
async function loadHistory() {
  let cursor = '0';
  for (;;) {
    const res = await fetch(api('/events?limit=1000&cursor=' + encodeURIComponent(cursor)), { headers: auth(), cache: 'no-store' });
    if (!res.ok) throw new Error('history: ' + res.status);
    const page = await res.json();
    for (const e of page.events) apply(e);
    cursor = page.nextCursor;
    if (!page.hasMore) return cursor;
  }
}

// ---- connection indicator ---------------------------------------------

let countdown = 0;
function showStatus(s) {
  const conn = $('conn');
  const text = $('conn-text');
  const note = $('rt-note');
  clearInterval(countdown);
  $('retry').classList.add('hidden');
  note.classList.add('hidden');
  note.classList.remove('bad');
  conn.dataset.state = s.state;
  switch (s.state) {
    case 'live':
      conn.className = 'conn ' + (s.transport === 'polling' ? 'conn-polling' : 'conn-live');
      text.textContent = s.transport === 'polling' ? 'Live (polling)' : 'Live';
      conn.dataset.transport = s.transport;
      if (s.transport === 'polling') {
        note.textContent = 'Streaming is unavailable on this connection, so updates arrive by polling and may take a moment longer.';
        note.classList.remove('hidden');
      }
      break;
    case 'reconnecting': {
      conn.className = 'conn conn-reconnecting';
      const render = () => {
        const secs = Math.max(0, Math.ceil((s.nextAt - Date.now()) / 1000));
        text.textContent = `Reconnecting… (attempt ${s.attempt}/${s.maxAttempts}, next in ${secs}s)`;
      };
      render();
      countdown = setInterval(render, 250);
      conn.dataset.attempt = String(s.attempt);
      conn.dataset.delay = String(s.delay);
      break;
    }
    case 'offline':
      conn.className = 'conn conn-offline';
      text.textContent = 'Connection lost';
      $('retry').classList.remove('hidden');
      note.textContent = 'Real-time updates are unavailable. What you see may be out of date; press Retry to reconnect.';
      note.classList.add('bad');
      note.classList.remove('hidden');
      break;
    default:
      conn.className = 'conn conn-connecting';
      text.textContent = 'Connecting…';
  }
}

// ---- simulate (dev mode) ------------------------------------------------

let simN = 0;
async function publish(body) {
  const res = await fetch(api('/events'), {
    method: 'POST',
    headers: { ...auth(), 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!res.ok) throw new Error('publish: ' + res.status);
  return res.json();
}

const statuses = ['running', 'idle', 'paused', 'error', 'offline'];
const simulations = {
  'approval.created': () => {
    simN += 1;
    const who = ['Ada', 'Grace', 'Linus', 'Barbara'][simN % 4];
    return { type: 'approval.created', data: { id: 'apr-' + Date.now().toString(36) + simN, title: ['Deploy to production', 'Refund order #' + (1000 + simN), 'Grant admin access', 'Increase budget'][simN % 4], status: 'pending', requestedBy: who } };
  },
  'approval.updated': () => {
    const pending = [...state.approvals.values()].find((a) => a.status === 'pending');
    return pending && { type: 'approval.updated', data: { id: pending.id, status: 'approved' } };
  },
  'approval.deleted': () => {
    const ids = [...state.approvals.keys()];
    return ids.length ? { type: 'approval.deleted', data: { id: ids[ids.length - 1] } } : null;
  },
  'agent.status.changed': () => {
    simN += 1;
    const agent = 'agent-' + ((simN % 3) + 1);
    const prev = state.agents.get(agent);
    // A first report is 'running' for one agent in three, and each later
    // one moves on through the cycle.
    const status = prev ? statuses[(statuses.indexOf(prev.status) + 1) % statuses.length] : statuses[simN % 3];
    return { type: 'agent.status.changed', data: { agentId: agent, name: ['Indexer', 'Summariser', 'Triage bot'][simN % 3], status } };
  },
  'notification.new': () => ({ type: 'notification.new', targetUserId: user, data: { id: 'n-' + newCorrelationId().slice(0, 8), title: 'Your approval was requested' } }),
  'notification.other': () => ({ type: 'notification.new', targetUserId: 'someone-else', data: { id: 'n-' + newCorrelationId().slice(0, 8), title: 'Not for you' } }),
  'chat.message': () => {
    simN += 1;
    return { type: 'chat.message', data: { chatId: 'general', id: 'm-' + newCorrelationId().slice(0, 8), author: 'Grace', text: ['Deploy looks good.', 'Can someone review the refund?', 'Agent 2 is back.'][simN % 3] } };
  },
};

// ---- start ----------------------------------------------------------------

async function main() {
  $('workspace-name').textContent = workspace;
  if (!token) {
    $('signin').classList.remove('hidden');
    $('app').classList.add('hidden');
    showStatus({ state: 'offline' });
    $('retry').classList.add('hidden');
    return;
  }
  $('user-name').textContent = user;
  let cursor = null;
  try {
    cursor = await loadHistory();
  } catch (_) {
    // Start live anyway; the client reports the connection state.
  }
  const rt = connect({
    workspaceId: workspace,
    token,
    cursor,
    types: ['*'], // every event, and presence and typing too
    initialDelay: numberOption('initialDelay'),
    maxDelay: numberOption('maxDelay'),
    maxAttempts: numberOption('maxAttempts'),
    firstFrameTimeout: numberOption('firstFrameTimeout'),
    streamRetryInterval: numberOption('streamRetryInterval'),
    stallTimeout: numberOption('stallTimeout'),
    pollWait: numberOption('pollWait'),
    onReset: async () => {
      // History was lost: rebuild the page from what the log holds now.
      clearState();
      try {
        await loadHistory();
      } catch (_) { /* the status shows what is wrong */ }
    },
  });
  for (const type of Object.keys(handlers)) rt.on(type, apply);
  let wasLive = false;
  rt.onStatus((s) => {
    showStatus(s);
    // Presence changes are not replayed: whenever the stream (re)starts,
    // read the full state.
    const live = s.state === 'live' || s.state === 'polling';
    if (live && !wasLive) loadPresence().catch(() => {});
    wasLive = live;
  });
  $('retry').addEventListener('click', () => rt.retry());
  window.realtime = rt; // for debugging from the console

  // Typing: said at most every 3s while keys are pressed, stopped on send.
  let typingSent = 0;
  const sendTyping = (on) => fetch(api('/chats/general/typing'), {
    method: 'POST', headers: { ...auth(), 'Content-Type': 'application/json' }, body: JSON.stringify({ typing: on }),
  }).catch(() => {});
  $('composer-text').addEventListener('input', () => {
    if (Date.now() - typingSent < 3000) return;
    typingSent = Date.now();
    sendTyping(true);
  });
  $('composer').classList.remove('hidden');
  $('composer').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const input = $('composer-text');
    const text = input.value.trim();
    if (!text) return;
    input.value = '';
    if (typingSent) {
      typingSent = 0;
      sendTyping(false);
    }
    const id = 'm-' + newCorrelationId().slice(0, 12);
    // Shown at once, confirmed by the server's event or marked failed.
    const p = rt.optimistic({
      apply: () => addChat({ id: '', data: { id, author: user, text } }),
      rollback: () => state.chat.get(id) && state.chat.get(id).classList.add('failed'),
      timeout: 10000,
    });
    state.chat.get(id).classList.add('pending');
    publish({ type: 'chat.message', correlationId: p.correlationId, data: { chatId: 'general', id, author: user, text } }).catch(() => {
      p.cancel();
      state.chat.get(id).classList.add('failed');
    });
  });

  if (dev) {
    $('simulate').classList.remove('hidden');
    $('simulate').addEventListener('click', (ev) => {
      const kind = ev.target && ev.target.dataset && ev.target.dataset.sim;
      const body = kind && simulations[kind] && simulations[kind]();
      if (body) publish(body).catch(() => {});
    });
  }
}

main();
