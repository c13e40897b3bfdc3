// Unit tests: the provider, hooks, ConnectionStatus and optimistic updates
// with the real realtime.js over a fake EventSource and fetch, in jsdom.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  oxc: { jsx: { runtime: 'automatic' } },
  test: {
    include: ['test/unit/**/*.test.{ts,tsx}'],
    environment: 'jsdom',
  },
});
