import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import { act, cleanup, render, renderHook, screen, waitFor } from '@testing-library/react';
import { QueryClientProvider, useQuery } from '@tanstack/react-query';
import { useEffect, useState } from 'react';
import { RealtimeProvider, useRealtime, useRealtimeEvent, typeMatches, type RealtimeEvent } from '../../src/index.js';
import { FakeES, fakeFetch, fast, newClient, response, ticketFetch, ticketFor, wrapper } from './fakes.js';

beforeEach(() => {
  FakeES.all = [];
});
afterEach(() => cleanup());

function Harness(props: { ws: string; user?: string; getToken?: () => string; types?: string[] }) {
  const qc = useState(newClient)[0];
  return (
    <QueryClientProvider client={qc}>
      <RealtimeProvider workspaceId={props.ws} userId={props.user} getToken={props.getToken || (() => 'tok-' + props.user)} types={props.types} baseUrl="http://rt.test" options={{ ...fast, EventSource: FakeES, fetch: ticketFetch }}>
        <State />
      </RealtimeProvider>
    </QueryClientProvider>
  );
}
function State() {
  const { status } = useRealtime();
  return <span data-testid="state">{status.state}</span>;
}

describe('RealtimeProvider', () => {
  test('one connection per workspace, closed on unmount', async () => {
    const { unmount } = render(<Harness ws="acme" user="u1" />);
    await waitFor(() => expect(FakeES.all).toHaveLength(1));
    const es = FakeES.last();
    expect(es.url.pathname).toBe('/v1/workspaces/acme/events/stream');
    // The stream opens with a ticket bought with getToken's token: no token in its URL.
    expect(es.url.searchParams.get('access_token')).toBeNull();
    expect(ticketFor(es)?.token).toBe('tok-u1');
    act(() => es.ready());
    await waitFor(() => expect(screen.getByTestId('state').textContent).toBe('live'));
    unmount();
    expect(es.closed).toBe(true);
    expect(FakeES.open()).toHaveLength(0);
  });

  test('a new workspace or user reconnects; a new getToken function does not', async () => {
    const { rerender } = render(<Harness ws="a" user="u1" getToken={() => 'one'} />);
    await waitFor(() => expect(FakeES.all).toHaveLength(1));
    rerender(<Harness ws="a" user="u1" getToken={() => 'two'} />);
    await new Promise((r) => setTimeout(r, 20));
    expect(FakeES.all).toHaveLength(1);
    rerender(<Harness ws="b" user="u1" getToken={() => 'two'} />);
    await waitFor(() => expect(FakeES.all).toHaveLength(2));
    expect(FakeES.all[0].closed).toBe(true);
    expect(FakeES.last().workspace).toBe('b');
    expect(ticketFor(FakeES.last())?.token).toBe('two');
    rerender(<Harness ws="b" user="u2" getToken={() => 'three'} />);
    await waitFor(() => expect(FakeES.all).toHaveLength(3));
    expect(FakeES.all[1].closed).toBe(true);
    expect(FakeES.open()).toHaveLength(1);
    expect(ticketFor(FakeES.last())?.token).toBe('three');
  });

  test('types are passed to the stream', async () => {
    render(<Harness ws="a" types={['approval.*', 'typing.*']} />);
    await waitFor(() => expect(FakeES.all).toHaveLength(1));
    // The ticket carries the types.
    expect(ticketFor(FakeES.last())?.types).toBe('approval.*,typing.*');
  });

  test('on(type, fn) delivers events across reconnects and stops after its cleanup', async () => {
    const qc = newClient();
    const seen: string[] = [];
    const { result } = renderHook(() => useRealtime(), { wrapper: wrapper(qc, {}) });
    const off = result.current.on('chat.message', (e: RealtimeEvent) => seen.push(e.id));
    await waitFor(() => expect(FakeES.all).toHaveLength(1));
    act(() => FakeES.last().ready());
    act(() => FakeES.last().event('e-1', 'chat.message', { chatId: 'c', id: 'm1', text: 'hi' }));
    // The stream drops; the next one delivers to the same subscription.
    act(() => FakeES.last().fail());
    await waitFor(() => expect(FakeES.all).toHaveLength(2));
    expect(FakeES.last().url.searchParams.get('lastEventId')).toBe('e-1');
    act(() => FakeES.last().ready());
    act(() => FakeES.last().event('e-2', 'chat.message', { chatId: 'c', id: 'm2', text: 'hi' }));
    off();
    act(() => FakeES.last().event('e-3', 'chat.message', { chatId: 'c', id: 'm3', text: 'hi' }));
    expect(seen).toEqual(['e-1', 'e-2']);
  });

  test('useRealtimeEvent unsubscribes on unmount, and a throwing listener does not stop the others', async () => {
    const qc = newClient();
    const seen: string[] = [];
    const errors: unknown[] = [];
    function Listener({ name }: { name: string }) {
      useRealtimeEvent('approval.created', (e) => {
        if (name === 'bad') throw new Error('boom');
        seen.push(name + ':' + e.id);
      });
      return null;
    }
    function App() {
      const [show, setShow] = useState(true);
      useEffect(() => {
        (globalThis as Record<string, unknown>).hide = () => setShow(false);
      }, []);
      return (
        <>
          <Listener name="bad" />
          {show && <Listener name="a" />}
          <Listener name="b" />
        </>
      );
    }
    const W = wrapper(qc, { options: { ...fast, EventSource: FakeES, onError: (e) => errors.push(e) } });
    render(<App />, { wrapper: W });
    await waitFor(() => expect(FakeES.all).toHaveLength(1));
    act(() => FakeES.last().ready());
    act(() => FakeES.last().event('e-1', 'approval.created', { id: 'a1' }));
    act(() => ((globalThis as Record<string, unknown>).hide as () => void)());
    act(() => FakeES.last().event('e-2', 'approval.created', { id: 'a2' }));
    expect(seen).toEqual(['a:e-1', 'b:e-1', 'b:e-2']);
    expect(errors).toHaveLength(2);
  });

  test('retry() after giving up starts over', async () => {
    const qc = newClient();
    const f = fakeFetch(() => {
      throw new TypeError('network down');
    });
    const { result } = renderHook(() => useRealtime(), { wrapper: wrapper(qc, { fetch: f.fn }) });
    await waitFor(() => expect(FakeES.all).toHaveLength(1));
    for (let i = 0; i < 4; i++) {
      const n = FakeES.all.length;
      act(() => FakeES.last().fail());
      if (i < 3) await waitFor(() => expect(FakeES.all.length).toBe(n + 1));
    }
    await waitFor(() => expect(result.current.status.state).toBe('offline'));
    const n = FakeES.all.length;
    act(() => result.current.retry());
    await waitFor(() => expect(FakeES.all.length).toBe(n + 1));
    act(() => FakeES.last().ready());
    await waitFor(() => expect(result.current.status.state).toBe('live'));
  });

  test('sync.reset invalidates the workspace queries and tracked keys, and they refetch', async () => {
    const qc = newClient();
    let fetches = 0;
    let outside = 0;
    const onReset = vi.fn();
    const { result } = renderHook(
      () => {
        const rt = useRealtime();
        useEffect(() => rt.track(['elsewhere']), [rt.track]);
        const a = useQuery({ queryKey: ['realtime', 'ws', 'mine'], queryFn: () => ++fetches });
        const b = useQuery({ queryKey: ['elsewhere'], queryFn: () => ++outside });
        const c = useQuery({ queryKey: ['untouched'], queryFn: () => 1, staleTime: Infinity });
        return { a, b, c };
      },
      { wrapper: wrapper(qc, { onReset, refetchOnConnect: false }) },
    );
    await waitFor(() => expect(result.current.a.data).toBe(1));
    await waitFor(() => expect(FakeES.all).toHaveLength(1));
    act(() => FakeES.last().ready());
    act(() => FakeES.last().reset('e-9'));
    await waitFor(() => expect(result.current.a.data).toBe(2));
    await waitFor(() => expect(result.current.b.data).toBe(2));
    expect(qc.getQueryState(['untouched'])!.isInvalidated).toBe(false);
    await waitFor(() => expect(onReset).toHaveBeenCalledWith({ cursor: 'e-9' }));
  });

  test('queries fetched before the stream was live refetch once it is', async () => {
    const qc = newClient();
    let fetches = 0;
    const { result } = renderHook(() => useQuery({ queryKey: ['realtime', 'ws', 'x'], queryFn: () => ++fetches, staleTime: Infinity }), { wrapper: wrapper(qc, {}) });
    await waitFor(() => expect(result.current.data).toBe(1));
    await waitFor(() => expect(FakeES.all).toHaveLength(1));
    act(() => FakeES.last().ready());
    await waitFor(() => expect(result.current.data).toBe(2));
    // A reconnect resumes from the cursor: no refetch.
    act(() => FakeES.last().fail());
    await waitFor(() => expect(FakeES.all).toHaveLength(2));
    act(() => FakeES.last().ready());
    await new Promise((r) => setTimeout(r, 20));
    expect(fetches).toBe(2);
  });

  test('a first fetch still in flight when the stream goes live is restarted', async () => {
    const qc = newClient();
    const answers: Array<(v: string) => void> = [];
    const { result } = renderHook(() => useQuery({ queryKey: ['realtime', 'ws', 'x'], queryFn: () => new Promise<string>((r) => answers.push(r)) }), {
      wrapper: wrapper(qc, {}),
    });
    await waitFor(() => expect(answers).toHaveLength(1));
    await waitFor(() => expect(FakeES.all).toHaveLength(1));
    act(() => FakeES.last().ready());
    await waitFor(() => expect(answers).toHaveLength(2));
    act(() => answers[0]('stale'));
    act(() => answers[1]('fresh'));
    await waitFor(() => expect(result.current.data).toBe('fresh'));
  });
});

