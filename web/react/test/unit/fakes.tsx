// A fake EventSource and fetch for the real realtime.js, so that the unit
// tests drive the provider and hooks through the client's state machine.
import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import type { ReactNode } from 'react';
import { RealtimeProvider, type RealtimeProviderProps } from '../../src/index.js';

export class FakeES {
  static all: FakeES[] = [];
  url: URL;
  listeners = new Map<string, Array<(e: unknown) => void>>();
  closed = false;
  onerror: ((e: unknown) => void) | null = null;
  onmessage: ((e: unknown) => void) | null = null;
  constructor(url: string) {
    this.url = new URL(url);
    FakeES.all.push(this);
  }
  addEventListener(type: string, fn: (e: unknown) => void) {
    if (!this.listeners.has(type)) this.listeners.set(type, []);
    this.listeners.get(type)!.push(fn);
  }
  close() {
    this.closed = true;
  }
  emit(type: string, data: unknown, lastEventId = '') {
    if (this.closed) return;
    for (const fn of this.listeners.get(type) || []) fn({ type, data: typeof data === 'string' ? data : JSON.stringify(data), lastEventId });
  }
  ready(cursor = 'e-0') {
    this.emit('ready', { cursor });
  }
  /** event emits a log event of type with data, id and optional envelope fields. */
  event(id: string, type: string, data: Record<string, unknown>, extra: Record<string, unknown> = {}) {
    this.emit(type, { id, type, workspaceId: this.workspace, correlationId: 'c-' + id, timestamp: new Date(0).toISOString(), data, ...extra }, id);
  }
  ephemeral(type: string, data: Record<string, unknown>) {
    this.emit(type, { type, workspaceId: this.workspace, correlationId: 'x', timestamp: new Date(0).toISOString(), data });
  }
  reset(head: string) {
    this.emit('sync.reset', { reason: 'cursor_expired', head }, head);
  }
  fail() {
    if (!this.closed && this.onerror) this.onerror(new Event('error'));
  }
  get workspace() {
    return decodeURIComponent(this.url.pathname.split('/')[3]);
  }
  static open(): FakeES[] {
    return FakeES.all.filter((e) => !e.closed);
  }
  static last(): FakeES {
    return FakeES.all[FakeES.all.length - 1];
  }
}

export function response(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': status >= 400 ? 'application/problem+json' : 'application/json' } });
}

export interface FetchCall {
  url: URL;
  init: RequestInit;
}

/** A stream ticket the fakes sold: the token that bought it and its types. */
export interface Ticket {
  ticket: string;
  token: string;
  types?: string;
}

/** tickets are every ticket sold (POST .../stream-tickets), oldest first. */
export const tickets: Ticket[] = [];

/** ticketAnswer answers a ticket purchase as the server does, or returns null for other calls. */
export function ticketAnswer(url: URL, init: RequestInit): Response | null {
  if (!url.pathname.endsWith('/stream-tickets') || init.method !== 'POST') return null;
  const auth = new Headers(init.headers).get('Authorization') || '';
  const body = JSON.parse(String(init.body || '{}')) as { types?: string };
  const t = { ticket: 'tk-' + (tickets.length + 1), token: auth.replace(/^Bearer /, ''), types: body.types };
  tickets.push(t);
  return response(201, { ticket: t.ticket, expiresAt: new Date(Date.now() + 30000).toISOString() });
}

/** ticketFetch sells tickets and fails everything else, for tests that only stream. */
export const ticketFetch = (async (input: RequestInfo | URL, init: RequestInit = {}) =>
  ticketAnswer(new URL(String(input), 'http://rt.test'), init) || response(503, { code: 'log_unavailable' })) as typeof fetch;

/** ticketFor returns the ticket a stream was opened with. */
export function ticketFor(es: FakeES): Ticket | undefined {
  return tickets.find((t) => t.ticket === es.url.searchParams.get('ticket'));
}

/** fakeFetch answers with handler; every call is recorded. Ticket purchases are answered as the server does (see tickets), not recorded. */
export function fakeFetch(handler: (call: FetchCall) => Response | Promise<Response>) {
  const calls: FetchCall[] = [];
  const fn = async (input: RequestInfo | URL, init: RequestInit = {}) => {
    const call = { url: new URL(String(input), 'http://rt.test'), init };
    const t = ticketAnswer(call.url, init);
    if (t) return t;
    calls.push(call);
    return handler(call);
  };
  return { fn: fn as typeof fetch, calls };
}

export const fast = { initialDelay: 5, maxDelay: 20, jitter: 0, maxAttempts: 3, firstFrameTimeout: 2000, stallTimeout: 5000, pollWait: 1 };

export function newClient() {
  return new QueryClient({ defaultOptions: { queries: { retry: false, gcTime: Infinity } } });
}

/** wrapper renders children inside a QueryClientProvider and a RealtimeProvider over the fakes. */
export function wrapper(qc: QueryClient, props: Partial<RealtimeProviderProps> & { fetch?: typeof fetch }) {
  const { fetch: f, options, ...rest } = props;
  return function Wrapper({ children }: { children?: ReactNode }) {
    return (
      <QueryClientProvider client={qc}>
        <RealtimeProvider
          workspaceId="ws"
          userId="u1"
          getToken={() => 'tok'}
          baseUrl="http://rt.test"
          options={{ ...fast, EventSource: FakeES, fetch: f || fakeFetch(() => response(200, { events: [], nextCursor: 'e-0', hasMore: false, reset: false, ephemeral: [] })).fn, ...options }}
          {...rest}
        >
          {children}
        </RealtimeProvider>
      </QueryClientProvider>
    );
  };
}
