// The library build: dist/index.js, ESM, with realtime.js bundled in and
// the peers (react, @tanstack/react-query) left out.
import { defineConfig } from 'vite';

const peers = [/^react($|\/)/, /^react-dom($|\/)/, /^@tanstack\/react-query($|\/)/];

export default defineConfig({
  oxc: { jsx: { runtime: 'automatic' } },
  build: {
    lib: { entry: 'src/index.ts', formats: ['es'], fileName: 'index' },
    rolldownOptions: { external: peers },
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: true,
    minify: false,
    target: 'es2020',
  },
});
