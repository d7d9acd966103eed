// loopcast.v1 client (PROTOCOL.md in the loopcast repository): one socket,
// many rooms, reconnect with exponential backoff and full jitter, resume
// of every room from its last offset, publish with acknowledgement. No
// runtime dependencies: it uses the WebSocket constructor it is given
// (browsers: the global one; Node: `ws`).

/** Defaults, documented in README.md and index.d.ts. */
export const defaults = Object.freeze({
  backoffInitial: 250, // ms: the first reconnect waits up to this (full jitter)
  backoffMax: 15000, // ms: the ceiling the wait doubles up to
  maxQueued: 100, // publishes kept while disconnected; beyond: rejected
  ackTimeout: 30000, // ms: a publish not acknowledged by then (retries included) is rejected
});

/** An error the server sent (`err <id> <code> <reason>`), or the client's own. */
export class LoopcastError extends Error {
  constructor(code, message) {
    super(message ? `${code}: ${message}` : code);
    this.name = 'LoopcastError';
    this.code = code;
  }
}

// Close codes after which reconnecting cannot help: the client sent
// something the server refuses (RFC 6455 §7.4.1).
const fatalCloseCodes = new Set([1002, 1003, 1007, 1008, 1009, 1010]);

class Emitter {
  #handlers = new Map();
  on(event, fn) {
    if (!this.#handlers.has(event)) this.#handlers.set(event, new Set());
    this.#handlers.get(event).add(fn);
    return () => this.off(event, fn);
  }
  off(event, fn) { this.#handlers.get(event)?.delete(fn); }
  emit(event, ...args) {
    for (const fn of this.#handlers.get(event) ?? []) {
      try { fn(...args); } catch (e) { queueMicrotask(() => { throw e; }); }
    }
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** One room's subscription; events: message, subscribed, lost, error. */
export class Subscription extends Emitter {
  constructor(client, room) {
    super();
    this.client = client;
    this.room = room;
    this.epoch = null; // of the last message (or the sub reply)
    this.offset = null;
    this.active = true;
    this.id = 0;
    this.server = false; // the server subscribed it: resumed with ?since=
  }
  unsubscribe() {
    if (!this.active) return;
    this.active = false;
    this.client._unsubscribe(this);
  }
}

/**
 * A loopcast.v1 connection. Events: state ('connecting', 'open',
 * 'reconnecting', 'closed'), error (LoopcastError), close ({code, reason}).
 */
export class Client extends Emitter {
  constructor(url, options = {}) {
    super();
    this.url = url;
    this.opts = { ...defaults, ...options };
    this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (!this.WebSocket) throw new TypeError('no WebSocket constructor: pass options.WebSocket (Node: import WebSocket from "ws")');
    this.subs = new Map(); // room -> Subscription
    this.watches = new Map(); // room -> occupancy callback (watched again on every reconnect)
    this.presenceWatches = new Map(); // room -> {fn, users: Map user -> info} (watched again on every reconnect)
    this.waitingOpen = []; // occupancy requests waiting for a connection
    this.byId = new Map(); // command id -> pending (sub or publish)
    this.nextId = 1;
    this.queue = []; // publishes waiting for a connection
    this.msgPrefix = 'j' + Math.floor(Math.random() * 2 ** 52).toString(36); // message ids: prefix-count
    this.msgSeq = 0;
    this.state = 'connecting';
    this.attempt = 0;
    this.closed = false;
    this.ws = null;
    this.timer = null;
    this._connect();
  }

  /** Subscribe to room; returns its Subscription (resumed on every reconnect). */
  subscribe(room, handlers = {}) {
    if (this.subs.has(room)) return this.subs.get(room);
    const s = new Subscription(this, room);
    for (const [event, fn] of Object.entries(handlers)) s.on(event, fn);
    this.subs.set(room, s);
    if (this.state === 'open') this._sendSub(s);
    return s;
  }

  /**
   * Publish data (a string: text; ArrayBuffer or typed array: binary) to
   * room. Resolves with {epoch, offset} once the room's order placed it.
   * Exactly once: each publish carries a message id (PROTOCOL.md's
   * msgid); when its outcome is unknown (the server answered 'unknown',
   * or the connection dropped before the answer) it is sent again with
   * the same id, on this or the next connection, until acknowledged: the
   * server never publishes it twice. Rejects with LoopcastError: the
   * server's code (nothing was published), 'queue_full' while
   * disconnected past maxQueued, 'timeout' (ackTimeout passed; when an
   * attempt's outcome was unknown, it may or may not be published), or
   * 'closed'.
   */
  publish(room, data) {
    return new Promise((resolve, reject) => {
      if (this.closed) return reject(new LoopcastError('closed'));
      const p = { room, data, resolve, reject, msgid: `${this.msgPrefix}-${(this.msgSeq++).toString(36)}`, uncertain: false, retries: 0 };
      p.timer = setTimeout(() => {
        this._forgetPub(p);
        p.reject(new LoopcastError('timeout', p.uncertain
          ? `no acknowledgement in ${this.opts.ackTimeout} ms: it may or may not have been published`
          : `no acknowledgement in ${this.opts.ackTimeout} ms`));
      }, this.opts.ackTimeout);
      if (this.state !== 'open') {
        if (this.queue.length >= this.opts.maxQueued) return reject(new LoopcastError('queue_full', `${this.opts.maxQueued} publishes already wait for a connection`));
        this.queue.push(p);
        return;
      }
      this._sendPub(p);
    });
  }

  /**
   * How many connections are subscribed to room, on every instance.
   * Resolves with the count; rejects with LoopcastError (the server's
   * code, 'disconnected', 'timeout' after ackTimeout, or 'closed').
   */
  occupancy(room) {
    return this._ask(room, false);
  }

  // _ask sends an occupancy (or presence) request once connected and
  // settles with its answer, within ackTimeout.
  _ask(room, presence) {
    return new Promise((resolve, reject) => {
      if (this.closed) return reject(new LoopcastError('closed'));
      const p = { occ: true, presence, room, resolve, reject };
      p.timer = setTimeout(() => {
        if (p.id !== undefined) this.byId.delete(p.id);
        const i = this.waitingOpen.indexOf(p);
        if (i >= 0) this.waitingOpen.splice(i, 1);
        reject(new LoopcastError('timeout', `no answer in ${this.opts.ackTimeout} ms`));
      }, this.opts.ackTimeout);
      if (this.state === 'open') this._sendOccupancy(p);
      else this.waitingOpen.push(p);
    });
  }

  /**
   * Watch room's occupancy on every instance: fn(count) when the server
   * answers the watch, then on every change (at most once a second), and
   * again after each reconnect. Returns a function that stops watching.
   * A second watch of the same room replaces fn.
   */
  watchOccupancy(room, fn) {
    const had = this.watches.has(room);
    this.watches.set(room, fn);
    if (!had && this.state === 'open') this._send(`watch ${this.nextId++} ${room} occupancy`);
    return () => {
      if (this.watches.get(room) !== fn) return;
      this.watches.delete(room);
      if (this.state === 'open') this._send(`unwatch ${this.nextId++} ${room} occupancy`);
    };
  }

  /**
   * Who is in a presence room, on every instance. Resolves with
   * {total, users: [{user, info}]} (sorted, at most the server's
   * presence-max-list); rejects like occupancy() ('presence_off' for a
   * room that lists no users).
   */
  presence(room) {
    return this._ask(room, true);
  }

  /**
   * Watch who comes and goes in a presence room: fn({room, users,
   * joined, left}) when the watch is answered (everyone as joined), on
   * every change (at most once a second) and after each reconnect (what
   * changed meanwhile). users is the list now, sorted; joined [{user,
   * info}], left [user]. Returns a function that stops watching.
   */
  watchPresence(room, fn) {
    const had = this.presenceWatches.has(room);
    const w = { fn, users: had ? this.presenceWatches.get(room).users : new Map() };
    this.presenceWatches.set(room, w);
    if (!had && this.state === 'open') this._send(`watch ${this.nextId++} ${room} presence`);
    return () => {
      if (this.presenceWatches.get(room) !== w) return;
      this.presenceWatches.delete(room);
      if (this.state === 'open') this._send(`unwatch ${this.nextId++} ${room} presence`);
    };
  }

  _sendOccupancy(p) {
    const id = this.nextId++;
    p.id = id;
    this.byId.set(id, p);
    this._send(`${p.presence ? 'presence' : 'occupancy'} ${id} ${p.room}`);
  }

  // _presenceChanged applies a watch's answer (list) or a pres frame
  // (joins, leaves) and reports it.
  _presenceChanged(room, list, joins, leaves) {
    const w = this.presenceWatches.get(room);
    if (!w) return;
    let joined = joins, left = leaves;
    if (list) {
      const now = new Map(list.map((u) => [u.user, u.info]));
      joined = list.filter((u) => !w.users.has(u.user));
      left = [...w.users.keys()].filter((u) => !now.has(u));
      w.users = now;
    } else {
      for (const u of joins) w.users.set(u.user, u.info);
      for (const u of leaves) w.users.delete(u);
    }
    const users = [...w.users].map(([user, info]) => (info === undefined ? { user } : { user, info }));
    users.sort((a, b) => (a.user < b.user ? -1 : a.user > b.user ? 1 : 0));
    w.fn({ room, users, joined, left: [...left].sort() });
  }

  /** Close for good: no reconnect; pending publishes reject with 'closed'. */
  close() {
    this.closed = true;
    clearTimeout(this.timer);
    this._failPending('closed');
    for (const p of [...this.queue.splice(0), ...this.waitingOpen.splice(0)]) {
      clearTimeout(p.timer);
      p.reject(new LoopcastError('closed'));
    }
    if (this.ws) this.ws.close(1000);
    this._setState('closed');
  }

  _setState(s) {
    if (this.state === s) return;
    this.state = s;
    this.emit('state', s);
  }

  async _connect() {
    if (this.closed) return;
    let url = this.url;
    if (this.opts.token) {
      try {
        const t = await this.opts.token();
        if (t) url += (url.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(t);
      } catch (e) {
        this.emit('error', new LoopcastError('token', String(e)));
        return this._retry();
      }
    }
    if (this.closed) return;
    // Rooms the server subscribed (the token's subs claim): it resumes
    // them from where they stand.
    // A server subscription not given again on the last connection (the
    // admin API's, which lasts for one connection) is gone.
    for (const s of [...this.subs.values()]) {
      if (s.server && !s.confirmed) this.subs.delete(s.room);
    }
    const since = [...this.subs.values()].filter((s) => s.server && s.epoch !== null).map((s) => `${s.room}:${s.epoch}:${s.offset}`).sort();
    for (const s of this.subs.values()) if (s.server) s.confirmed = false;
    if (since.length) url += (url.includes('?') ? '&' : '?') + 'since=' + since.join(',');
    let ws;
    try {
      ws = new this.WebSocket(url, ['loopcast.v1']);
    } catch (e) {
      this.emit('error', new LoopcastError('connect', String(e)));
      return this._retry();
    }
    this.ws = ws;
    ws.binaryType = 'arraybuffer';
    let retryAfter = 0;
    // Node's ws reports the refused handshake's status: honour a draining
    // server's 503 Retry-After (browsers cannot see it; backoff applies).
    if (typeof ws.on === 'function') {
      ws.on('unexpected-response', (req, res) => {
        const ra = Number(res.headers['retry-after']);
        if (res.statusCode === 503 && ra > 0) retryAfter = ra * 1000;
        this.emit('error', new LoopcastError('handshake', `HTTP ${res.statusCode}`));
        res.resume();
        ws.terminate(); // ws then closes the socket, with close 1006
      });
    }
    ws.onopen = () => {
      if (ws.protocol !== 'loopcast.v1') {
        this.emit('error', new LoopcastError('protocol', `server selected ${JSON.stringify(ws.protocol)}, not loopcast.v1`));
        ws.close(1000);
        return;
      }
      this.attempt = 0;
      this._setState('open');
      for (const s of this.subs.values()) if (!s.server) this._sendSub(s);
      for (const room of this.watches.keys()) this._send(`watch ${this.nextId++} ${room} occupancy`);
      for (const room of this.presenceWatches.keys()) this._send(`watch ${this.nextId++} ${room} presence`);
      for (const p of this.waitingOpen.splice(0)) this._sendOccupancy(p);
      for (const p of this.queue.splice(0)) this._sendPub(p);
    };
    ws.onmessage = (e) => this._onFrame(e.data);
    ws.onerror = () => {};
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this._failPending('disconnected');
      this.emit('close', { code: e.code, reason: e.reason });
      if (this.closed) return;
      if (fatalCloseCodes.has(e.code)) {
        this.emit('error', new LoopcastError('closed_by_server', `${e.code} ${e.reason}`));
        this.closed = true;
        return this._setState('closed');
      }
      this._retry(retryAfter, e.code);
    };
  }

  // _retry waits before the next attempt: full jitter over an exponential
  // ceiling; a draining server (1001, 1012) is left a moment, a 503's
  // Retry-After is honoured as a floor.
  _retry(floor = 0, code = 0) {
    if (this.closed) return;
    this._setState('reconnecting');
    const ceiling = Math.min(this.opts.backoffMax, this.opts.backoffInitial * 2 ** this.attempt);
    this.attempt++;
    let wait = Math.random() * ceiling;
    if (code === 1013) wait = Math.max(wait, this.opts.backoffInitial); // try again later
    wait = Math.max(wait, floor);
    this.timer = setTimeout(() => this._connect(), wait);
  }

  _send(data) { this.ws.send(data); }

  _sendSub(s) {
    const id = this.nextId++;
    s.id = id;
    this.byId.set(id, { sub: s });
    let cmd = `sub ${id} ${s.room}`;
    if (s.epoch !== null && s.offset !== null) cmd += ` ${s.epoch} ${s.offset}`;
    this._send(cmd);
  }

  _unsubscribe(s) {
    this.subs.delete(s.room);
    if (this.state === 'open') {
      const id = this.nextId++;
      this.byId.set(id, { unsub: s });
      this._send(`unsub ${id} ${s.room}`);
    }
  }

  _sendPub(p) {
    const id = this.nextId++;
    p.id = id;
    this.byId.set(id, p);
    const line = `pub ${id} ${p.room} ${p.msgid}\n`;
    if (typeof p.data === 'string') {
      this._send(line + p.data);
    } else {
      const body = p.data instanceof ArrayBuffer ? new Uint8Array(p.data) : new Uint8Array(p.data.buffer, p.data.byteOffset, p.data.byteLength);
      const head = encoder.encode(line);
      const frame = new Uint8Array(head.length + body.length);
      frame.set(head);
      frame.set(body, head.length);
      this._send(frame);
    }
  }

  _failPending(code) {
    for (const [id, p] of this.byId) {
      this.byId.delete(id);
      if (!p.resolve) continue;
      if (p.occ) {
        clearTimeout(p.timer);
        p.reject(new LoopcastError(code));
        continue;
      }
      if (code === 'disconnected') {
        // Dropped before the answer: unknown whether it was published.
        // Sent again, with its msgid, on the next connection.
        p.uncertain = true;
        this.queue.unshift(p);
        continue;
      }
      clearTimeout(p.timer);
      p.reject(new LoopcastError(code));
    }
  }

  // _retryPub sends p again with its msgid after a short random wait
  // (doubling from 100 ms to 2 s), or queues it for the next connection.
  _retryPub(p) {
    const wait = Math.random() * Math.min(2000, 100 * 2 ** p.retries++);
    p.retryTimer = setTimeout(() => {
      p.retryTimer = null;
      if (this.closed) return;
      if (this.state === 'open') this._sendPub(p);
      else this.queue.push(p);
    }, wait);
  }

  _forgetPub(p) {
    if (p.id !== undefined && this.byId.get(p.id) === p) this.byId.delete(p.id);
    clearTimeout(p.retryTimer);
    const i = this.queue.indexOf(p);
    if (i >= 0) this.queue.splice(i, 1);
  }

  _onFrame(data) {
    let line, body, binary = false;
    if (typeof data === 'string') {
      const i = data.indexOf('\n');
      line = i < 0 ? data : data.slice(0, i);
      body = i < 0 ? '' : data.slice(i + 1);
    } else {
      const b = new Uint8Array(data);
      const i = b.indexOf(10);
      line = decoder.decode(i < 0 ? b : b.subarray(0, i));
      body = i < 0 ? new Uint8Array(0) : b.slice(i + 1);
      binary = true;
    }
    const f = line.split(' ');
    switch (f[0]) {
      case 'msg': return this._onMsg(f, body, binary);
      case 'sub': return this._onSub(f);
      case 'pub': return this._onPub(f);
      case 'unsub': return this._onUnsub(f);
      case 'occupancy': return this._onOccupancy(f);
      case 'presence': return this._onPresence(f, body);
      case 'pres': {
        if (f.length !== 2) return;
        const ev = JSON.parse(typeof body === 'string' ? body : decoder.decode(body));
        return this._presenceChanged(f[1], null, ev.join, ev.leave);
      }
      case 'watch':
        if (f.length === 6 && f[3] === 'presence') return this._presenceChanged(f[2], JSON.parse(typeof body === 'string' ? body : decoder.decode(body)));
        if (f.length === 5) this.watches.get(f[2])?.(Number(f[4]));
        return;
      case 'occ': if (f.length === 3) this.watches.get(f[1])?.(Number(f[2])); return;
      case 'err': return this._onErr(f);
    }
  }

  _onMsg(f, body, binary) {
    const [, room, epoch, off] = f;
    const s = this.subs.get(room);
    if (!s) return;
    const offset = Number(off);
    if (s.epoch === epoch && s.offset !== null && offset <= s.offset) return; // seen already
    if (s.epoch !== null && s.epoch !== epoch) s.emit('lost', { room, reason: 'epoch_changed', epoch, offset });
    s.epoch = epoch;
    s.offset = offset;
    s.emit('message', { room, epoch, offset, data: body, binary });
  }

  _onSub(f) {
    const [, id, room, epoch, off, status] = f;
    const p = this.byId.get(Number(id));
    this.byId.delete(Number(id));
    let s = this.subs.get(room);
    if (id === '0' && (!s || s.server)) {
      // The server subscribed the connection (the token's subs claim, the
      // admin API), or resumed such a room: a 'subscription' event gives
      // the application the Subscription before its first message.
      if (!s) {
        s = new Subscription(this, room);
        s.server = true;
        this.subs.set(room, s);
        this.emit('subscription', s);
      }
      s.confirmed = true;
    } else if (!s || (p && p.sub !== s)) return;
    const offset = Number(off);
    const resumed = s.epoch !== null;
    if (status !== 'recovered' && resumed) {
      // Never silent: the application learns it missed messages.
      s.emit('lost', { room, reason: status, epoch, offset });
    }
    if (status !== 'recovered' || !resumed) {
      s.epoch = epoch;
      s.offset = offset;
    }
    s.emit('subscribed', { room, epoch, offset, status });
  }

  _onUnsub(f) {
    const [, id, room] = f;
    this.byId.delete(Number(id));
    if (id !== '0') return;
    // The server ended the subscription (the admin API).
    const s = this.subs.get(room);
    if (!s) return;
    this.subs.delete(room);
    s.active = false;
    s.emit('error', new LoopcastError('unsubscribed', 'the server ended the subscription'));
  }

  _onPub(f) {
    const [, id, room, epoch, off] = f;
    const p = this.byId.get(Number(id));
    if (!p || !p.resolve) return;
    this.byId.delete(Number(id));
    clearTimeout(p.timer);
    p.resolve({ room, epoch, offset: Number(off) });
  }

  _onOccupancy(f) {
    const [, id, , count] = f;
    const p = this.byId.get(Number(id));
    if (!p?.occ) return;
    this.byId.delete(Number(id));
    clearTimeout(p.timer);
    p.resolve(Number(count));
  }

  _onPresence(f, body) {
    const [, id, , total] = f;
    const p = this.byId.get(Number(id));
    if (!p?.presence) return;
    this.byId.delete(Number(id));
    clearTimeout(p.timer);
    p.resolve({ total: Number(total), users: JSON.parse(typeof body === 'string' ? body : decoder.decode(body)) });
  }

  _onErr(f) {
    const [, id, code, ...reason] = f;
    const err = new LoopcastError(code, reason.join(' '));
    const p = this.byId.get(Number(id));
    this.byId.delete(Number(id));
    if (p?.occ) {
      clearTimeout(p.timer);
      return p.reject(err);
    }
    if (p?.resolve) {
      if (code === 'unknown' || (code === 'unavailable' && p.uncertain)) {
        // Unknown: send it again with the same msgid. Unavailable after
        // an unknown: only the retry was refused; the first may be in.
        p.uncertain = true;
        return this._retryPub(p);
      }
      clearTimeout(p.timer);
      return p.reject(err);
    }
    if (p?.sub) {
      if ((code === 'offset_ahead' || code === 'unavailable') && this.subs.get(p.sub.room) === p.sub) {
        // The instance has not caught up with the cluster log yet (a
        // failover): subscribe again shortly, from the same position.
        const ws = this.ws;
        setTimeout(() => { if (this.ws === ws && this.state === 'open' && this.subs.get(p.sub.room) === p.sub) this._sendSub(p.sub); }, 500);
        return;
      }
      this.subs.delete(p.sub.room);
      p.sub.active = false;
      return p.sub.emit('error', err);
    }
    this.emit('error', err);
  }
}
