import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { App, type Config } from './App';
import './app.css';

// Configuration comes from the URL, like the dashboard's: the fragment
// carries the token (#token=...&workspace=..., never sent to a server);
// query parameters pick the workspace and tune the client
// (?workspace=demo&initialDelay=200&maxAttempts=4&baseUrl=http://...).
// Without a token it signs in as `make run`'s dev user.
async function config(): Promise<Config> {
  const frag = new URLSearchParams(location.hash.slice(1));
  const query = new URLSearchParams(location.search);
  let token = frag.get('token') || '';
  if (!token) {
    try {
      const html = await (await fetch('/dev-token')).text();
      token = new DOMParser().parseFromString(html, 'text/html').querySelector('meta[name="realtime-dev-token"]')?.getAttribute('content') || '';
    } catch {
      /* no dev server behind the proxy */
    }
  }
  const num = (name: string) => {
    const v = query.get(name);
    return v === null || v === '' || Number.isNaN(Number(v)) ? undefined : Number(v);
  };
  return {
    token,
    workspaceId: frag.get('workspace') || query.get('workspace') || 'demo',
    baseUrl: query.get('baseUrl') || '',
    options: {
      initialDelay: num('initialDelay'),
      maxDelay: num('maxDelay'),
      maxAttempts: num('maxAttempts'),
      firstFrameTimeout: num('firstFrameTimeout'),
      stallTimeout: num('stallTimeout'),
      pollWait: num('pollWait'),
    },
    confirmTimeout: num('confirmTimeout'),
  };
}

const queryClient = new QueryClient({ defaultOptions: { queries: { retry: 1, refetchOnWindowFocus: false } } });
(window as unknown as { queryClient: QueryClient }).queryClient = queryClient; // for the browser tests and the console

config().then((cfg) =>
  createRoot(document.getElementById('root')!).render(
    <StrictMode>
      <QueryClientProvider client={queryClient}>
        <App config={cfg} />
      </QueryClientProvider>
    </StrictMode>,
  ),
);
