import { useCallback, useMemo, useRef, useState, type FormEvent } from 'react';
import {
  ConnectionStatus,
  RealtimeProvider,
  approvalsReducer,
  agentsReducer,
  chatReducer,
  newCorrelationId,
  notificationsReducer,
  useRealtime,
  useRealtimeAgents,
  useRealtimeApprovals,
  useRealtimeChat,
  useRealtimeNotifications,
  type Approval,
  type AgentStatus,
  type ChatMessage,
  type ClientOptions,
  type Notification,
  type RealtimeEvent,
} from '../../src/index.js';

export interface Config {
  token: string;
  workspaceId: string;
  baseUrl: string;
  options: ClientOptions;
  confirmTimeout?: number;
}

function subjectOf(token: string): string {
  try {
    const p = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(p + '='.repeat((4 - (p.length % 4)) % 4))).sub || '';
  } catch {
    return '';
  }
}

// How often each query ran, for the browser tests (a reset refetches).
const fetches: Record<string, number> = {};
(window as unknown as { fetches: typeof fetches }).fetches = fetches;
let resets = 0;

// The service has no approvals or chat API of its own: this app's "server
// state" is what the workspace's log still holds, folded with the
// package's reducers. A real app's queryFn calls its own API instead.
function useLogQuery<T>(name: string, types: string, empty: T, reduce: (acc: T, e: RealtimeEvent<any>) => T) {
  const { request } = useRealtime();
  return useCallback(async (): Promise<T> => {
    fetches[name] = (fetches[name] || 0) + 1;
    let acc = empty;
    let cursor = '0';
    for (;;) {
      const res = await request(`/events?limit=1000&types=${encodeURIComponent(types)}&cursor=${encodeURIComponent(cursor)}`, { cache: 'no-store' });
      if (!res.ok) throw new Error(`${name}: ${res.status}`);
      const page = await res.json();
      for (const e of page.events) acc = reduce(acc, e);
      cursor = page.nextCursor;
      if (!page.hasMore) return acc;
    }
  }, [name, types, empty, reduce, request]);
}

const NONE: never[] = [];

export function App({ config }: { config: Config }) {
  const [mounted, setMounted] = useState(true);
  const user = subjectOf(config.token);
  const getToken = useCallback(() => config.token, [config.token]);
  if (!config.token) {
    return (
      <main className="signin">
        <h1>realtime · React example</h1>
        <p>
          No token. Run <code>make run</code> and open this page again, or open it with <code>#token=&lt;JWT&gt;</code>.
        </p>
      </main>
    );
  }
  return (
    <>
      <header>
        <h1>realtime · React</h1>
        <span className="who">
          {user} @ <b>{config.workspaceId}</b>
        </span>
        <button id="toggle" type="button" onClick={() => setMounted((m) => !m)}>
          {mounted ? 'Disconnect (unmount the provider)' : 'Connect'}
        </button>
      </header>
      {mounted ? (
        <RealtimeProvider
          workspaceId={config.workspaceId}
          userId={user}
          getToken={getToken}
          baseUrl={config.baseUrl}
          types={['*']} // every event, and presence and typing too
          options={config.options}
          onReset={() => {
            resets += 1;
            document.body.dataset.resets = String(resets);
          }}
        >
          <ConnectionStatus className="conn" classNames={{ retry: 'retry' }} />
          <Simulate user={user} />
          <main>
            <Approvals />
            <Agents />
            <Notifications user={user} />
            <Chat confirmTimeout={config.confirmTimeout} />
          </main>
        </RealtimeProvider>
      ) : (
        <p id="unmounted">The provider is unmounted: no connection.</p>
      )}
    </>
  );
}

function Approvals() {
  const queryFn = useLogQuery<Approval[]>('approvals', 'approval.*', NONE, approvalsReducer);
  const { data = NONE, status } = useRealtimeApprovals({ queryFn });
  return (
    <section>
      <h2>
        Approvals <span className="count">{data.length}</span>
      </h2>
      <ul id="approvals" data-query={status}>
        {data.map((a) => (
          <li key={a.id} data-id={a.id} data-status={a.status}>
            <span className="title">{a.title || a.id}</span>
            <span className={'status status-' + (a.status || 'pending')}>{a.status || 'pending'}</span>
          </li>
        ))}
      </ul>
    </section>
  );
}

function Agents() {
  const queryFn = useLogQuery<AgentStatus[]>('agents', 'agent.*', NONE, agentsReducer);
  const { data = NONE } = useRealtimeAgents({ queryFn });
  return (
    <section>
      <h2>Agents</h2>
      <ul id="agents">
        {data.map((a) => (
          <li key={a.agentId} data-agent={a.agentId} data-status={a.status}>
            <span>
              <span className={'dot dot-' + a.status} />
              {a.name || a.agentId}
            </span>
            <span className="state">{a.status}</span>
          </li>
        ))}
      </ul>
    </section>
  );
}

