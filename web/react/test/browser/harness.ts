// The real parts of the browser tests: a `realtime serve` process, tokens
// from `realtime token`, and a same-origin front for the example app that
// serves its build and proxies /v1 to the service, and that a test can
// block (every connection cut, new ones refused, as if the service were
// gone) or make hold publishes until released.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createReadStream, existsSync, statSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { extname, join, normalize } from 'node:path';
import { createInterface } from 'node:readline';

export const SECRET = 'react-browser-tests-secret-0123456789abcdef';

export interface Server {
  url: string;
  proc: ChildProcess;
  stderr: () => string;
  stop(): Promise<void>;
}

/** startServer runs `realtime serve` on a free loopback port. */
export async function startServer(bin: string, env: Record<string, string>): Promise<Server> {
  const proc = spawn(bin, ['serve'], {
    env: { ...process.env, REALTIME_ADDR: '127.0.0.1:0', REALTIME_JWT_SECRET: SECRET, REALTIME_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  proc.stderr!.on('data', (b) => (err += b));
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const url = await new Promise<string>((resolve, reject) => {
    const rl = createInterface({ input: proc.stdout! });
    rl.on('line', (line) => {
      const m = /^listening on (.+)$/.exec(line);
      if (m) resolve('http://' + m[1]);
    });
    proc.once('exit', (code) => reject(new Error(`realtime serve exited ${code}: ${err}`)));
  });
  return {
    url,
    proc,
    stderr: () => err,
    async stop() {
      proc.kill('SIGKILL');
      await exited;
    },
  };
}

/** token mints a JWT for sub on workspace with `realtime token`. */
export function token(bin: string, sub: string, workspace: string, publish = true): string {
  const args = ['token', '--sub', sub, '--workspace', workspace, '--ttl', '1h'];
  if (publish) args.push('--scope', 'events:publish');
  return execFileSync(bin, args, { env: { ...process.env, REALTIME_JWT_SECRET: SECRET } }).toString().trim();
}

/** api calls the service directly (not through the front), as another client would. */
export async function api(server: Server, tok: string, ws: string, path: string, body?: unknown): Promise<any> {
  const res = await fetch(`${server.url}/v1/workspaces/${encodeURIComponent(ws)}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { Authorization: 'Bearer ' + tok, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

const TYPES: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.map': 'application/json' };

export class Front {
  url = '';
  /** Streams open through the front right now. */
  openStreams = 0;
  private server: http.Server;
  private sockets = new Set<Socket>();
  private blocked = false;
  private holding = false;
  private held: Array<() => void> = [];

  constructor(
    private root: string,
    private target: string,
  ) {
    this.server = http.createServer((req, res) => this.handle(req, res));
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
      if (this.blocked) s.destroy();
    });
  }

  async listen(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = 'http://127.0.0.1:' + (this.server.address() as AddressInfo).port;
  }

  /** block cuts every connection and refuses new ones until unblock. */
  block(): void {
    this.blocked = true;
    for (const s of this.sockets) s.destroy();
  }
  unblock(): void {
    this.blocked = false;
  }
  /** hold keeps publishes (POST …/events) waiting until release. */
  hold(): void {
    this.holding = true;
  }
  release(): void {
    this.holding = false;
    for (const go of this.held.splice(0)) go();
  }
  get heldCount(): number {
    return this.held.length;
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((r) => this.server.close(() => r()));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse) {
    const url = new URL(req.url || '/', 'http://front');
    if (!url.pathname.startsWith('/v1/')) return this.serveFile(url.pathname, res);
    if (this.blocked) return req.socket.destroy();
    const go = () => this.forward(req, res, url);
    if (this.holding && req.method === 'POST' && url.pathname.endsWith('/events')) this.held.push(go);
    else go();
  }

  private forward(req: http.IncomingMessage, res: http.ServerResponse, url: URL) {
    if (this.blocked) return req.socket.destroy();
    const t = new URL(this.target);
    const stream = url.pathname.endsWith('/events/stream');
    const up = http.request({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers: { ...req.headers, host: t.host } }, (upRes) => {
      res.writeHead(upRes.statusCode || 502, upRes.headers);
      res.flushHeaders();
      upRes.pipe(res);
    });
    up.on('error', () => req.socket.destroy());
    if (stream) {
      this.openStreams += 1;
      res.once('close', () => {
        this.openStreams -= 1;
        up.destroy();
      });
    } else {
      res.once('close', () => up.destroy());
    }
    req.pipe(up);
  }

  private serveFile(pathname: string, res: http.ServerResponse) {
    let p = normalize(join(this.root, decodeURIComponent(pathname)));
    if (!p.startsWith(this.root) || !existsSync(p) || statSync(p).isDirectory()) p = join(this.root, 'index.html');
    res.writeHead(200, { 'Content-Type': TYPES[extname(p)] || 'application/octet-stream', 'Cache-Control': 'no-store' });
    createReadStream(p).pipe(res);
  }
}

/** eventually polls check until it returns true, or fails after timeout ms with what it saw. */
export async function eventually(what: string, check: () => boolean | Promise<boolean>, timeout = 15000): Promise<void> {
  const end = Date.now() + timeout;
  for (;;) {
    if (await check()) return;
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await new Promise((r) => setTimeout(r, 50));
  }
}
