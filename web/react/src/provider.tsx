import { createContext, useContext, useEffect, useMemo, useRef, useState, type ReactNode } from 'react';
import { useQueryClient, type QueryClient, type QueryKey, type Query } from '@tanstack/react-query';
import { connect as defaultConnect, type Connection, type ConnectOptions, type RealtimeEvent, type ResetInfo, type Status } from '../../realtime.js';
import { defaultQueryKeys, type QueryKeys } from './keys.js';

/** What POST …/events takes (openapi.yaml's PublishRequest). */
export interface PublishBody<D = Record<string, unknown>> {
  type: string;
  data: D;
  targetUserId?: string;
  correlationId?: string;
  source?: string;
}

/** A publish the server refused or that never reached it. */
export class PublishError extends Error {
  /** The HTTP status; 0 when the request failed. */
  readonly status: number;
  /** The problem+json `code`, when the server gave one. */
  readonly code: string | undefined;
  constructor(message: string, status: number, code?: string) {
    super(message);
    this.name = 'PublishError';
    this.status = status;
    this.code = code;
  }
}

export type ClientOptions = Omit<Partial<ConnectOptions>, 'workspaceId' | 'getToken' | 'token' | 'baseUrl' | 'types' | 'onReset' | 'cursor'>;

export interface RealtimeProviderProps {
  /** The workspace to watch; a change closes the connection and opens another. */
  workspaceId: string;
  /** Returns the signed-in user's token; called on every (re)connect and request. */
  getToken: () => string | Promise<string>;
  /** The signed-in user; a change reconnects (with a fresh token). useRealtimeNotifications counts for this user. */
  userId?: string;
  /** Where the service is; '' (default) is this page's origin. */
  baseUrl?: string;
  /** Event types the stream asks for; presence and typing only when named ('*', 'presence.*', 'typing.*'). */
  types?: string[];
  /** Overrides of the cache keys the hooks patch. */
  queryKeys?: Partial<QueryKeys>;
  /** Default: the QueryClientProvider's. */
  queryClient?: QueryClient;
  /** Options passed to realtime.js's connect (backoff, timeouts, an injected EventSource or fetch). */
  options?: ClientOptions;
  /**
   * When a connection first goes live, refetch the workspace's queries that
   * were fetched (or started) before it: an event published between a fetch
   * and the stream's start would otherwise be missed. Default true.
   */
  refetchOnConnect?: boolean;
  /** Called after a reset has invalidated the workspace's queries. */
  onReset?: (info: ResetInfo) => void;
  /** Injectable connect, for tests. */
  connect?: (options: ConnectOptions) => Connection;
  children?: ReactNode;
}

export interface RealtimeContextValue {
  workspaceId: string;
  userId: string | undefined;
  status: Status;
  /** Subscribes to an event type ('*' for every log event, 'sync.reset'), across reconnects; returns the unsubscribe function. */
  on<D = Record<string, unknown>>(type: string, fn: (event: RealtimeEvent<D>) => void): () => void;
  /** Starts over now, with a fresh attempt budget (after 'offline'). */
  retry(): void;
  /** The live realtime.js connection; null between connections. */
  connection: Connection | null;
  keys: QueryKeys;
  queryClient: QueryClient;
  /** Whether the stream's types include this type (presence and typing are opt-in). */
  wants(type: string): boolean;
  /** fetch with the user's token, relative to /v1/workspaces/{workspaceId}. */
  request(path: string, init?: RequestInit): Promise<Response>;
  /** Publishes an event; resolves with the stored envelope, rejects with a PublishError. */
  publish<D = Record<string, unknown>>(body: PublishBody<D>): Promise<RealtimeEvent<D>>;
  /** Registers a key that a reset invalidates as well (the hooks call it); returns the unregister function. */
  track(key: QueryKey): () => void;
}

const RealtimeContext = createContext<RealtimeContextValue | null>(null);

/** useRealtime returns the provider's connection state and helpers. */
export function useRealtime(): RealtimeContextValue {
  const v = useContext(RealtimeContext);
  if (!v) throw new Error('useRealtime must be used inside a <RealtimeProvider>');
  return v;
}

