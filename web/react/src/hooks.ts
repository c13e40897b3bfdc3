import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { skipToken, useQuery, type QueryClient, type QueryFunction, type QueryKey, type UseQueryOptions, type UseQueryResult } from '@tanstack/react-query';
import { newCorrelationId, type EphemeralEvent, type RealtimeEvent } from '../../realtime.js';
import { useRealtime } from './provider.js';
import { useOptimisticEvent } from './optimistic.js';

// ---- data shapes (openapi.yaml's ApprovalData, AgentStatusData, ...) ----

export interface Approval {
  id: string;
  title?: string;
  status?: string;
  requestedBy?: string;
  [field: string]: unknown;
}

export type AgentState = 'idle' | 'running' | 'paused' | 'error' | 'offline';

export interface AgentStatus {
  agentId: string;
  status: AgentState;
  name?: string;
  [field: string]: unknown;
}

export interface Notification {
  id: string;
  title?: string;
  body?: string;
  /** Set by markRead; the service keeps no read state. */
  read?: boolean;
  targetUserId?: string;
  eventId?: string;
  timestamp?: string;
  [field: string]: unknown;
}

export interface ChatMessage {
  id: string;
  chatId: string;
  text: string;
  author?: string;
  /** The log event that carried it; absent while pending. */
  eventId?: string;
  correlationId?: string;
  timestamp?: string;
  /** Shown before the server confirmed it (useRealtimeChat's send). */
  pending?: boolean;
  [field: string]: unknown;
}

// ---- reducers: pure, idempotent (two hooks on one key patch it twice) ----

/** approvalsReducer applies approval.created (insert once, newest first), .updated (merge) and .deleted (remove). */
export function approvalsReducer(old: Approval[], e: RealtimeEvent<Approval>): Approval[] {
  const d = e.data;
  if (!d || typeof d.id !== 'string') return old;
  const i = old.findIndex((a) => a.id === d.id);
  switch (e.type) {
    case 'approval.created':
      return i >= 0 ? old : [d, ...old];
    case 'approval.updated': {
      if (i < 0) return [d, ...old]; // an update of one we never saw: show it
      const merged = { ...old[i], ...d };
      if (shallowEqual(merged, old[i])) return old;
      const next = old.slice();
      next[i] = merged;
      return next;
    }
    case 'approval.deleted':
      return i < 0 ? old : old.filter((a) => a.id !== d.id);
    default:
      return old;
  }
}

/** agentsReducer applies agent.status.changed: insert or merge by agentId. */
export function agentsReducer(old: AgentStatus[], e: RealtimeEvent<AgentStatus>): AgentStatus[] {
  const d = e.data;
  if (e.type !== 'agent.status.changed' || !d || typeof d.agentId !== 'string') return old;
  const i = old.findIndex((a) => a.agentId === d.agentId);
  if (i < 0) return [...old, d];
  const merged = { ...old[i], ...d };
  if (shallowEqual(merged, old[i])) return old;
  const next = old.slice();
  next[i] = merged;
  return next;
}

/** notificationsReducer applies notification.new for userId: insert once, newest first, unread. */
export function notificationsReducer(old: Notification[], e: RealtimeEvent<Notification>, userId?: string): Notification[] {
  const d = e.data;
  if (e.type !== 'notification.new' || !d || typeof d.id !== 'string') return old;
  if (e.targetUserId && userId !== undefined && e.targetUserId !== userId) return old; // someone else's
  if (old.some((n) => n.id === d.id)) return old;
  return [{ ...d, read: false, targetUserId: e.targetUserId, eventId: e.id, timestamp: e.timestamp }, ...old];
}

/** chatReducer applies chat.message of chatId: appended in log order, once per message id. */
export function chatReducer(old: ChatMessage[], e: RealtimeEvent<ChatMessage>, chatId: string): ChatMessage[] {
  const d = e.data;
  if (e.type !== 'chat.message' || !d || d.chatId !== chatId || typeof d.id !== 'string') return old;
  const msg: ChatMessage = { ...d, eventId: e.id, correlationId: e.correlationId, timestamp: e.timestamp };
  delete msg.pending;
  const i = old.findIndex((m) => m.id === d.id);
  if (i < 0) return [...old, msg];
  if (old[i].eventId === e.id) return old;
  const next = old.slice();
  next[i] = msg; // the same message again (an edit): in place
  return next;
}

function shallowEqual(a: Record<string, unknown>, b: Record<string, unknown>): boolean {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => Object.is(a[k], b[k]));
}

// ---- patching the cache ----

/**
 * patchQuery applies fn to the data under key. A fetch in flight may have
 * been answered before the event was appended, so it is restarted (its
 * answer would overwrite the patch); data not yet loaded is left to it.
 */
