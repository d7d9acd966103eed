// Two headless Chromium pages on the demo (/demo/): they chat; the Go
// test then cuts every connection (its gateway), both pages reconnect and
// resume while the ticker runs; prints what each page received.
//
//   node demo.mjs <chromium> <http://host:port/demo/> [screenshot.png]
// Protocol with the Go test: prints "ready" once both pages chatted and saw
// ticks; waits for a line "dropped" on stdin; prints the JSON result.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import readline from 'node:readline';
import WebSocket from 'ws';

const [bin, url, shot] = process.argv.slice(2);
const profile = mkdtempSync(join(tmpdir(), 'loopcast-demo-'));
const chrome = spawn(bin, ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  `--user-data-dir=${profile}`, '--remote-debugging-port=0', '--window-size=1000,700', 'about:blank'], { stdio: ['ignore', 'ignore', 'pipe'] });
const finish = (out, code) => {
  console.log(JSON.stringify(out));
  chrome.kill('SIGKILL');
  try { rmSync(profile, { recursive: true, force: true }); } catch {}
  process.exit(code);
};
setTimeout(() => finish({ error: 'timeout' }, 1), 60000);
const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

function cdp(wsURL) {
  const ws = new WebSocket(wsURL);
  let id = 0;
  const waiting = new Map();
  ws.on('message', (raw) => {
    const m = JSON.parse(String(raw));
    if (m.id && waiting.has(m.id)) { waiting.get(m.id)(m); waiting.delete(m.id); }
  });
  const call = (method, params = {}) => new Promise((ok) => { const n = ++id; waiting.set(n, ok); ws.send(JSON.stringify({ id: n, method, params })); });
  const evaluate = async (expr) => {
    const r = await call('Runtime.evaluate', { expression: expr, awaitPromise: true, returnByValue: true });
    if (r.result?.exceptionDetails) throw new Error(r.result.exceptionDetails.text);
    return r.result?.result?.value;
  };
  return new Promise((ok) => ws.on('open', () => ok({ call, evaluate })));
}

async function until(page, expr, ms = 20000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    try { if (await page.evaluate(expr)) return; } catch {}
    await sleep(50);
  }
  throw new Error('timed out: ' + expr);
}

let port;
chrome.stderr.on('data', async (d) => {
  const m = /DevTools listening on ws:\/\/127\.0\.0\.1:(\d+)\//.exec(String(d));
  if (!m || port) return;
  port = m[1];
  try {
    const base = `http://127.0.0.1:${port}`;
    const pages = [];
    for (let i = 0; i < 2; i++) {
      const t = await (await fetch(`${base}/json/new?${encodeURIComponent(url)}`, { method: 'PUT' })).json();
      pages.push(await cdp(t.webSocketDebuggerUrl));
    }
    for (const p of pages) await until(p, `window.loopcastDemo?.client.state === 'open'`);
    await sleep(300);
    await pages[0].evaluate(`document.getElementById('text').value = 'hello from page 1'; document.getElementById('send').requestSubmit(); true`);
    for (const p of pages) await until(p, `[...document.querySelectorAll('#chat li')].some((li) => li.textContent === 'hello from page 1')`);
    for (const p of pages) await until(p, `window.loopcastDemo.received['demo.ticker'].length >= 3`);
    console.log('ready');
    const rl = readline.createInterface({ input: process.stdin });
    await new Promise((ok) => rl.on('line', (l) => { if (l === 'dropped') ok(); }));
    for (const p of pages) await until(p, `window.loopcastDemo.reconnects >= 1 && window.loopcastDemo.client.state === 'open'`);
    const after = await Promise.all(pages.map((p) => p.evaluate(`window.loopcastDemo.received['demo.ticker'].length`)));
    for (const [i, p] of pages.entries()) await until(p, `window.loopcastDemo.received['demo.ticker'].length >= ${after[i] + 4}`);
    if (shot) {
      const r = await pages[0].call('Page.captureScreenshot', { format: 'png' });
      writeFileSync(shot, Buffer.from(r.result.data, 'base64'));
    }
    const out = await Promise.all(pages.map((p) => p.evaluate(`({ ticker: window.loopcastDemo.received['demo.ticker'], chat: window.loopcastDemo.received['demo.chat'], missed: window.loopcastDemo.missed, replayed: window.loopcastDemo.replayed, reconnects: window.loopcastDemo.reconnects, resume: document.getElementById('resume').textContent })`)));
    finish({ pages: out }, 0);
  } catch (e) {
    finish({ error: String(e) }, 1);
  }
});
