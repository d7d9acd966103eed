// Test harness: the real loopcast binary (TEST_LOOPCAST_BIN) on loopback
// ports, a TCP proxy that can cut every connection at once (as
// Application Gateway does on a configuration update), and an admin
// publisher.
import { spawn } from 'node:child_process';
import net from 'node:net';

export const bin = process.env.TEST_LOOPCAST_BIN;
if (!bin) throw new Error('TEST_LOOPCAST_BIN is not set: run these tests through `go test ./clients/...`');

/** Start loopcast; resolves with {addr, admin, proc, stop()}. */
export function startLoopcast(args = []) {
  return new Promise((resolve, reject) => {
    const proc = spawn(bin, ['--addr', '127.0.0.1:0', '--admin-addr', '127.0.0.1:0', '--publish-rate', '0', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    const t = setTimeout(() => reject(new Error('loopcast did not start:\n' + log)), 10000);
    proc.stderr.on('data', (d) => {
      log += d;
      const m = /msg=serving addr=(\S+) admin=(\S+)/.exec(log);
      if (m && t) {
        clearTimeout(t);
        resolve({
          addr: m[1], admin: m[2], proc, log: () => log,
          stop: () => new Promise((ok) => { if (proc.exitCode !== null) return ok(); proc.once('exit', ok); proc.kill('SIGKILL'); }),
        });
      }
    });
    proc.once('exit', (code) => reject(new Error(`loopcast exited ${code}:\n${log}`)));
  });
}

/** A TCP proxy to backends (tried in turn); dropAll() cuts every connection. */
export function startProxy(backends) {
  const conns = new Set();
  let next = 0;
  const server = net.createServer((client) => {
    const tryConnect = (left) => {
      const [host, port] = backends[next++ % backends.length].split(':');
      const up = net.connect(Number(port), host);
      up.once('error', () => { up.destroy(); if (left > 1) tryConnect(left - 1); else client.destroy(); });
      up.once('connect', () => {
        conns.add(client); conns.add(up);
        client.pipe(up); up.pipe(client);
        const end = () => { client.destroy(); up.destroy(); conns.delete(client); conns.delete(up); };
        client.on('close', end); up.on('close', end);
        client.on('error', end); up.on('error', end);
      });
    };
    tryConnect(backends.length);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({
    addr: `127.0.0.1:${server.address().port}`,
    dropAll: () => { for (const c of conns) c.destroy(); conns.clear(); },
    close: () => new Promise((ok) => { for (const c of conns) c.destroy(); server.close(ok); }),
  })));
}

/** POST /publish/{room} on the admin port; resolves with the JSON answer. */
export async function adminPublish(admin, room, body) {
  const r = await fetch(`http://${admin}/publish/${room}`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body });
  if (r.status !== 202) throw new Error(`publish: ${r.status} ${await r.text()}`);
  return r.json();
}

export const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

export async function until(what, cond, ms = 15000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await sleep(10);
  }
}
