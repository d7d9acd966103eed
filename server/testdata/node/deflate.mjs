// Node's ws with permessage-deflate (its default for clients): echoes a
// large text and a large binary message through /echo (ws compresses
// messages over 1 KiB), joins /ws/feed and waits for one room message.
// Prints one JSON object: the negotiated extension, whether each echo
// came back equal, and the length of the room message.
import WebSocket from 'ws';

const base = process.argv[2];
const text = '{"symbol":"EURUSD","bid":1.0842}'.repeat(500);
const bin = Buffer.alloc(40000, 7);
const res = { extensions: '', echoes: [], room: 0 };
const fail = (e) => { console.log(JSON.stringify({ error: String(e) })); process.exit(1); };
setTimeout(() => fail('timeout'), 15000);

const echo = new WebSocket(base + '/echo', { perMessageDeflate: true });
echo.on('error', fail);
echo.on('open', () => {
  res.extensions = echo.extensions;
  echo.send(text);
});
echo.on('message', (data, isBinary) => {
  if (res.echoes.length === 0) {
    res.echoes.push(!isBinary && data.toString() === text);
    echo.send(bin, { binary: true });
    return;
  }
  res.echoes.push(isBinary && Buffer.compare(data, bin) === 0);
  echo.close();
  const feed = new WebSocket(base + '/ws/feed', { perMessageDeflate: true });
  feed.on('error', fail);
  feed.on('message', (d) => {
    res.room = d.length;
    console.log(JSON.stringify(res));
    process.exit(0);
  });
});