export function patchQuery<T>(qc: QueryClient, key: QueryKey, empty: T, fn: (old: T) => T): void {
  const state = qc.getQueryState<T>(key);
  if (state && state.fetchStatus === 'fetching') {
    if (state.data === undefined) {
      // A first fetch is not cancelled by a refetch, only joined: cancel it.
      void qc.cancelQueries({ queryKey: key, exact: true });
      void qc.invalidateQueries({ queryKey: key, exact: true });
      return;
    }
    qc.setQueryData<T>(key, (old) => fn(old === undefined ? empty : old));
    void qc.invalidateQueries({ queryKey: key, exact: true }); // cancels the fetch in flight
    return;
  }
  qc.setQueryData<T>(key, (old) => fn(old === undefined ? empty : old));
}

/** Options of the domain hooks: TanStack's useQuery options, with the key and fetcher optional. */
export type RealtimeQueryOptions<T> = Omit<UseQueryOptions<T, Error, T, QueryKey>, 'queryKey' | 'queryFn'> & {
  /** Overrides the provider's key for this hook. */
  queryKey?: QueryKey;
  /** Loads the current state (your API); without it the cache starts empty and only events fill it. */
  queryFn?: QueryFunction<T, QueryKey>;
};

// useLiveQuery is the query of a domain hook: key registered for resets,
// events of types patched into it.
function useLiveQuery<T>(
  key: QueryKey,
  empty: T,
  types: string[],
  reduce: (old: T, e: RealtimeEvent<any>) => T,
  options: RealtimeQueryOptions<T> | undefined,
): UseQueryResult<T, Error> {
  const rt = useRealtime();
  const qc = rt.queryClient;
  const hash = JSON.stringify(key);
  const reduceRef = useRef(reduce);
  reduceRef.current = reduce;
  const stableKey = useMemo(() => key, [hash]);
  useEffect(() => rt.track(stableKey), [rt.track, stableKey]);
  useEffect(() => {
    const offs = types.map((type) => rt.on(type, (e) => patchQuery<T>(qc, stableKey, empty, (old) => reduceRef.current(old, e))));
    return () => offs.forEach((off) => off());
    }, [rt.on, qc, stableKey, types.join(',')]);
  const { queryKey: _k, queryFn, ...rest } = options || {};
  return useQuery<T, Error, T, QueryKey>({
    ...rest,
    queryKey: stableKey,
    // Without a fetcher the cache is fed by events alone.
    ...(queryFn ? { queryFn } : { queryFn: skipToken, initialData: empty }),
  });
}

const EMPTY: never[] = [];

/** useRealtimeApprovals keeps the approvals list live: approval.created, .updated, .deleted. */
export function useRealtimeApprovals(options?: RealtimeQueryOptions<Approval[]>): UseQueryResult<Approval[], Error> {
  const { keys, workspaceId } = useRealtime();
  const key = options?.queryKey || keys.approvals(workspaceId);
  return useLiveQuery<Approval[]>(key, EMPTY, ['approval.created', 'approval.updated', 'approval.deleted'], approvalsReducer, options);
}

/** useRealtimeAgents keeps the agents' statuses live: agent.status.changed. */
export function useRealtimeAgents(options?: RealtimeQueryOptions<AgentStatus[]>): UseQueryResult<AgentStatus[], Error> {
  const { keys, workspaceId } = useRealtime();
  const key = options?.queryKey || keys.agents(workspaceId);
  return useLiveQuery<AgentStatus[]>(key, EMPTY, ['agent.status.changed'], agentsReducer, options);
}

export type RealtimeNotifications = UseQueryResult<Notification[], Error> & {
  notifications: Notification[];
  /** Unread notifications of the signed-in user. */
  unread: number;
  markRead(id: string): void;
  markAllRead(): void;
};

/** useRealtimeNotifications keeps the signed-in user's notifications and unread count live: notification.new. */
export function useRealtimeNotifications(options?: RealtimeQueryOptions<Notification[]>): RealtimeNotifications {
  const { keys, workspaceId, userId, queryClient: qc } = useRealtime();
  const key = options?.queryKey || keys.notifications(workspaceId, userId || '');
  const reduce = useCallback((old: Notification[], e: RealtimeEvent<Notification>) => notificationsReducer(old, e, userId), [userId]);
  const q = useLiveQuery<Notification[]>(key, EMPTY, ['notification.new'], reduce, options);
  const notifications = q.data || EMPTY;
  const mark = (pred: (n: Notification) => boolean) =>
    qc.setQueryData<Notification[]>(key, (old) => old && (old.some((n) => pred(n) && !n.read) ? old.map((n) => (pred(n) && !n.read ? { ...n, read: true } : n)) : old));
  return {
    ...q,
    notifications,
    unread: notifications.filter((n) => !n.read).length,
    markRead: (id: string) => mark((n) => n.id === id),
    markAllRead: () => mark(() => true),
  };
}

export interface ChatOptions extends RealtimeQueryOptions<ChatMessage[]> {
  /** How long someone shows as typing without a typing.stopped; 10 s by default (the server stops it after 5 s). */
  typingTimeout?: number;
  /** How long send() waits for its event before rolling back; 10 s by default. */
  confirmTimeout?: number;
}

