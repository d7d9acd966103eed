// Occupancy against the real binary: a watcher is told the count when it
// watches, on each change, and again after a gateway drop; occupancy()
// answers once; a refusal rejects with the server's code.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { Client, LoopcastError } from '../index.js';
import { startLoopcast, startProxy, until } from './harness.mjs';

test('watchOccupancy follows the count through a gateway drop', async () => {
  const srv = await startLoopcast();
  const gw = await startProxy([srv.addr]);
  const opts = { WebSocket, backoffInitial: 50, backoffMax: 500 };
  const watcher = new Client(`ws://${gw.addr}/ws`, opts);
  const seen = [];
  const stop = watcher.watchOccupancy('lobby', (n) => seen.push(n));
  await until('the first count', () => seen.at(-1) === 0);

  const members = [1, 2, 3].map(() => new Client(`ws://${srv.addr}/ws`, opts));
  for (const m of members) m.subscribe('lobby');
  await until('count 3', () => seen.at(-1) === 3);
  assert.equal(await watcher.occupancy('lobby'), 3);

  const before = seen.length;
  gw.dropAll();
  await until('the count again after the reconnect', () => seen.length > before && seen.at(-1) === 3);
  members[0].close();
  await until('count 2', () => seen.at(-1) === 2);
  for (let i = 1; i < seen.length; i++) {
    // A change is sent only when the count changed; the watch's own
    // answer (after the reconnect) may repeat the count.
    if (seen[i] === seen[i - 1]) assert.ok(i === before, `count ${seen[i]} repeated at ${i}: ${seen}`);
  }

  stop();
  await assert.rejects(watcher.occupancy('bad/room'), (e) => e instanceof LoopcastError && e.code === 'bad_room');
  watcher.close();
  for (const m of members) m.close();
  await gw.close();
  await srv.stop();
});
