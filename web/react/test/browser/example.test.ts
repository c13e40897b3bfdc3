// The example app, built with Vite, in Debian's Chromium (playwright-core,
// no browser download) against a real `realtime serve`: each event type
// reaches the cache and the page; reconnecting, giving up and Retry; a
// reset refetches; optimistic chat messages confirmed and rolled back;
// unmounting the provider closes the stream, as the service sees it.
import { afterAll, afterEach, beforeAll, describe, expect, inject, test } from 'vitest';
import { chromium as pw, type Browser, type Page } from 'playwright-core';
import { api, eventually, Front, startServer, token, type Server } from './harness.js';
import { chromium } from './setup.js';

const missing = inject('missing');
const RETENTION = 40;

describe.skipIf(missing !== '')('example app in Chromium' + (missing ? ` (skipped: needs ${missing})` : ''), () => {
  let server: Server;
  let front: Front;
  let browser: Browser;
  let bin: string;
  let page: Page;
  const problems: string[] = [];

  beforeAll(async () => {
    bin = inject('realtimeBin');
    server = await startServer(bin, {
      REALTIME_RETENTION: String(RETENTION),
      REALTIME_PRESENCE_GRACE: '200ms',
      REALTIME_PRESENCE_INTERVAL: '100ms',
    });
    front = new Front(inject('exampleDir'), server.url);
    await front.listen();
    browser = await pw.launch({ executablePath: chromium, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
  });
  afterAll(async () => {
    await browser?.close();
    await front?.close();
    await server?.stop();
  });
  afterEach(async () => {
    front.unblock();
    front.release();
    await page?.context().close();
    const p = problems.splice(0);
    expect(p, 'console errors and uncaught exceptions').toEqual([]);
  });

  // open loads the example for sub on ws, with a fast client.
  async function open(ws: string, tok: string, opts = 'initialDelay=200&maxDelay=800&maxAttempts=40'): Promise<Page> {
    const ctx = await browser.newContext();
    ctx.setDefaultTimeout(15000);
    page = await ctx.newPage();
    page.on('console', (m) => {
      // A cut connection or a refused publish is reported by the browser
      // itself; the page must not log errors of its own.
      if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push('console error: ' + m.text());
    });
    page.on('pageerror', (e) => problems.push('uncaught: ' + e.message));
    await page.goto(`${front.url}/?${opts}&workspace=${encodeURIComponent(ws)}#token=${encodeURIComponent(tok)}`);
    await live(page);
    await settled(page);
    return page;
  }
  const state = (p: Page) => p.getAttribute('[data-realtime-status]', 'data-state');
  const live = (p: Page) => p.waitForSelector('[data-realtime-status][data-state="live"]', { timeout: 15000 });
  // settled waits until no query is fetching.
  const settled = (p: Page) => p.waitForFunction(() => (window as any).queryClient.isFetching() === 0, undefined, { timeout: 15000 });
  const cache = (p: Page, key: unknown[]) => p.evaluate((k) => (window as any).queryClient.getQueryData(k), key);
  const fetches = (p: Page) => p.evaluate(() => ({ ...(window as any).fetches }));
  const count = (p: Page, sel: string) => p.locator(sel).count();

  test('each event type changes the cache and the rendered list', async () => {
    const ws = 'ws-events';
    const u1 = token(bin, 'u1', ws);
    const u2 = token(bin, 'u2', ws);
    const p = await open(ws, u1);
    const publish = (body: unknown, tok = u1) => api(server, tok, ws, '/events', body);

    await publish({ type: 'approval.created', data: { id: 'a1', title: 'Deploy', status: 'pending' } });
    await p.waitForSelector('#approvals li[data-id="a1"][data-status="pending"]');
    expect(await cache(p, ['realtime', ws, 'approvals'])).toEqual([{ id: 'a1', title: 'Deploy', status: 'pending' }]);

    await publish({ type: 'approval.updated', data: { id: 'a1', status: 'approved' } });
    await p.waitForSelector('#approvals li[data-id="a1"][data-status="approved"]');
    expect(await cache(p, ['realtime', ws, 'approvals'])).toEqual([{ id: 'a1', title: 'Deploy', status: 'approved' }]);

    await publish({ type: 'approval.created', data: { id: 'a2', title: 'Refund', status: 'pending' } });
    await publish({ type: 'approval.deleted', data: { id: 'a1' } });
    await p.waitForSelector('#approvals li[data-id="a1"]', { state: 'detached' });
    expect(await cache(p, ['realtime', ws, 'approvals'])).toEqual([{ id: 'a2', title: 'Refund', status: 'pending' }]);
    expect(await count(p, '#approvals li')).toBe(1);

    await publish({ type: 'agent.status.changed', data: { agentId: 'g1', status: 'running', name: 'Indexer' } });
    await p.waitForSelector('#agents li[data-agent="g1"][data-status="running"]');
    await publish({ type: 'agent.status.changed', data: { agentId: 'g1', status: 'error' } });
    await p.waitForSelector('#agents li[data-agent="g1"][data-status="error"]');
    expect(await cache(p, ['realtime', ws, 'agents'])).toEqual([{ agentId: 'g1', status: 'error', name: 'Indexer' }]);

    await publish({ type: 'notification.new', targetUserId: 'u1', data: { id: 'n1', title: 'For you' } });
    await publish({ type: 'notification.new', targetUserId: 'u2', data: { id: 'n2', title: 'Not for you' } });
    await publish({ type: 'notification.new', data: { id: 'n3', title: 'For everyone' } });
    await p.waitForSelector('#notifications li[data-id="n3"]');
    expect(await p.textContent('#unread')).toBe('2');
    expect(await p.locator('#notifications li').evaluateAll((els) => els.map((e) => e.getAttribute('data-id')))).toEqual(['n3', 'n1']);
    expect(((await cache(p, ['realtime', ws, 'notifications', 'u1'])) as unknown[]).length).toBe(2);

    for (const [id, text] of [['m1', 'one'], ['m2', 'two'], ['m1', 'one'], ['m3', 'three']]) {
      await publish({ type: 'chat.message', data: { chatId: 'general', id, text, author: 'u2' } }, u2);
    }
    await p.waitForSelector('#chat .msg[data-id="m3"]');
    expect(await p.locator('#chat .msg .text').allTextContents()).toEqual(['one', 'two', 'three']);
    expect(((await cache(p, ['realtime', ws, 'chat', 'general'])) as Array<{ text: string }>).map((m) => m.text)).toEqual(['one', 'two', 'three']);

    // Typing: the page asks for presence and typing (types=*).
    await api(server, u2, ws, '/chats/general/typing', { typing: true });
    await p.waitForFunction(() => document.getElementById('typing')!.textContent === 'u2 is typing…');
    await api(server, u2, ws, '/chats/general/typing', { typing: false });
    await p.waitForFunction(() => document.getElementById('typing')!.textContent === '');
  });

  test('an approval created while the page is reconnecting appears once after it reconnects', async () => {
    const ws = 'ws-reconnect';
    const u1 = token(bin, 'u1', ws);
    const p = await open(ws, u1);
    await api(server, u1, ws, '/events', { type: 'approval.created', data: { id: 'before', title: 'Before' } });
    await p.waitForSelector('#approvals li[data-id="before"]');
    const before = await fetches(p);

    front.block();
    await p.waitForSelector('[data-realtime-status][data-state="reconnecting"]');
    const attempt = Number(await p.getAttribute('[data-realtime-status]', 'data-attempt'));
    expect(attempt).toBeGreaterThanOrEqual(1);
    expect(Number(await p.getAttribute('[data-realtime-status]', 'data-delay'))).toBeGreaterThan(0);
    expect(await p.textContent('[data-realtime-status]')).toMatch(/^Reconnecting… \(attempt \d+\/40, next in \d+s\)$/);
    await api(server, u1, ws, '/events', { type: 'approval.created', data: { id: 'during', title: 'Created while away' } });
    // Still away, and it keeps trying with growing attempts.
    await p.waitForFunction((a) => Number(document.querySelector('[data-realtime-status]')!.getAttribute('data-attempt')) > a, attempt);
    expect(await count(p, '#approvals li[data-id="during"]')).toBe(0);

    front.unblock();
    await live(p);
    await p.waitForSelector('#approvals li[data-id="during"]');
    await settled(p);
    expect(await count(p, '#approvals li[data-id="during"]')).toBe(1);
    const ids = ((await cache(p, ['realtime', ws, 'approvals'])) as Array<{ id: string }>).map((a) => a.id);
    expect(ids).toEqual(['during', 'before']);
    // It came with the resumed stream: no reset, no refetch.
    expect(await fetches(p)).toEqual(before);
    expect(await p.evaluate(() => document.body.dataset.resets)).toBeUndefined();
  });

  test('ConnectionStatus shows lost with a Retry that works', async () => {
    const ws = 'ws-lost';
    const u1 = token(bin, 'u1', ws);
    const p = await open(ws, u1, 'initialDelay=100&maxDelay=200&maxAttempts=2');
    expect(await p.textContent('[data-realtime-status]')).toBe('Live');
    front.block();
    await p.waitForSelector('[data-realtime-status][data-state="lost"]');
    expect(await p.textContent('[data-realtime-status] [data-part="text"]')).toBe('Connection lost');
    await api(server, u1, ws, '/events', { type: 'approval.created', data: { id: 'while-lost' } });
    // Given up: nothing comes back by itself.
    front.unblock();
    await new Promise((r) => setTimeout(r, 600));
    expect(await state(p)).toBe('lost');
    await p.click('[data-realtime-status] button[data-part="retry"]');
    await live(p);
    await p.waitForSelector('#approvals li[data-id="while-lost"]');
    expect(await count(p, '[data-realtime-status] button')).toBe(0);
  });

  test('a reset refetches the workspace queries', async () => {
    const ws = 'ws-reset';
    const u1 = token(bin, 'u1', ws);
    const p = await open(ws, u1);
    await api(server, u1, ws, '/events', { type: 'approval.created', data: { id: 'old', title: 'Old' } });
    await p.waitForSelector('#approvals li[data-id="old"]'); // the page's cursor is now this event
    const before = await fetches(p);

    front.block();
    await p.waitForSelector('[data-realtime-status][data-state="reconnecting"]');
    // More than the retention while the page is away: its cursor is trimmed.
    await api(server, u1, ws, '/events', { type: 'approval.deleted', data: { id: 'old' } });
    for (let i = 0; i < RETENTION + 20; i++) await api(server, u1, ws, '/events', { type: 'chat.message', data: { chatId: 'general', id: 'm' + i, text: 'msg ' + i } });
    await api(server, u1, ws, '/events', { type: 'approval.created', data: { id: 'new', title: 'New' } });

    front.unblock();
    await p.waitForFunction(() => document.body.dataset.resets === '1', undefined, { timeout: 15000 });
    await live(p);
    await settled(p);
    const after = await fetches(p);
    for (const q of ['approvals', 'agents', 'notifications', 'chat']) expect(after[q], q).toBe(before[q] + 1);
    // The lists are what the service holds now.
    await p.waitForSelector('#approvals li[data-id="old"]', { state: 'detached' });
    expect(await p.locator('#approvals li').evaluateAll((els) => els.map((e) => e.getAttribute('data-id')))).toEqual(['new']);
    const texts = await p.locator('#chat .msg .text').allTextContents();
    expect(texts.length).toBeLessThan(RETENTION + 20);
    expect(texts[texts.length - 1]).toBe(`msg ${RETENTION + 19}`);
    expect(new Set(texts).size).toBe(texts.length);
  });

  test('an optimistic chat message is confirmed by its event', async () => {
    const ws = 'ws-chat';
    const u1 = token(bin, 'u1', ws);
    const p = await open(ws, u1);
    front.hold();
    await p.fill('#composer-text', 'hello world');
    await p.click('#composer button[type="submit"]');
    // Shown at once, before the service has it.
    await p.waitForSelector('#chat .msg[data-pending="true"]');
    expect(await p.textContent('#chat .msg[data-pending="true"] .text')).toBe('hello world');
    await eventually('the publish to be held', () => front.heldCount === 1);
    front.release();
    await p.waitForSelector('#chat .msg[data-event-id]:not([data-pending])');
    expect(await p.locator('#chat .msg .text').allTextContents()).toEqual(['hello world']);
    const log = await api(server, u1, ws, '/events?cursor=0');
    expect(log.events).toHaveLength(1);
    expect(await p.getAttribute('#chat .msg', 'data-event-id')).toBe(log.events[0].id);
    const msgs = (await cache(p, ['realtime', ws, 'chat', 'general'])) as Array<{ text: string; correlationId: string }>;
    expect(msgs).toEqual([expect.objectContaining({ text: 'hello world', correlationId: log.events[0].correlationId })]);
    expect(await cache(p, ['realtime', ws, 'chat', 'general', 'pending'])).toEqual([]);
  });

  test('an optimistic chat message is rolled back when the publish is refused', async () => {
    const ws = 'ws-chat-ro';
    const readOnly = token(bin, 'reader', ws, false); // no events:publish scope
    const p = await open(ws, readOnly);
    front.hold();
    await p.fill('#composer-text', 'not allowed');
    await p.click('#composer button[type="submit"]');
    await p.waitForSelector('#chat .msg[data-pending="true"]');
    await eventually('the publish to be held', () => front.heldCount === 1);
    front.release();
    await p.waitForSelector('#chat .msg', { state: 'detached' });
    expect(await p.textContent('#chat-error')).toMatch(/^Not sent: publish refused: 403 forbidden/);
    expect(await p.inputValue('#composer-text')).toBe('not allowed');
    expect(await cache(p, ['realtime', ws, 'chat', 'general', 'pending'])).toEqual([]);
    expect(await cache(p, ['realtime', ws, 'chat', 'general'])).toEqual([]);
  });

  test('unmounting the provider closes the stream, as the service sees', async () => {
    const ws = 'ws-unmount';
    const user = token(bin, 'u-unmount', ws);
    const watcher = token(bin, 'watcher', ws);
    const present = async () => ((await api(server, watcher, ws, '/presence')).users as Array<{ userId: string }>).map((u) => u.userId);
    const p = await open(ws, user);
    await eventually('u-unmount to be present', async () => (await present()).includes('u-unmount'));
    expect(front.openStreams).toBe(1);
    await p.click('#toggle');
    await p.waitForSelector('#unmounted');
    // The service drops a user's presence once their last stream closes (after the 200ms grace).
    await eventually('u-unmount to be gone', async () => !(await present()).includes('u-unmount'));
    expect(front.openStreams).toBe(0);
    await p.click('#toggle');
    await live(p);
    await eventually('u-unmount to be back', async () => (await present()).includes('u-unmount'));
    expect(front.openStreams).toBe(1);
  });
});
