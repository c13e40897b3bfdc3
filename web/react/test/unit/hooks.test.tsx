import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { act, cleanup, fireEvent, render, renderHook, screen, waitFor } from '@testing-library/react';
import {
  ConnectionStatus,
  RollbackError,
  useOptimisticEvent,
  useRealtimeAgents,
  useRealtimeApprovals,
  useRealtimeChat,
  useRealtimeNotifications,
  type Approval,
} from '../../src/index.js';
import { FakeES, fakeFetch, fast, newClient, response, wrapper } from './fakes.js';

beforeEach(() => {
  FakeES.all = [];
});
afterEach(() => cleanup());

async function live() {
  await waitFor(() => expect(FakeES.all.length).toBeGreaterThan(0));
  act(() => FakeES.last().ready());
}

describe('useRealtimeApprovals', () => {
  test('created inserts once, updated merges, deleted removes; the list renders it', async () => {
    const qc = newClient();
    function List() {
      const { data = [] } = useRealtimeApprovals({ queryFn: async () => [{ id: 'a0', title: 'old', status: 'pending' }] as Approval[] });
      return (
        <ul>
          {data.map((a) => (
            <li key={a.id} data-testid={a.id}>
              {a.title}:{a.status}
            </li>
          ))}
        </ul>
      );
    }
    render(<List />, { wrapper: wrapper(qc, { refetchOnConnect: false }) });
    await waitFor(() => screen.getByTestId('a0'));
    await live();
    const es = FakeES.last();
    act(() => es.event('e-1', 'approval.created', { id: 'a1', title: 'Deploy', status: 'pending' }));
    act(() => es.event('e-2', 'approval.created', { id: 'a1', title: 'Deploy', status: 'pending' })); // the same approval again
    expect(qc.getQueryData(['realtime', 'ws', 'approvals'])).toEqual([
      { id: 'a1', title: 'Deploy', status: 'pending' },
      { id: 'a0', title: 'old', status: 'pending' },
    ]);
    await waitFor(() => expect(screen.getAllByRole('listitem').map((li) => li.textContent)).toEqual(['Deploy:pending', 'old:pending']));
    act(() => es.event('e-3', 'approval.updated', { id: 'a1', status: 'approved' }));
    await waitFor(() => expect(screen.getByTestId('a1').textContent).toBe('Deploy:approved'));
    act(() => es.event('e-4', 'approval.deleted', { id: 'a0' }));
    await waitFor(() => expect(screen.queryByTestId('a0')).toBeNull());
    expect(qc.getQueryData(['realtime', 'ws', 'approvals'])).toEqual([{ id: 'a1', title: 'Deploy', status: 'approved' }]);
  });

  test('an event during the first fetch restarts it instead of being overwritten', async () => {
    const qc = newClient();
    const answers: Array<(v: Approval[]) => void> = [];
    const { result } = renderHook(() => useRealtimeApprovals({ queryFn: () => new Promise<Approval[]>((r) => answers.push(r)) }), {
      wrapper: wrapper(qc, { refetchOnConnect: false }),
    });
    await waitFor(() => expect(answers).toHaveLength(1));
    await live();
    act(() => FakeES.last().event('e-1', 'approval.created', { id: 'a1' }));
    await waitFor(() => expect(answers).toHaveLength(2)); // a second fetch, after the event
    act(() => answers[0]([])); // the stale answer is dropped
    act(() => answers[1]([{ id: 'a1' }]));
    await waitFor(() => expect(result.current.data).toEqual([{ id: 'a1' }]));
  });

  test('query keys are configurable, per provider and per hook', async () => {
    const qc = newClient();
    renderHook(
      () => {
        useRealtimeApprovals();
        useRealtimeAgents({ queryKey: ['my', 'agents'] });
      },
      { wrapper: wrapper(qc, { queryKeys: { approvals: (ws) => ['app', ws, 'approvals'] } }) },
    );
    await live();
    act(() => FakeES.last().event('e-1', 'approval.created', { id: 'a1' }));
    act(() => FakeES.last().event('e-2', 'agent.status.changed', { agentId: 'g1', status: 'running' }));
    expect(qc.getQueryData(['app', 'ws', 'approvals'])).toEqual([{ id: 'a1' }]);
    expect(qc.getQueryData(['realtime', 'ws', 'approvals'])).toBeUndefined();
    expect(qc.getQueryData(['my', 'agents'])).toEqual([{ agentId: 'g1', status: 'running' }]);
  });
});

