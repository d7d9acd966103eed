// Node's ws client speaking loopcast.v1 (PROTOCOL.md): subscribes to a
// room, publishes a text and a binary message with acknowledgements, and
// prints one JSON line per frame it receives (type, text or base64), then
// closes once it got both messages and both acknowledgements.
import WebSocket from 'ws';

const url = process.argv[2];
const room = process.argv[3];
const ws = new WebSocket(url, ['loopcast.v1']);
ws.binaryType = 'nodebuffer';
let got = 0;
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

ws.on('open', () => {
  out({ protocol: ws.protocol });
  ws.send(`sub 1 ${room}`);
});
ws.on('message', (data, isBinary) => {
  out({ binary: isBinary, data: isBinary ? data.toString('base64') : data.toString('utf8') });
  const text = isBinary ? '' : data.toString('utf8');
  if (text.startsWith('sub 1 ')) {
    ws.send(`pub 2 ${room}\nhéllo from node`);
    ws.send(Buffer.concat([Buffer.from(`pub 3 ${room}\n`), Buffer.from([0, 1, 2, 255])]), { binary: true });
    return;
  }
  if (++got === 4) ws.close(1000, 'done');
});
ws.on('close', (code) => { out({ close: code }); process.exit(0); });
ws.on('error', (err) => { out({ error: String(err) }); process.exit(1); });
setTimeout(() => { out({ error: 'timeout' }); process.exit(1); }, 10000);
