// Presence against the real binary: a watcher sees two users join with
// their info and one leave; after a gateway drop the watch's answer
// reports what changed meanwhile; presence() lists once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import WebSocket from 'ws';
import { Client, LoopcastError } from '../index.js';
import { startLoopcast, startProxy, until } from './harness.mjs';

const SECRET = '0123456789abcdef0123456789abcdef';
const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
function jwt(claims) {
  const head = b64({ alg: 'HS256', typ: 'JWT' }) + '.' + b64(claims);
  return head + '.' + createHmac('sha256', SECRET).update(head).digest('base64url');
}
const as = (user) => async () => jwt({ exp: Math.floor(Date.now() / 1000) + 600, sub: user, info: { name: user.toUpperCase() } });

test('watchPresence: joins, leaves, and what a drop hid', async () => {
  const srv = await startLoopcast(['--jwt-secret', SECRET, '--presence-rooms', 'chat', '--presence-grace', '0s']);
  const gw = await startProxy([srv.addr]);
  const opts = (user) => ({ WebSocket, token: as(user), backoffInitial: 50, backoffMax: 500 });
  const watcher = new Client(`ws://${gw.addr}/ws`, opts('watcher'));
  const changes = [];
  const stop = watcher.watchPresence('chat', (c) => changes.push(c));
  const users = () => (changes.at(-1)?.users ?? []).map((u) => u.user).join(',');
  await until('the first answer', () => changes.length === 1);

  const ana = new Client(`ws://${srv.addr}/ws`, opts('ana'));
  ana.subscribe('chat');
  await until('ana', () => users() === 'ana');
  assert.deepEqual(changes.at(-1).joined, [{ user: 'ana', info: { name: 'ANA' } }]);
  assert.deepEqual(await watcher.presence('chat'), { total: 1, users: [{ user: 'ana', info: { name: 'ANA' } }] });

  gw.dropAll();
  const bo = new Client(`ws://${srv.addr}/ws`, opts('bo'));
  bo.subscribe('chat');
  ana.close();
  await until('bo alone', () => users() === 'bo');
  const joined = changes.slice(1).flatMap((c) => c.joined.map((u) => u.user));
  const left = changes.slice(1).flatMap((c) => c.left);
  assert.deepEqual(joined, ['ana', 'bo']);
  assert.deepEqual(left, ['ana']);

  await assert.rejects(watcher.presence('news'), (e) => e instanceof LoopcastError && e.code === 'presence_off');
  stop();
  watcher.close();
  bo.close();
  await gw.close();
  await srv.stop();
});
