// Prints the package's bundled size: src/index.ts with realtime.js,
// minified, without its peers (react, @tanstack/react-query).
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';

const root = new URL('..', import.meta.url).pathname;
const out = await build({
  entryPoints: [root + 'src/index.ts'],
  bundle: true,
  minify: true,
  format: 'esm',
  write: false,
  jsx: 'automatic',
  external: ['react', 'react/*', 'react-dom', '@tanstack/react-query'],
  logLevel: 'warning',
});
const code = out.outputFiles[0].contents;
console.log(`@realtime/react: ${code.length} bytes minified, ${gzipSync(code).length} bytes gzipped (peers excluded)`);