/** useRealtimeEvent calls fn for every event of type while the component is mounted. */
export function useRealtimeEvent<D = Record<string, unknown>>(type: string, fn: (event: RealtimeEvent<D>) => void): void {
  const { on } = useRealtime();
  const ref = useRef(fn);
  ref.current = fn;
  useEffect(() => on<D>(type, (e) => ref.current(e)), [on, type]);
}

type Listener = (event: any) => void;

// Hub keeps the page's subscriptions across connections: each connection
// gets one realtime.js listener per subscribed type, which fans out here.
class Hub {
  private listeners = new Map<string, Set<Listener>>();
  private conn: Connection | null = null;
  private wired = new Map<string, () => void>();
  constructor(private report: (err: unknown) => void) {}

  attach(conn: Connection): void {
    this.detach();
    this.conn = conn;
    for (const type of this.listeners.keys()) this.wire(type);
  }
  detach(): void {
    for (const off of this.wired.values()) off();
    this.wired.clear();
    this.conn = null;
  }
  on(type: string, fn: Listener): () => void {
    let set = this.listeners.get(type);
    if (!set) this.listeners.set(type, (set = new Set()));
    set.add(fn);
    this.wire(type);
    return () => {
      set.delete(fn);
    };
  }
  private wire(type: string): void {
    if (!this.conn || this.wired.has(type)) return;
    this.wired.set(type, this.conn.on(type, (e) => this.dispatch(type, e)));
  }
  private dispatch(type: string, e: unknown): void {
    const set = this.listeners.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(e);
      } catch (err) {
        this.report(err);
      }
    }
  }
}

function keyHasPrefix(key: QueryKey, prefix: QueryKey): boolean {
  if (prefix.length > key.length) return false;
  return prefix.every((p, i) => JSON.stringify(p) === JSON.stringify(key[i]));
}

/** typeMatches tells whether a stream asking for types receives type. */
export function typeMatches(types: readonly string[] | null | undefined, type: string): boolean {
  if (!types) return !type.startsWith('presence.') && !type.startsWith('typing.'); // null: every log type
  return types.some((t) => t === '*' || t === type || (t.endsWith('.*') && type.startsWith(t.slice(0, -1))));
}

/**
 * RealtimeProvider owns one realtime.js connection for workspaceId: it
 * opens it on mount, closes it on unmount, and replaces it when the
 * workspace, the user, the base URL or the types change. A sync.reset
 * invalidates the workspace's queries so that they refetch.
 */
