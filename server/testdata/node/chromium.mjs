// Headless Chromium over the DevTools protocol: a page opens WebSockets
// to the server (browsers always offer permessage-deflate), echoes a large
// text and a large binary message through /echo, and publishes a large
// message to a room it is in, which comes back compressed. Prints one JSON
// object with what the page saw.
//
//   node chromium.mjs <chromium binary> <server host:port>
import { cdp, launch } from './headless.mjs';

const [bin, server] = process.argv.slice(2);
const { devtools, finish } = launch(bin);

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

try {
  const base = await devtools;
  const targets = await (await fetch(`${base}/json/list`)).json();
  const target = await cdp(targets.find((t) => t.type === 'page').webSocketDebuggerUrl);
  finish(await target.evaluate(`(${page})(${JSON.stringify(server)})`), 0);
} catch (e) {
  finish({ error: String(e) }, 1);
}