test('useRealtimeAgents merges agent.status.changed by agentId', async () => {
  const qc = newClient();
  const { result } = renderHook(() => useRealtimeAgents(), { wrapper: wrapper(qc, {}) });
  await live();
  act(() => FakeES.last().event('e-1', 'agent.status.changed', { agentId: 'g1', status: 'running', name: 'Indexer' }));
  act(() => FakeES.last().event('e-2', 'agent.status.changed', { agentId: 'g2', status: 'idle' }));
  act(() => FakeES.last().event('e-3', 'agent.status.changed', { agentId: 'g1', status: 'error' }));
  await waitFor(() =>
    expect(result.current.data).toEqual([
      { agentId: 'g1', status: 'error', name: 'Indexer' },
      { agentId: 'g2', status: 'idle' },
    ]),
  );
});

test('useRealtimeNotifications counts the signed-in user’s unread notifications', async () => {
  const qc = newClient();
  const { result } = renderHook(() => useRealtimeNotifications(), { wrapper: wrapper(qc, { userId: 'alice' }) });
  await live();
  const es = FakeES.last();
  act(() => es.event('e-1', 'notification.new', { id: 'n1', title: 'for alice' }, { targetUserId: 'alice' }));
  act(() => es.event('e-2', 'notification.new', { id: 'n2', title: 'for everyone' }));
  act(() => es.event('e-3', 'notification.new', { id: 'n3', title: 'for bob' }, { targetUserId: 'bob' }));
  act(() => es.event('e-4', 'notification.new', { id: 'n1', title: 'for alice' }, { targetUserId: 'alice' }));
  await waitFor(() => expect(result.current.unread).toBe(2));
  expect(result.current.notifications.map((n) => n.id)).toEqual(['n2', 'n1']);
  expect(qc.getQueryData<unknown[]>(['realtime', 'ws', 'notifications', 'alice'])).toHaveLength(2);
  act(() => result.current.markRead('n1'));
  await waitFor(() => expect(result.current.unread).toBe(1));
  act(() => result.current.markAllRead());
  await waitFor(() => expect(result.current.unread).toBe(0));
});

