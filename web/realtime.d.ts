// Types of realtime.js, for TypeScript users of the client and for the
// React package in web/react. realtime.js stays plain JavaScript.

/** The connection's state, as onStatus reports it. */
export type Status =
  | { readonly state: 'connecting' }
  | { readonly state: 'live'; readonly transport: 'sse' | 'polling' }
  | {
      readonly state: 'reconnecting';
      readonly reason: string;
      /** This attempt's number, from 1. */
      readonly attempt: number;
      readonly maxAttempts: number;
      /** Milliseconds until the attempt. */
      readonly delay: number;
      /** When the attempt starts, in Date.now() milliseconds. */
      readonly nextAt: number;
    }
  | { readonly state: 'offline'; readonly reason?: string; readonly attempt?: number; readonly maxAttempts?: number };

/** An event of the log (the envelope of openapi.yaml's Event). */
export interface RealtimeEvent<D = Record<string, unknown>> {
  id: string;
  type: string;
  workspaceId: string;
  targetUserId?: string;
  correlationId: string;
  source?: string;
  timestamp: string;
  data: D;
}

/** Presence and typing: not in the log, no id. */
export interface EphemeralEvent<D = Record<string, unknown>> {
  id?: undefined;
  type: 'presence.changed' | 'typing.started' | 'typing.stopped';
  workspaceId: string;
  correlationId: string;
  source?: string;
  timestamp: string;
  data: D;
}

/** What a sync.reset listener and onReset are given. */
export interface ResetInfo {
  cursor: string | null;
}

export interface ConnectOptions {
  workspaceId: string;
  baseUrl?: string;
  token?: string;
  /** Called on every (re)connect; with tickets, its token buys each stream's ticket. */
  getToken?: () => string | Promise<string>;
  /**
   * Open streams with a single-use stream ticket (POST .../stream-tickets with the token in the
   * Authorization header), so that no token goes into a URL. Default true; a server without
   * tickets (404) is streamed with ?access_token= instead.
   */
  tickets?: boolean;
  types?: string[] | null;
  cursor?: string | null;
  initialDelay?: number;
  maxDelay?: number;
  jitter?: number;
  maxAttempts?: number;
  firstFrameTimeout?: number;
  streamFailuresBeforePolling?: number;
  pollWait?: number;
  streamRetryInterval?: number;
  stallTimeout?: number;
  dedupeWindow?: number;
  onReset?: ((info: ResetInfo) => void) | null;
  onError?: ((err: unknown) => void) | null;
  EventSource?: unknown;
  fetch?: typeof fetch;
}

export interface OptimisticOptions {
  correlationId?: string;
  apply?: () => void;
  confirm?: (event: RealtimeEvent) => void;
  rollback?: () => void;
  /** Milliseconds; 10000 by default. */
  timeout?: number;
}

export interface Optimistic {
  correlationId: string;
  cancel(): void;
}

export interface Connection {
  /** Subscribes to an event type ('*' for every log event, 'sync.reset'); returns an unsubscribe function. */
  on(type: string, fn: (event: any) => void): () => void;
  /** Calls fn now and on every status change; returns an unsubscribe function. */
  onStatus(fn: (status: Status) => void): () => void;
  readonly status: Status;
  readonly cursor: string | null;
  retry(): void;
  close(): void;
  optimistic(options?: OptimisticOptions): Optimistic;
}

export function connect(options: ConnectOptions): Connection;
export function newCorrelationId(): string;
