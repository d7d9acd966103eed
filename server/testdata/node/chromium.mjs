// Headless Chromium over the DevTools protocol: a page opens WebSockets
// to the server (browsers always offer permessage-deflate), echoes a large
// text and a large binary message through /echo, and publishes a large
// message to a room it is in, which comes back compressed. Prints one JSON
// object with what the page saw.
//
//   node chromium.mjs <chromium binary> <server host:port>
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';

const [bin, server] = process.argv.slice(2);
const profile = mkdtempSync(join(tmpdir(), 'loopcast-chromium-'));
const chrome = spawn(bin, [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  `--user-data-dir=${profile}`, '--remote-debugging-port=0', 'about:blank',
], { stdio: ['ignore', 'ignore', 'pipe'] });
const done = (out, code) => {
  console.log(JSON.stringify(out));
  chrome.kill('SIGKILL');
  try { rmSync(profile, { recursive: true, force: true }); } catch {}
  process.exit(code);
};
setTimeout(() => done({ error: 'timeout' }, 1), 30000);

// The page's part: runs in Chromium.
const page = async (server) => {
  const open = (path) => new Promise((ok, fail) => {
    const ws = new WebSocket(`ws://${server}${path}`);
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => ok(ws);
    ws.onerror = () => fail(new Error('connect ' + path));
  });
  const next = (ws) => new Promise((ok) => { ws.onmessage = (e) => ok(e.data); });
  const text = '{"symbol":"EURUSD","bid":1.0842,"ask":1.0844}'.repeat(300);
  const bin = new Uint8Array(50000).map((_, i) => i % 7);
  const out = {};
  const echo = await open('/echo');
  out.extensions = echo.extensions;
  echo.send(text);
  out.textEcho = (await next(echo)) === text;
  echo.send(bin);
  const b = new Uint8Array(await next(echo));
  out.binaryEcho = b.length === bin.length && b.every((v, i) => v === bin[i]);
  echo.close();
  const room = await open('/ws/chromium');
  const msg = '{"dashboard":"sales","values":[1,2,3,4,5,6,7,8,9,10]}'.repeat(40);
  room.send(msg);
  out.room = (await next(room)) === msg;
  room.close();
  return out;
};

let port;
chrome.stderr.on('data', async (d) => {
  const m = /DevTools listening on ws:\/\/127\.0\.0\.1:(\d+)\//.exec(String(d));
  if (!m || port) return;
  port = m[1];
  try {
    const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
    const target = targets.find((t) => t.type === 'page');
    const cdp = new WebSocket(target.webSocketDebuggerUrl);
    cdp.on('open', () => cdp.send(JSON.stringify({
      id: 1, method: 'Runtime.evaluate',
      params: { expression: `(${page})(${JSON.stringify(server)})`, awaitPromise: true, returnByValue: true },
    })));
    cdp.on('message', (raw) => {
      const r = JSON.parse(String(raw));
      if (r.id !== 1) return;
      if (r.result?.exceptionDetails) done({ error: r.result.exceptionDetails.exception?.description || 'exception' }, 1);
      done(r.result.result.value, 0);
    });
  } catch (e) {
    done({ error: String(e) }, 1);
  }
});
