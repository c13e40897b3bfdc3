// Global setup of the browser tests: builds the service's binary from this
// repository and the example app with Vite, once per run.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'vite';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    realtimeBin: string;
    exampleDir: string;
    missing: string;
  }
}

export const chromium = process.env.CHROMIUM || '/usr/bin/chromium';

export default async function setup(project: TestProject) {
  const pkg = new URL('../..', import.meta.url).pathname;
  const repo = join(pkg, '../..');
  const missing = [];
  if (!existsSync(chromium)) missing.push(`chromium (${chromium}; Debian's chromium package)`);
  try {
    execFileSync('go', ['version'], { stdio: 'ignore' });
  } catch {
    missing.push('go');
  }
  project.provide('missing', missing.join(', '));
  if (missing.length) {
    if (process.env.CI === 'true') throw new Error('browser tests need ' + missing.join(' and ') + ' under CI=true (.ci/run installs chromium)');
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'realtime-react-'));
  const bin = join(dir, 'realtime');
  execFileSync('go', ['build', '-o', bin, './cmd/realtime'], { cwd: repo, stdio: 'inherit' });
  const example = join(dir, 'example');
  await build({ configFile: join(pkg, 'example/vite.config.ts'), logLevel: 'warn', build: { outDir: example, emptyOutDir: true } });
  project.provide('realtimeBin', bin);
  project.provide('exampleDir', example);
  return () => rmSync(dir, { recursive: true, force: true });
}