function Notifications({ user }: { user: string }) {
  const reduce = useCallback((acc: Notification[], e: RealtimeEvent<Notification>) => notificationsReducer(acc, e, user), [user]);
  const queryFn = useLogQuery<Notification[]>('notifications', 'notification.*', NONE, reduce);
  const { notifications, unread, markAllRead } = useRealtimeNotifications({ queryFn });
  return (
    <section>
      <h2>
        Notifications <span id="unread" className={unread ? 'badge' : 'badge hidden'}>{unread}</span>
        <button type="button" onClick={markAllRead} disabled={!unread}>
          Mark all read
        </button>
      </h2>
      <ul id="notifications">
        {notifications.map((n) => (
          <li key={n.id} data-id={n.id} data-read={n.read ? 'true' : 'false'}>
            {n.title || n.body || n.id}
          </li>
        ))}
      </ul>
    </section>
  );
}

function Chat({ confirmTimeout }: { confirmTimeout?: number }) {
  const reduce = useCallback((acc: ChatMessage[], e: RealtimeEvent<ChatMessage>) => chatReducer(acc, e, 'general'), []);
  const queryFn = useLogQuery<ChatMessage[]>('chat', 'chat.*', NONE, reduce);
  const { messages, typing, send, setTyping } = useRealtimeChat('general', { queryFn, confirmTimeout });
  const [text, setText] = useState('');
  const [error, setError] = useState('');
  const typingSent = useRef(0);
  const submit = (ev: FormEvent) => {
    ev.preventDefault();
    const t = text.trim();
    if (!t) return;
    setText('');
    setError('');
    if (typingSent.current) {
      typingSent.current = 0;
      setTyping(false).catch(() => {});
    }
    send(t).catch((err) => {
      setText(t); // give the text back
      setError('Not sent: ' + err.message);
    });
  };
  return (
    <section className="chat">
      <h2>Chat</h2>
      <div id="chat">
        {messages.map((m) => (
          <div key={m.id} className={m.pending ? 'msg pending' : 'msg'} data-id={m.id} data-pending={m.pending ? 'true' : undefined} data-event-id={m.eventId}>
            <span className="author">{m.author || 'someone'}</span> <span className="text">{m.text}</span>
          </div>
        ))}
      </div>
      <div id="typing">{typing.length ? typing.join(', ') + (typing.length === 1 ? ' is typing…' : ' are typing…') : ''}</div>
      <form id="composer" onSubmit={submit}>
        <input
          id="composer-text"
          value={text}
          placeholder="Say something"
          onChange={(e) => {
            setText(e.target.value);
            if (Date.now() - typingSent.current > 3000) {
              typingSent.current = Date.now();
              setTyping(true).catch(() => {});
            }
          }}
        />
        <button type="submit">Send</button>
      </form>
      <div id="chat-error" role="alert">
        {error}
      </div>
    </section>
  );
}

// Simulate publishes one event of each type, as the dashboard's panel does.
function Simulate({ user }: { user: string }) {
  const { publish, queryClient, keys, workspaceId } = useRealtime();
  const [n, setN] = useState(0);
  const sims = useMemo(() => {
    const approvals = () => queryClient.getQueryData<Approval[]>(keys.approvals(workspaceId)) || [];
    return {
      'approval.created': () => ({ type: 'approval.created', data: { id: 'apr-' + newCorrelationId().slice(0, 8), title: ['Deploy to production', 'Refund order #1042', 'Grant admin access'][n % 3], status: 'pending' } }),
      'approval.updated': () => {
        const p = approvals().find((a) => a.status === 'pending');
        return p && { type: 'approval.updated', data: { id: p.id, status: 'approved' } };
      },
      'approval.deleted': () => {
        const a = approvals();
        return a.length ? { type: 'approval.deleted', data: { id: a[a.length - 1].id } } : undefined;
      },
      'agent.status.changed': () => ({ type: 'agent.status.changed', data: { agentId: 'agent-' + ((n % 3) + 1), status: (['running', 'idle', 'paused', 'error', 'offline'] as const)[n % 5] } }),
      'notification.new': () => ({ type: 'notification.new', targetUserId: user, data: { id: 'n-' + newCorrelationId().slice(0, 8), title: 'Your approval was requested' } }),
    };
  }, [n, queryClient, keys, workspaceId, user]);
  return (
    <nav className="simulate">
      Simulate:
      {Object.entries(sims).map(([name, make]) => (
        <button
          key={name}
          type="button"
          onClick={() => {
            setN(n + 1);
            const body = make();
            if (body) publish<Record<string, unknown>>(body).catch(() => {});
          }}
        >
          {name}
        </button>
      ))}
    </nav>
  );
}
