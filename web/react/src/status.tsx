import { useEffect, useState, type ReactNode } from 'react';
import type { Status } from '../../realtime.js';
import { useRealtime } from './provider.js';

/** What a connection indicator shows: the provider's status, named for people. */
export interface ConnectionView {
  /** live (streaming), polling (live, over long polling), connecting, reconnecting, lost (gave up; retry() starts over). */
  state: 'connecting' | 'live' | 'polling' | 'reconnecting' | 'lost';
  status: Status;
  /** While reconnecting: this attempt, the budget, the delay chosen and the seconds left before it. */
  attempt?: number;
  maxAttempts?: number;
  delay?: number;
  secondsLeft?: number;
  retry(): void;
}

export interface ConnectionLabels {
  connecting: string;
  live: string;
  polling: string;
  reconnecting: (v: ConnectionView) => string;
  lost: string;
  retry: string;
}

export const defaultConnectionLabels: ConnectionLabels = {
  connecting: 'Connecting…',
  live: 'Live',
  polling: 'Live (polling)',
  reconnecting: (v) => `Reconnecting… (attempt ${v.attempt}/${v.maxAttempts}, next in ${v.secondsLeft}s)`,
  lost: 'Connection lost',
  retry: 'Retry',
};

/** useConnectionView is ConnectionStatus's state, for indicators of your own; the countdown ticks while reconnecting. */
export function useConnectionView(): ConnectionView {
  const { status, retry } = useRealtime();
  const [now, setNow] = useState(() => Date.now());
  const nextAt = status.state === 'reconnecting' ? status.nextAt : 0;
  useEffect(() => {
    if (!nextAt) return;
    setNow(Date.now());
    const t = setInterval(() => setNow(Date.now()), 250);
    return () => clearInterval(t);
  }, [nextAt]);
  switch (status.state) {
    case 'live':
      return { state: status.transport === 'polling' ? 'polling' : 'live', status, retry };
    case 'reconnecting':
      return {
        state: 'reconnecting',
        status,
        retry,
        attempt: status.attempt,
        maxAttempts: status.maxAttempts,
        delay: status.delay,
        secondsLeft: Math.max(0, Math.ceil((status.nextAt - now) / 1000)),
      };
    case 'offline':
      return { state: 'lost', status, retry };
    default:
      return { state: 'connecting', status, retry };
  }
}

export interface ConnectionStatusProps {
  className?: string;
  /** Class names of the parts: the text and the Retry button. */
  classNames?: { text?: string; retry?: string };
  labels?: Partial<ConnectionLabels>;
  /** Render nothing while live over a stream. */
  hideWhenLive?: boolean;
  /** Full control over the markup. */
  children?: (view: ConnectionView) => ReactNode;
}

/**
 * ConnectionStatus shows the connection: live, polling, reconnecting (with
 * the attempt and the seconds until the next one), lost (with a Retry
 * button). It has no styles: theme it with className and the data-state
 * attribute (connecting | live | polling | reconnecting | lost).
 */
export function ConnectionStatus({ className, classNames, labels, hideWhenLive, children }: ConnectionStatusProps) {
  const view = useConnectionView();
  if (children) return <>{children(view)}</>;
  if (hideWhenLive && view.state === 'live') return null;
  const l = { ...defaultConnectionLabels, ...labels };
  const text = view.state === 'reconnecting' ? l.reconnecting(view) : l[view.state];
  return (
    <div
      role="status"
      aria-live="polite"
      className={className}
      data-realtime-status=""
      data-state={view.state}
      data-attempt={view.attempt}
      data-max-attempts={view.maxAttempts}
      data-delay={view.delay}
    >
      <span className={classNames?.text} data-part="text">
        {text}
      </span>
      {view.state === 'lost' && (
        <button type="button" className={classNames?.retry} data-part="retry" onClick={() => view.retry()}>
          {l.retry}
        </button>
      )}
    </div>
  );
}