describe('useRealtimeChat', () => {
  test('messages in order, once each, only of its chat', async () => {
    const qc = newClient();
    const { result } = renderHook(() => useRealtimeChat('general'), { wrapper: wrapper(qc, {}) });
    await live();
    const es = FakeES.last();
    act(() => es.event('e-1', 'chat.message', { chatId: 'general', id: 'm1', text: 'one' }));
    act(() => es.event('e-2', 'chat.message', { chatId: 'other', id: 'm9', text: 'elsewhere' }));
    act(() => es.event('e-3', 'chat.message', { chatId: 'general', id: 'm2', text: 'two' }));
    act(() => es.event('e-3', 'chat.message', { chatId: 'general', id: 'm2', text: 'two' })); // the same event: dropped by the client
    act(() => es.event('e-4', 'chat.message', { chatId: 'general', id: 'm1', text: 'one' })); // the same message again
    act(() => es.event('e-5', 'chat.message', { chatId: 'general', id: 'm3', text: 'three' }));
    await waitFor(() => expect(result.current.messages.map((m) => m.text)).toEqual(['one', 'two', 'three']));
  });

  test('typing indicators when the types ask for typing, without the user’s own', async () => {
    const qc = newClient();
    const { result } = renderHook(() => useRealtimeChat('general', { typingTimeout: 50 }), { wrapper: wrapper(qc, { userId: 'me', types: ['*'] }) });
    await live();
    const es = FakeES.last();
    act(() => es.ephemeral('typing.started', { chatId: 'general', userId: 'bob' }));
    act(() => es.ephemeral('typing.started', { chatId: 'general', userId: 'me' }));
    act(() => es.ephemeral('typing.started', { chatId: 'other', userId: 'carol' }));
    act(() => es.ephemeral('typing.started', { chatId: 'general', userId: 'ann' }));
    await waitFor(() => expect(result.current.typing).toEqual(['ann', 'bob']));
    act(() => es.ephemeral('typing.stopped', { chatId: 'general', userId: 'bob' }));
    await waitFor(() => expect(result.current.typing).toEqual(['ann']));
    // A lost stop lapses.
    await waitFor(() => expect(result.current.typing).toEqual([]));
  });

  test('no typing without asking for it', async () => {
    const qc = newClient();
    const { result } = renderHook(() => useRealtimeChat('general'), { wrapper: wrapper(qc, { userId: 'me' }) });
    await live();
    act(() => FakeES.last().ephemeral('typing.started', { chatId: 'general', userId: 'bob' }));
    await new Promise((r) => setTimeout(r, 20));
    expect(result.current.typing).toEqual([]);
  });

  test('send shows the message pending, and its event confirms it', async () => {
    const qc = newClient();
    let body: Record<string, any> = {};
    const f = fakeFetch(async (c) => {
      if (c.init.method !== 'POST') return response(200, {});
      body = JSON.parse(String(c.init.body));
      return response(201, { id: 'e-7', ...body });
    });
    const { result } = renderHook(() => useRealtimeChat('general'), { wrapper: wrapper(qc, { userId: 'me', fetch: f.fn }) });
    await live();
    let sent: Promise<unknown> = Promise.resolve();
    act(() => {
      sent = result.current.send('hello');
    });
    await waitFor(() => expect(result.current.messages).toMatchObject([{ text: 'hello', author: 'me', pending: true }]));
    await waitFor(() => expect(body.correlationId).toBeTruthy());
    expect(body).toMatchObject({ type: 'chat.message', data: { chatId: 'general', text: 'hello', author: 'me' } });
    act(() => FakeES.last().event('e-7', 'chat.message', body.data, { correlationId: body.correlationId }));
    await expect(sent).resolves.toMatchObject({ id: 'e-7' });
    await waitFor(() => expect(result.current.messages).toEqual([expect.objectContaining({ text: 'hello', eventId: 'e-7' })]));
    expect(result.current.messages[0].pending).toBeUndefined();
  });

  test('send rolls back when the publish is refused', async () => {
    const qc = newClient();
    const f = fakeFetch((c) => (c.init.method === 'POST' ? response(403, { code: 'forbidden', title: 'Forbidden' }) : response(200, {})));
    const { result } = renderHook(() => useRealtimeChat('general'), { wrapper: wrapper(qc, { fetch: f.fn }) });
    await live();
    let sent: Promise<unknown> = Promise.resolve();
    act(() => {
      sent = result.current.send('nope');
    });
    await expect(sent).rejects.toMatchObject({ name: 'RollbackError', reason: 'refused' });
    await waitFor(() => expect(result.current.messages).toEqual([]));
  });
});

describe('useOptimisticEvent', () => {
  function setup(post: () => Response | Promise<Response>) {
    const qc = newClient();
    qc.setQueryData(['list'], ['a']);
    const f = fakeFetch((c) => (c.init.method === 'POST' ? post() : response(200, {})));
    const { result } = renderHook(() => useOptimisticEvent(), { wrapper: wrapper(qc, { fetch: f.fn }) });
    const run = (timeout = 5000) =>
      result.current({
        event: { type: 'approval.created', data: { id: 'b' }, correlationId: 'corr-1' },
        timeout,
        apply: (q) => q.setQueryData<string[]>(['list'], (old = []) => [...old, 'b?']),
        confirm: (_e, q) => q.setQueryData<string[]>(['list'], (old = []) => old.map((x) => (x === 'b?' ? 'b' : x))),
        rollback: (q) => q.setQueryData<string[]>(['list'], (old = []) => old.filter((x) => x !== 'b?')),
      });
    return { qc, run, f };
  }

  test('applies at once and confirms on the event with its correlation id', async () => {
    const { qc, run } = setup(() => response(201, {}));
    await live();
    const p = run();
    expect(qc.getQueryData(['list'])).toEqual(['a', 'b?']);
    act(() => FakeES.last().event('e-1', 'approval.created', { id: 'x' }, { correlationId: 'other' }));
    expect(qc.getQueryData(['list'])).toEqual(['a', 'b?']);
    act(() => FakeES.last().event('e-2', 'approval.created', { id: 'b' }, { correlationId: 'corr-1' }));
    await expect(p).resolves.toMatchObject({ id: 'e-2' });
    expect(qc.getQueryData(['list'])).toEqual(['a', 'b']);
  });

  test('rolls back on a refused publish', async () => {
    const { qc, run } = setup(() => response(422, { code: 'invalid_event' }));
    await live();
    const p = run();
    expect(qc.getQueryData(['list'])).toEqual(['a', 'b?']);
    const err = await p.catch((e) => e);
    expect(err).toBeInstanceOf(RollbackError);
    expect(err.reason).toBe('refused');
    expect(err.message).toContain('422 invalid_event');
    expect(qc.getQueryData(['list'])).toEqual(['a']);
  });

  test('rolls back on a failed request', async () => {
    const { qc, run } = setup(() => {
      throw new TypeError('network');
    });
    await live();
    await expect(run()).rejects.toMatchObject({ reason: 'refused' });
    expect(qc.getQueryData(['list'])).toEqual(['a']);
  });

  test('rolls back when no event comes in time, and a late event changes nothing', async () => {
    const { qc, run } = setup(() => response(201, {}));
    await live();
    await expect(run(30)).rejects.toMatchObject({ reason: 'timeout' });
    expect(qc.getQueryData(['list'])).toEqual(['a']);
    act(() => FakeES.last().event('e-2', 'approval.created', { id: 'b' }, { correlationId: 'corr-1' }));
    expect(qc.getQueryData(['list'])).toEqual(['a']);
  });
});

