// Types of loopcast-client (index.js). loopcast.v1 is documented in
// PROTOCOL.md of the loopcast repository.

/** Defaults of ClientOptions. */
export declare const defaults: {
  /** ms: the first reconnect waits a random time up to this. 250. */
  readonly backoffInitial: number;
  /** ms: the ceiling that doubles per failed attempt stops here. 15000. */
  readonly backoffMax: number;
  /** Publishes kept while disconnected; one more rejects with 'queue_full'. 100. */
  readonly maxQueued: number;
  /** ms: a publish not acknowledged by then, retries included, rejects with 'timeout'. 30000. */
  readonly ackTimeout: number;
};

export interface ClientOptions {
  /** A WebSocket constructor: the global one in browsers; in Node, `ws`'s default export. */
  WebSocket?: unknown;
  /** Called before every connect; its JWT goes in the `token` query parameter. */
  token?: () => string | Promise<string>;
  backoffInitial?: number;
  backoffMax?: number;
  maxQueued?: number;
  ackTimeout?: number;
}

export type State = 'connecting' | 'open' | 'reconnecting' | 'closed';

/** A room message. `data` is a string for text, a Uint8Array for binary. */
export interface Message {
  room: string;
  epoch: string;
  offset: number;
  data: string | Uint8Array;
  binary: boolean;
}

/** Said when messages were missed and could not be replayed: never silent. */
export interface Lost {
  room: string;
  /** 'epoch_changed' (history lost: restart, another instance) or 'history_passed'. */
  reason: string;
  /** Where the room stands now: live messages follow. */
  epoch: string;
  offset: number;
}

export interface Subscribed {
  room: string;
  epoch: string;
  offset: number;
  /** 'live', 'recovered', 'epoch_changed' or 'history_passed'. */
  status: string;
}

export declare class LoopcastError extends Error {
  /** The server's error code (PROTOCOL.md), or 'queue_full', 'disconnected', 'timeout', 'closed', 'handshake', 'token', 'protocol', 'closed_by_server'. */
  readonly code: string;
}

export declare class Subscription {
  readonly room: string;
  /** Of the last message received (what a reconnect resumes from). */
  readonly epoch: string | null;
  readonly offset: number | null;
  /** The server subscribed it (the token's subs claim, the admin API): resumed with ?since= on reconnect. */
  readonly server: boolean;
  on(event: 'message', fn: (m: Message) => void): () => void;
  on(event: 'subscribed', fn: (s: Subscribed) => void): () => void;
  on(event: 'lost', fn: (l: Lost) => void): () => void;
  on(event: 'error', fn: (e: LoopcastError) => void): () => void;
  unsubscribe(): void;
}

export declare class Client {
  constructor(url: string, options?: ClientOptions);
  readonly state: State;
  subscribe(room: string, handlers?: {
    message?: (m: Message) => void;
    subscribed?: (s: Subscribed) => void;
    lost?: (l: Lost) => void;
    error?: (e: LoopcastError) => void;
  }): Subscription;
  /**
   * Resolves once the room's order placed the message. Exactly once: a
   * publish whose outcome is unknown is sent again with its message id
   * until acknowledged (or ackTimeout: rejects with 'timeout').
   */
  publish(room: string, data: string | ArrayBuffer | ArrayBufferView): Promise<{ room: string; epoch: string; offset: number }>;
  /** Connections subscribed to room on every instance. Rejects with LoopcastError. */
  occupancy(room: string): Promise<number>;
  /**
   * Calls fn with room's occupancy when the watch is answered, on every
   * change (at most once a second) and after each reconnect. Returns a
   * function that stops watching.
   */
  watchOccupancy(room: string, fn: (count: number) => void): () => void;
  /** Users of a presence room on every instance (sorted, capped; total says how many). */
  presence(room: string): Promise<{ total: number; users: PresenceUser[] }>;
  /**
   * Calls fn with the room's users when the watch is answered, on every
   * join or leave (at most once a second) and after each reconnect.
   * Returns a function that stops watching.
   */
  watchPresence(room: string, fn: (change: PresenceChange) => void): () => void;
  close(): void;
  on(event: 'state', fn: (s: State) => void): () => void;
  on(event: 'close', fn: (e: { code: number; reason: string }) => void): () => void;
  /** A room the server subscribed the connection to (the token's subs claim, the admin API). */
  on(event: 'subscription', fn: (s: Subscription) => void): () => void;
  on(event: 'error', fn: (e: LoopcastError) => void): () => void;
}

/** A user of a presence room: its token's sub and info claims. */
export interface PresenceUser {
  user: string;
  info?: unknown;
}

/** A presence watch's report: the users now, who joined and who left. */
export interface PresenceChange {
  room: string;
  users: PresenceUser[];
  joined: PresenceUser[];
  left: string[];
}
