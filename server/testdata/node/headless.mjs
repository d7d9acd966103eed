// Headless Chromium driven over the DevTools protocol, for the tests'
// Node scripts (chromium.mjs, demo.mjs).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';

// launch starts Chromium (bin) with a fresh profile and extra flags, and
// kills it after timeoutMs with {"error":"timeout"}. It returns the
// DevTools base URL (a promise) and finish, which prints out as one JSON
// line, kills Chromium, removes the profile and exits with code.
export function launch(bin, { prefix = 'loopcast-chromium-', flags = [], timeoutMs = 30000 } = {}) {
  const profile = mkdtempSync(join(tmpdir(), prefix));
  const chrome = spawn(bin, [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    `--user-data-dir=${profile}`, '--remote-debugging-port=0', ...flags, 'about:blank',
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  const finish = (out, code) => {
    // Chromium first: the Go test stops this script as soon as it has read
    // the line, and a Chromium not killed by then would outlive the test.
    chrome.kill('SIGKILL');
    console.log(JSON.stringify(out));
    try { rmSync(profile, { recursive: true, force: true }); } catch {}
    process.exit(code);
  };
  setTimeout(() => finish({ error: 'timeout' }, 1), timeoutMs);
  const devtools = new Promise((ok) => {
    chrome.stderr.on('data', (d) => {
      const m = /DevTools listening on ws:\/\/127\.0\.0\.1:(\d+)\//.exec(String(d));
      if (m) ok(`http://127.0.0.1:${m[1]}`);
    });
  });
  return { devtools, finish };
}

// cdp connects to one target's DevTools WebSocket. call sends a method
// and resolves with its answer; evaluate runs an expression in the page
// (awaiting a promise) and resolves with its value, or rejects with the
// page's exception.
export function cdp(wsURL) {
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
    const ex = r.result?.exceptionDetails;
    if (ex) throw new Error(ex.exception?.description || ex.text || 'exception');
    return r.result?.result?.value;
  };
  return new Promise((ok) => ws.on('open', () => ok({ call, evaluate })));
}