describe('ConnectionStatus', () => {
  test('connecting, live, reconnecting with attempt and delay, lost with a working Retry, polling', async () => {
    const qc = newClient();
    let up = false;
    const f = fakeFetch(() => {
      if (!up) throw new TypeError('down');
      return response(200, { events: [], nextCursor: 'e-0', hasMore: false, reset: false, ephemeral: [] });
    });
    const W = wrapper(qc, { fetch: f.fn, options: { ...fast, EventSource: FakeES, initialDelay: 1000, maxDelay: 1000, maxAttempts: 2 } });
    const { container } = render(<ConnectionStatus className="conn" labels={{ live: 'Connected' }} />, { wrapper: W });
    const root = () => container.querySelector('[data-realtime-status]') as HTMLElement;
    expect(root().dataset.state).toBe('connecting');
    expect(root().className).toBe('conn');
    await live();
    await waitFor(() => expect(root().dataset.state).toBe('live'));
    expect(root().textContent).toBe('Connected');
    act(() => FakeES.last().fail());
    await waitFor(() => expect(root().dataset.state).toBe('reconnecting'));
    expect(root().dataset.attempt).toBe('1');
    expect(root().dataset.delay).toBe('1000');
    expect(root().textContent).toBe('Reconnecting… (attempt 1/2, next in 1s)');
    expect(screen.queryByRole('button')).toBeNull();
    await waitFor(() => expect(FakeES.all).toHaveLength(2), { timeout: 3000 });
    act(() => FakeES.last().fail()); // fails before ready, and the check request fails too
    await waitFor(() => expect(root().dataset.attempt).toBe('2'));
    await waitFor(() => expect(FakeES.all).toHaveLength(3), { timeout: 3000 });
    act(() => FakeES.last().fail());
    await waitFor(() => expect(root().dataset.state).toBe('lost'));
    expect(root().textContent).toBe('Connection lost' + 'Retry');
    up = true;
    fireEvent.click(screen.getByRole('button', { name: 'Retry' }));
    await waitFor(() => expect(FakeES.all).toHaveLength(4));
    act(() => FakeES.last().ready());
    await waitFor(() => expect(root().dataset.state).toBe('live'));
  }, 15000);

  test('polling, and a render prop for custom markup', async () => {
    const qc = newClient();
    const f = fakeFetch(() => response(200, { events: [], nextCursor: 'e-0', hasMore: false, reset: false, ephemeral: [] }));
    // No EventSource: the client polls.
    const W = wrapper(qc, { fetch: f.fn, options: { ...fast, EventSource: null } });
    render(<ConnectionStatus>{(v) => <b data-testid="s">{v.state}</b>}</ConnectionStatus>, { wrapper: W });
    await waitFor(() => expect(screen.getByTestId('s').textContent).toBe('polling'));
    render(<ConnectionStatus />, { wrapper: W });
    await waitFor(() => expect(screen.getByText('Live (polling)')).toBeTruthy());
  });
});
