// Drain and takeover: the instance drains (1001 to every client), the
// client reconnects to another instance through the gateway, and is told
// it could not resume (another instance without a shared log: epoch_changed),
// never silently; a draining server's 503 Retry-After is honoured.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { Client } from '../index.js';
import { startLoopcast, startProxy, adminPublish, sleep, until } from './harness.mjs';

test('a drain moves the client to another instance and the loss is reported', async () => {
  const a = await startLoopcast(['--drain-delay', '0s', '--drain-duration', '0s']);
  const b = await startLoopcast();
  const gw = await startProxy([a.addr, b.addr]);
  const c = new Client(`ws://${gw.addr}/ws`, { WebSocket, backoffInitial: 50, backoffMax: 200 });
  const got = [];
  const lost = [];
  const closes = [];
  c.on('close', (e) => closes.push(e.code));
  c.subscribe('news', { message: (m) => got.push(m.data), lost: (l) => lost.push(l) });
  await until('open', () => c.state === 'open');
  await sleep(100);
  await adminPublish(a.admin, 'news', 'before');
  await until('first message', () => got.length === 1);
  a.proc.kill('SIGTERM');
  await until('the 1001 close', () => closes.includes(1001));
  await until('reconnected to b', () => c.state === 'open' && lost.length === 1);
  assert.equal(lost[0].reason, 'epoch_changed');
  await sleep(100);
  await adminPublish(b.admin, 'news', 'after');
  await until('the message on b', () => got.length === 2);
  assert.deepEqual(got, ['before', 'after']);
  c.close();
  await gw.close();
  await a.stop();
  await b.stop();
});

test("a draining server's 503 Retry-After is honoured", async () => {
  const srv = await startLoopcast(['--drain-delay', '10s']);
  srv.proc.kill('SIGTERM'); // draining: upgrades get 503 with Retry-After: 1
  await sleep(200);
  const attempts = [];
  const c = new Client(`ws://${srv.addr}/ws`, { WebSocket, backoffInitial: 10, backoffMax: 20 });
  c.on('error', (e) => { if (e.code === 'handshake') attempts.push(Date.now()); });
  await until('two refused attempts', () => attempts.length >= 2, 10000);
  c.close();
  assert.ok(attempts[1] - attempts[0] >= 950, `retried after ${attempts[1] - attempts[0]} ms, not Retry-After's 1 s`);
  await srv.stop();
});
