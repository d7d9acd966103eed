// Two headless Chromium pages on the demo (/demo/), as users ana and bo:
// each sees both in the chat's presence and at least two watching the
// ticker; they chat; the Go test then cuts every connection (its
// gateway), both pages reconnect and resume while the ticker runs (and
// nobody leaves the presence list); then bo's page closes and ana's sees
// bo leave. Prints what each page received.
//
//   node demo.mjs <chromium> <http://host:port/demo/> [screenshot.png]
// Protocol with the Go test: prints "ready" once both pages chatted and saw
// ticks; waits for a line "dropped" on stdin; prints the JSON result.
import { writeFileSync } from 'node:fs';
import readline from 'node:readline';
import { cdp, launch } from './headless.mjs';

const [bin, url, shot] = process.argv.slice(2);
const { devtools, finish } = launch(bin, { prefix: 'loopcast-demo-', flags: ['--window-size=1000,700'], timeoutMs: 60000 });
const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

async function until(page, expr, ms = 20000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    try { if (await page.evaluate(expr)) return; } catch {}
    await sleep(50);
  }
  throw new Error('timed out: ' + expr);
}

try {
  const base = await devtools;
  const pages = [];
  const targets = [];
  for (const user of ['ana', 'bo']) {
    const t = await (await fetch(`${base}/json/new?${encodeURIComponent(url + '?user=' + user)}`, { method: 'PUT' })).json();
    targets.push(t);
    pages.push(await cdp(t.webSocketDebuggerUrl));
  }
  for (const p of pages) await until(p, `window.loopcastDemo?.client.state === 'open'`);
  for (const p of pages) await until(p, `window.loopcastDemo.here.join(',') === 'ana,bo' && window.loopcastDemo.watching >= 2`);
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
  const out = await Promise.all(pages.map((p) => p.evaluate(`({ ticker: window.loopcastDemo.received['demo.ticker'], chat: window.loopcastDemo.received['demo.chat'], missed: window.loopcastDemo.missed, replayed: window.loopcastDemo.replayed, reconnects: window.loopcastDemo.reconnects, resume: document.getElementById('resume').textContent, leaves: window.loopcastDemo.presenceLog.flatMap((e) => e.left), here: window.loopcastDemo.here })`)));
  // bo closes the page: ana sees bo leave.
  await fetch(`${base}/json/close/${targets[1].id}`);
  await until(pages[0], `window.loopcastDemo.here.join(',') === 'ana'`);
  const left = await pages[0].evaluate(`window.loopcastDemo.presenceLog.flatMap((e) => e.left)`);
  finish({ pages: out, anaSawLeave: left }, 0);
} catch (e) {
  finish({ error: String(e) }, 1);
}