export type RealtimeChat = UseQueryResult<ChatMessage[], Error> & {
  /** Confirmed messages in log order, then the pending ones. */
  messages: ChatMessage[];
  /** Who else is typing, sorted; empty unless the provider's types ask for typing. */
  typing: string[];
  /** Shows the message at once, publishes it, and resolves with its event; rolls back and rejects on a refusal or timeout. */
  send(text: string, extra?: Record<string, unknown>): Promise<RealtimeEvent<ChatMessage>>;
  /** Tells the others that the user types (or stopped). */
  setTyping(typing: boolean): Promise<void>;
};

/** useRealtimeChat keeps one chat live: chat.message in order without duplicates, typing indicators, optimistic send. */
export function useRealtimeChat(chatId: string, options?: ChatOptions): RealtimeChat {
  const rt = useRealtime();
  const { keys, workspaceId, userId, queryClient: qc } = rt;
  const key = options?.queryKey || keys.chat(workspaceId, chatId);
  const reduce = useCallback((old: ChatMessage[], e: RealtimeEvent<ChatMessage>) => chatReducer(old, e, chatId), [chatId]);
  const q = useLiveQuery<ChatMessage[]>(key, EMPTY, ['chat.message'], reduce, options);

  // Pending messages live beside the chat's query, so that a refetch of
  // the chat does not wipe them.
  const pendingKey = useMemo(() => [...key, 'pending'], [JSON.stringify(key)]);
  const pendingQuery = useQuery<ChatMessage[], Error, ChatMessage[], QueryKey>({
    queryKey: pendingKey,
    queryFn: skipToken,
    initialData: EMPTY,
  });
  const pending = pendingQuery.data ?? EMPTY;
  const confirmed = q.data || EMPTY;
  const messages = useMemo(() => {
    if (pending.length === 0) return confirmed;
    const have = new Set(confirmed.map((m) => m.id));
    return [...confirmed, ...pending.filter((m) => !have.has(m.id))];
  }, [confirmed, pending]);

  const typing = useTyping(chatId, options?.typingTimeout ?? 10000);
  const optimistic = useOptimisticEvent();
  const confirmTimeout = options?.confirmTimeout ?? 10000;
  const send = useCallback(
    (text: string, extra?: Record<string, unknown>) => {
      const id = 'm-' + newCorrelationId().slice(0, 16);
      const data: ChatMessage = { ...extra, chatId, id, text, ...(userId ? { author: userId } : {}) };
      const drop = () => qc.setQueryData<ChatMessage[]>(pendingKey, (old = EMPTY) => old.filter((m) => m.id !== id));
      return optimistic<ChatMessage>({
        event: { type: 'chat.message', data },
        timeout: confirmTimeout,
        apply: () => qc.setQueryData<ChatMessage[]>(pendingKey, (old = EMPTY) => [...old, { ...data, pending: true }]),
        confirm: (e) => {
          // The chat.message listener has it in the list; make sure, in
          // case this chat's list is not where the event went.
          patchQuery<ChatMessage[]>(qc, key, EMPTY, (old) => chatReducer(old, e, chatId));
          drop();
        },
        rollback: drop,
      });
    },
      [chatId, userId, qc, pendingKey, optimistic, confirmTimeout, JSON.stringify(key)],
  );
  const setTyping = useCallback(
    async (on: boolean) => {
      const res = await rt.request('/chats/' + encodeURIComponent(chatId) + '/typing', { method: 'POST', body: JSON.stringify({ typing: on }) });
      if (!res.ok) throw new Error('typing: ' + res.status);
    },
      [rt.request, chatId],
  );
  return { ...q, messages, typing, send, setTyping };
}

// useTyping follows typing.started and .stopped of chatId, when the
// provider's types ask for them, leaving out the user's own.
function useTyping(chatId: string, timeout: number): string[] {
  const { on, userId, wants, workspaceId } = useRealtime();
  const enabled = wants('typing.started');
  const [who, setWho] = useState<string[]>(EMPTY);
  useEffect(() => {
    if (!enabled) return;
    const timers = new Map<string, ReturnType<typeof setTimeout>>();
    const update = () => setWho([...timers.keys()].sort());
    const stop = (u: string) => {
      clearTimeout(timers.get(u));
      if (timers.delete(u)) update();
    };
    const handle = (started: boolean) => (e: EphemeralEvent<{ chatId: string; userId: string }>) => {
      const d = e.data;
      if (!d || d.chatId !== chatId || !d.userId || d.userId === userId) return;
      if (!started) return stop(d.userId);
      const had = timers.has(d.userId);
      clearTimeout(timers.get(d.userId));
      // The server says when typing stops; the timer only covers a lost stop.
      timers.set(d.userId, setTimeout(() => stop(d.userId), timeout));
      if (!had) update();
    };
    const offs = [on('typing.started', handle(true) as never), on('typing.stopped', handle(false) as never)];
    return () => {
      offs.forEach((off) => off());
      timers.forEach((t) => clearTimeout(t));
      setWho(EMPTY);
    };
  }, [enabled, on, chatId, userId, timeout, workspaceId]);
  return who;
}
