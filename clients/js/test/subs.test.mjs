// Rooms the server subscribes (the token's subs claim) reach the
// application through the 'subscription' event, resume through a drop
// (?since=) without loss, and the admin API's unsubscribe is an 'error'.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import WebSocket from 'ws';
import { Client } from '../index.js';
import { startLoopcast, startProxy, adminPublish, until } from './harness.mjs';

const SECRET = '0123456789abcdef0123456789abcdef';
const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
function jwt(claims) {
  const head = b64({ alg: 'HS256', typ: 'JWT' }) + '.' + b64(claims);
  return head + '.' + createHmac('sha256', SECRET).update(head).digest('base64url');
}

test('a personal room from the token: resumed, then ended by the server', async () => {
  const srv = await startLoopcast(['--jwt-secret', SECRET]);
  const gw = await startProxy([srv.addr]);
  const token = async () => jwt({ exp: Math.floor(Date.now() / 1000) + 600, sub: 'ana', subs: ['user.ana'] });
  const c = new Client(`ws://${gw.addr}/ws`, { WebSocket, token, backoffInitial: 50, backoffMax: 300 });
  const got = [];
  const errors = [];
  let subscriptions = 0;
  c.on('subscription', (s) => {
    subscriptions++;
    assert.equal(s.server, true);
    s.on('message', (m) => got.push(m.data));
    s.on('error', (e) => errors.push(e.code));
  });
  await until('the personal room', () => subscriptions === 1);
  await adminPublish(srv.admin, 'user.ana', 'm1');
  await until('m1', () => got.length === 1);
  gw.dropAll();
  await adminPublish(srv.admin, 'user.ana', 'm2');
  await adminPublish(srv.admin, 'user.ana', 'm3');
  await until('m2 and m3 after the reconnect', () => got.length === 3);
  assert.deepEqual(got, ['m1', 'm2', 'm3']);
  assert.equal(subscriptions, 1); // resumed, not a new subscription
  const r = await fetch(`http://${srv.admin}/users/ana/unsubscribe/user.ana`, { method: 'POST' });
  assert.deepEqual(await r.json(), { connections: 1 });
  await until('the unsubscription', () => errors.length === 1);
  assert.deepEqual(errors, ['unsubscribed']);
  c.close();
  await gw.close();
  await srv.stop();
});