export function RealtimeProvider(props: RealtimeProviderProps) {
  const { workspaceId, userId, baseUrl = '', types, children } = props;
  const qc = useQueryClient(props.queryClient);
  const latest = useRef(props);
  latest.current = props;
  const keys = useMemo<QueryKeys>(() => ({ ...defaultQueryKeys, ...props.queryKeys }), [props.queryKeys]);
  const keysRef = useRef(keys);
  keysRef.current = keys;
  const typesKey = types ? types.join(',') : '';
  const connectFn = props.connect || defaultConnect;

  const [hub] = useState(() => new Hub((err) => reportError(latest.current.options, err)));
  const tracked = useRef(new Map<string, { key: QueryKey; n: number }>());
  const [status, setStatus] = useState<Status>({ state: 'connecting' });
  const [connection, setConnection] = useState<Connection | null>(null);

  useEffect(() => {
    const { options } = latest.current;
    const typeList = typesKey ? typesKey.split(',') : undefined;
    // Every realtime query of the workspace: under its root key, and any
    // key a mounted hook uses elsewhere.
    const targets = () => {
      const root = keysRef.current.workspace(workspaceId);
      return [root, ...[...tracked.current.values()].map((t) => t.key).filter((k) => !keyHasPrefix(k, root))];
    };
    const invalidate = (predicate?: (q: Query) => boolean) => Promise.all(targets().map((queryKey) => qc.invalidateQueries({ queryKey, predicate })));
    // refetchBefore refetches what was fetched, or started fetching, by
    // since. A first fetch in flight is joined rather than restarted by a
    // refetch, so it is cancelled first.
    const refetchBefore = (since: number) => {
      const hit = new Set<Query>();
      for (const queryKey of targets())
        for (const q of qc.getQueryCache().findAll({ queryKey }))
          if (q.state.fetchStatus === 'fetching' || (q.state.dataUpdatedAt > 0 && q.state.dataUpdatedAt <= since)) hit.add(q);
      for (const q of hit) if (q.state.fetchStatus === 'fetching' && q.state.data === undefined) void q.cancel({ revert: true });
      return invalidate((q) => hit.has(q));
    };
    const conn = connectFn({
      ...options,
      workspaceId,
      baseUrl,
      types: typeList,
      getToken: () => latest.current.getToken(),
    });
    hub.attach(conn);
    let liveSince = 0;
    const offStatus = conn.onStatus((s) => {
      setStatus(s);
      if (s.state === 'live' && liveSince === 0) {
        liveSince = Date.now();
        // Data fetched, or a fetch started, before the stream was live may
        // miss what was published in between.
        if (latest.current.refetchOnConnect ?? true) void refetchBefore(liveSince);
      }
    });
    const offReset = conn.on('sync.reset', (info: ResetInfo) => {
      void invalidate().then(() => latest.current.onReset && latest.current.onReset(info));
    });
    setConnection(conn);
    return () => {
      offStatus();
      offReset();
      hub.detach();
      conn.close();
      setConnection(null);
      setStatus({ state: 'connecting' });
    };
    // userId is a dependency on purpose: another user gets another connection.
  }, [workspaceId, userId, baseUrl, typesKey, connectFn, qc, hub]);

  const on = useMemo(() => (type: string, fn: Listener) => hub.on(type, fn), [hub]);
  const track = useMemo(
    () => (key: QueryKey) => {
      const h = JSON.stringify(key);
      const t = tracked.current.get(h);
      if (t) t.n += 1;
      else tracked.current.set(h, { key, n: 1 });
      return () => {
        const t = tracked.current.get(h);
        if (t && --t.n === 0) tracked.current.delete(h);
      };
    },
    [],
  );
  const { request, publish } = useMemo(() => {
    const request = async (path: string, init: RequestInit = {}) => {
      const p = latest.current;
      const headers = new Headers(init.headers);
      headers.set('Authorization', 'Bearer ' + (await p.getToken()));
      if (init.body !== undefined && !headers.has('Content-Type')) headers.set('Content-Type', 'application/json');
      const doFetch = (p.options && p.options.fetch) || ((...a: Parameters<typeof fetch>) => globalThis.fetch(...a));
      return doFetch(baseUrl + '/v1/workspaces/' + encodeURIComponent(workspaceId) + path, { ...init, headers });
    };
    const publish = async <D,>(body: PublishBody<D>): Promise<RealtimeEvent<D>> => {
      let res: Response;
      try {
        res = await request('/events', { method: 'POST', body: JSON.stringify(body) });
      } catch (err) {
        throw new PublishError('publish failed: ' + String(err), 0);
      }
      if (!res.ok) {
        let code: string | undefined;
        let detail = '';
        try {
          const problem = await res.json();
          code = problem.code;
          detail = problem.detail || problem.title || '';
        } catch {
          /* not problem+json */
        }
        throw new PublishError(`publish refused: ${res.status}${code ? ' ' + code : ''}${detail ? ': ' + detail : ''}`, res.status, code);
      }
      return res.json();
    };
    return { request, publish };
  }, [workspaceId, baseUrl]);
  const retry = useMemo(() => () => connection && connection.retry(), [connection]);
  const wants = useMemo(() => {
    const typeList = typesKey ? typesKey.split(',') : null;
    return (type: string) => typeMatches(typeList, type);
  }, [typesKey]);
  const value = useMemo<RealtimeContextValue>(
    () => ({ workspaceId, userId, status, connection, keys, queryClient: qc, on, retry, wants, request, publish, track }),
    [workspaceId, userId, status, connection, keys, qc, on, retry, wants, request, publish, track],
  );

  return <RealtimeContext.Provider value={value}>{children}</RealtimeContext.Provider>;
}

function reportError(options: ClientOptions | undefined, err: unknown) {
  try {
    if (options && options.onError) options.onError(err);
    else console.warn('realtime: a listener threw', err);
  } catch {
    /* nothing left to tell */
  }
}
