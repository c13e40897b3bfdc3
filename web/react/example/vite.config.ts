// The example app. `npm run example` serves it on http://127.0.0.1:5173
// and proxies the API to the service (REALTIME_URL, by default
// http://127.0.0.1:8080, where `make run` listens), so the page and the
// API share an origin. `vite build --config example/vite.config.ts`
// writes example/dist, which the browser tests serve the same way.
import { defineConfig } from 'vite';

const target = process.env.REALTIME_URL || 'http://127.0.0.1:8080';

export default defineConfig({
  root: import.meta.dirname,
  oxc: { jsx: { runtime: 'automatic' } },
  server: {
    host: '127.0.0.1',
    port: 5173,
    proxy: {
      '/v1': { target, changeOrigin: true },
      // In --dev mode the dashboard carries a token for user "dev"; the
      // example signs in with it when the URL brings none.
      '/dev-token': { target, changeOrigin: true, rewrite: () => '/' },
    },
  },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: true,
    rolldownOptions: {
      // react-query's "use client" lines mean nothing in a browser bundle.
      onLog(level, log, handler) {
        if (log.code !== 'MODULE_LEVEL_DIRECTIVE') handler(level, log);
      },
    },
  },
});
