// Builds dist/: the library with Vite, its declarations with tsc, and
// realtime.js's declarations beside them, so that dist needs nothing
// outside this folder.
import { execFileSync } from 'node:child_process';
import { copyFileSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'vite';

const root = new URL('..', import.meta.url).pathname;
await build({ root, configFile: join(root, 'vite.config.ts'), logLevel: 'warn' });
execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
const dist = join(root, 'dist');
copyFileSync(join(root, '../realtime.d.ts'), join(dist, 'realtime.d.ts'));
for (const f of readdirSync(dist)) {
  if (!f.endsWith('.d.ts')) continue;
  const p = join(dist, f);
  const s = readFileSync(p, 'utf8');
  writeFileSync(p, s.replaceAll("'../../realtime.js'", "'./realtime.js'"));
}
