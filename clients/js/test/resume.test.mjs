// Reconnect and resume against the real binary: every TCP connection cut
// at once, twice, while a publisher keeps publishing to three rooms; the
// client ends with every message once, in order, and no loss reported.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { Client } from '../index.js';
import { startLoopcast, startProxy, adminPublish, sleep, until } from './harness.mjs';

test('resumes every room through two gateway drops without loss', async () => {
  const srv = await startLoopcast();
  const gw = await startProxy([srv.addr]);
  const rooms = ['feed-a', 'feed-b', 'feed-c'];
  const got = Object.fromEntries(rooms.map((r) => [r, []]));
  const lost = [];
  const states = [];
  const c = new Client(`ws://${gw.addr}/ws`, { WebSocket, backoffInitial: 50, backoffMax: 500 });
  c.on('state', (s) => states.push(s));
  for (const r of rooms) {
    c.subscribe(r, {
      message: (m) => got[r].push(Number(m.data.split(' ')[1])),
      lost: (l) => lost.push(l),
    });
  }
  await until('open', () => c.state === 'open');
  await sleep(100); // subscriptions answered
  const n = 150;
  const publisher = (async () => {
    for (let i = 1; i <= n; i++) {
      for (const r of rooms) await adminPublish(srv.admin, r, `${r} ${i}`);
      await sleep(4);
    }
  })();
  await sleep(200);
  gw.dropAll();
  await sleep(300);
  gw.dropAll();
  await publisher;
  await until('every message', () => rooms.every((r) => got[r].length >= n));
  await sleep(100);
  for (const r of rooms) assert.deepEqual(got[r], Array.from({ length: n }, (_, i) => i + 1), r);
  assert.deepEqual(lost, []);
  assert.ok(states.filter((s) => s === 'reconnecting').length >= 2, `states ${states}`);
  c.close();
  await gw.close();
  await srv.stop();
});

test('publish resolves with the offset; refusals reject with the server code', async () => {
  const srv = await startLoopcast(['--max-message', '100']);
  const c = new Client(`ws://${srv.addr}/ws`, { WebSocket });
  const s = c.subscribe('chat');
  const mine = [];
  s.on('message', (m) => mine.push(m));
  const a = await c.publish('chat', 'hello');
  assert.equal(a.offset, 1);
  assert.match(a.epoch, /^[0-9a-f]{16}$/);
  const b = await c.publish('chat', new Uint8Array([0, 1, 255]));
  assert.equal(b.offset, 2);
  await until('own messages', () => mine.length === 2);
  assert.equal(mine[0].data, 'hello');
  assert.deepEqual([...mine[1].data], [0, 1, 255]);
  assert.equal(mine[1].binary, true);
  await assert.rejects(c.publish('chat', 'x'.repeat(101)), { code: 'too_large' });
  await assert.rejects(c.publish('bad/room', 'x'), { code: 'bad_room' });
  c.close();
  await assert.rejects(c.publish('chat', 'late'), { code: 'closed' });
  await srv.stop();
});

test('publishing while disconnected queues up to maxQueued, then refuses', async () => {
  const srv = await startLoopcast();
  const gw = await startProxy([srv.addr]);
  const c = new Client(`ws://${gw.addr}/ws`, { WebSocket, maxQueued: 2, backoffInitial: 300, backoffMax: 300 });
  await until('open', () => c.state === 'open');
  await gw.close(); // nothing listens: the client stays disconnected
  await until('reconnecting', () => c.state === 'reconnecting');
  const q1 = c.publish('r', '1');
  const q2 = c.publish('r', '2');
  await assert.rejects(c.publish('r', '3'), { code: 'queue_full' });
  c.close();
  await assert.rejects(q1, { code: 'closed' });
  await assert.rejects(q2, { code: 'closed' });
  await srv.stop();
});
