// Compile-only: the README's examples against index.d.ts (tsc -p .).
import { Client, LoopcastError, defaults, type Message, type Lost } from '../index.js';

declare const WS: unknown;
const client = new Client('ws://127.0.0.1:8080/ws', { WebSocket: WS, token: async () => 'jwt', maxQueued: defaults.maxQueued });
const sub = client.subscribe('prices.eu', {
  message: (m: Message) => { const s: string | Uint8Array = m.data; void s; void m.offset; },
  lost: (l: Lost) => void l.reason,
});
sub.on('error', (e: LoopcastError) => void e.code);
client.on('state', (s) => { const x: 'connecting' | 'open' | 'reconnecting' | 'closed' = s; void x; });
async function f() {
  const { offset, epoch } = await client.publish('chat', 'hello');
  const n: number = offset;
  const e: string = epoch;
  void n; void e;
  await client.publish('chat', new Uint8Array([1]));
}
void f;
sub.unsubscribe();
client.close();
async function occ() {
  const n: number = await client.occupancy('chat');
  const stop: () => void = client.watchOccupancy('chat', (count: number) => void count);
  stop();
  void n;
}
void occ;
async function pres() {
  const { total, users } = await client.presence('chat');
  const stop = client.watchPresence('chat', (c) => { const u: string[] = c.users.map((x) => x.user); void u; void c.left; void c.joined; });
  stop();
  void total; void users;
}
void pres;
client.on('subscription', (s) => { const server: boolean = s.server; void server; s.on('message', (m) => void m.data); });
