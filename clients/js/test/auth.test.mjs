// Token refresh: the token callback runs before every connect, so a
// reconnect presents a fresh JWT; a subscription the token's rooms claim
// does not allow is refused with the server's code.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import WebSocket from 'ws';
import { Client } from '../index.js';
import { startLoopcast, startProxy, until } from './harness.mjs';

const SECRET = '0123456789abcdef0123456789abcdef'; // 32 bytes: loopcast refuses shorter HS256 secrets (RFC 7518 §3.2)
const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
function jwt(secret, claims) {
  const head = b64({ alg: 'HS256', typ: 'JWT' }) + '.' + b64(claims);
  return head + '.' + createHmac('sha256', secret).update(head).digest('base64url');
}

test('a fresh token for every connect; refusals reach the subscription', async () => {
  const srv = await startLoopcast(['--jwt-secret', SECRET, '--jwt-leeway', '0s']);
  const gw = await startProxy([srv.addr]);
  let calls = 0;
  const token = async () => {
    calls++;
    return jwt(SECRET, { exp: Math.floor(Date.now() / 1000) + 60, rooms: ['ok-*'] });
  };
  const c = new Client(`ws://${gw.addr}/ws`, { WebSocket, token, backoffInitial: 50, backoffMax: 100 });
  const errors = [];
  c.subscribe('ok-1');
  c.subscribe('secret', { error: (e) => errors.push(e.code) });
  await until('open', () => c.state === 'open');
  await until('the refusal', () => errors.length === 1);
  assert.deepEqual(errors, ['forbidden']);
  gw.dropAll();
  await until('reconnected', () => calls >= 2 && c.state === 'open');
  c.close();
  await gw.close();
  await srv.stop();
});
