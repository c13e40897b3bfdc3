import { useCallback } from 'react';
import type { QueryClient } from '@tanstack/react-query';
import { newCorrelationId, type RealtimeEvent } from '../../realtime.js';
import { useRealtime, PublishError, type PublishBody } from './provider.js';

/** Why an optimistic change was rolled back. */
export class RollbackError extends Error {
  readonly reason: 'timeout' | 'refused';
  readonly cause: unknown;
  constructor(reason: 'timeout' | 'refused', message: string, cause?: unknown) {
    super(message);
    this.name = 'RollbackError';
    this.reason = reason;
    this.cause = cause;
  }
}

export interface OptimisticEventOptions<D> {
  /** The event to publish; its correlationId is set (or kept) to tie it to its confirmation. */
  event: PublishBody<D>;
  /** Changes the cache at once. */
  apply?: (qc: QueryClient) => void;
  /** Runs when the event carrying the correlation id arrives. */
  confirm?: (event: RealtimeEvent<D>, qc: QueryClient) => void;
  /** Undoes apply: the publish was refused or failed, or no event came within timeout. */
  rollback?: (qc: QueryClient, error: RollbackError) => void;
  /** Milliseconds to wait for the event after publishing starts; 10000 by default. */
  timeout?: number;
  /** Publishes the body; default: POST …/events with the user's token. */
  publish?: (body: PublishBody<D>) => Promise<unknown>;
}

/**
 * useOptimisticEvent returns a function that applies a change to the cache
 * at once, publishes the event, and confirms the change when the event
 * with its correlation id arrives (it resolves with that event), or rolls
 * it back when the publish fails or no event arrives within the timeout
 * (it rejects with a RollbackError).
 */
export function useOptimisticEvent(): <D = Record<string, unknown>>(options: OptimisticEventOptions<D>) => Promise<RealtimeEvent<D>> {
  const { on, publish, queryClient: qc } = useRealtime();
  return useCallback(
    <D,>(o: OptimisticEventOptions<D>) =>
      new Promise<RealtimeEvent<D>>((resolve, reject) => {
        const correlationId = o.event.correlationId || newCorrelationId();
        let settled = false;
        let off = () => {};
        let timer: ReturnType<typeof setTimeout> | undefined;
        const settle = () => {
          settled = true;
          off();
          clearTimeout(timer);
        };
        const rollback = (err: RollbackError) => {
          if (settled) return;
          settle();
          try {
            if (o.rollback) o.rollback(qc, err);
          } finally {
            reject(err);
          }
        };
        // Listening before publishing: the event can arrive before the
        // publish answers.
        off = on<D>('*', (e) => {
          if (settled || e.correlationId !== correlationId) return;
          settle();
          try {
            if (o.confirm) o.confirm(e, qc);
          } finally {
            resolve(e);
          }
        });
        try {
          if (o.apply) o.apply(qc);
        } catch (err) {
          settle();
          reject(err);
          return;
        }
        timer = setTimeout(() => rollback(new RollbackError('timeout', 'no event confirmed the change in time')), o.timeout ?? 10000);
        const body = { ...o.event, correlationId };
        Promise.resolve()
          .then(() => (o.publish ? o.publish(body) : publish<D>(body)))
          .catch((err) => rollback(new RollbackError('refused', err instanceof PublishError ? err.message : 'publish failed: ' + String(err), err)));
      }),
    [on, publish, qc],
  );
}
