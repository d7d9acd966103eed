// Exactly-once publishing: a publish whose outcome is unknown is sent
// again with the same msgid until acknowledged, against a fake
// loopcast.v1 server that answers unknown, drops the connection, refuses
// the retry, then acknowledges.
import test from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket, WebSocketServer } from 'ws';
import { Client } from '../index.js';
import { until } from './harness.mjs';

test('an unknown outcome is retried with the same msgid until acknowledged', async () => {
  const pubs = [];
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', handleProtocols: () => 'loopcast.v1' });
  wss.on('connection', (ws) => {
    ws.on('message', (data) => {
      const line = String(data).split('\n')[0];
      const [op, id, room, msgid] = line.split(' ');
      if (op !== 'pub') return;
      pubs.push(msgid);
      switch (pubs.length) {
        case 1: return ws.send(`err ${id} unknown not acknowledged in time`);
        case 2: return ws.terminate(); // the connection drops with the answer
        case 3: return ws.send(`err ${id} unavailable the stream is not answering`);
        default: return ws.send(`pub ${id} ${room} 00000000000000aa 7`);
      }
    });
  });
  await new Promise((ok) => wss.on('listening', ok));
  const c = new Client(`ws://127.0.0.1:${wss.address().port}/ws`, { WebSocket, backoffInitial: 10, backoffMax: 50 });
  try {
    const ack = await c.publish('r', 'once');
    assert.equal(ack.offset, 7);
    assert.equal(pubs.length, 4);
    assert.ok(pubs[0] && pubs.every((m) => m === pubs[0]), `msgids ${pubs}`);
    // Another publish is another message: another msgid, and a refusal
    // with no unknown before it is final.
    wss.clients.forEach((ws) => ws.removeAllListeners('message'));
    await until('open', () => c.state === 'open');
    const second = new Promise((ok) => {
      wss.clients.forEach((ws) => ws.on('message', (data) => {
        const [, id, , msgid] = String(data).split('\n')[0].split(' ');
        ok(msgid);
        ws.send(`err ${id} unavailable down`);
      }));
    });
    await assert.rejects(c.publish('r', 'two'), { code: 'unavailable' });
    assert.notEqual(await second, pubs[0]);
  } finally {
    c.close();
    wss.close();
  }
});