test('typeMatches', () => {
  expect(typeMatches(null, 'approval.created')).toBe(true);
  expect(typeMatches(null, 'typing.started')).toBe(false);
  expect(typeMatches(['*'], 'typing.started')).toBe(true);
  expect(typeMatches(['typing.*'], 'typing.started')).toBe(true);
  expect(typeMatches(['approval.*'], 'typing.started')).toBe(false);
  expect(typeMatches(['approval.*'], 'approval.created')).toBe(true);
});

test('a request carries the token and the publish body', async () => {
  const qc = newClient();
  const f = fakeFetch((c) => (c.init.method === 'POST' ? response(201, { id: 'e-1', type: 'chat.message', data: {} }) : response(200, {})));
  const { result } = renderHook(() => useRealtime(), { wrapper: wrapper(qc, { fetch: f.fn }) });
  const ev = await result.current.publish({ type: 'chat.message', data: { chatId: 'c', id: 'm', text: 't' } });
  expect(ev.id).toBe('e-1');
  const post = f.calls.find((c) => c.init.method === 'POST')!;
  expect(post.url.pathname).toBe('/v1/workspaces/ws/events');
  expect(new Headers(post.init.headers).get('Authorization')).toBe('Bearer tok');
  expect(JSON.parse(String(post.init.body))).toEqual({ type: 'chat.message', data: { chatId: 'c', id: 'm', text: 't' } });
});
