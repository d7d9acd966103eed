// Bun peer: Bun.serve's WebSocket server is uWebSockets; a room is a uWS
// topic and a message reaches every member through server.publish (which,
// unlike ws.publish, includes the sender, as loopcast's rooms do).
// Slow clients: closed once 1 MiB is buffered (loopcast's --max-pending).
const arg = process.argv.indexOf("--addr");
const addr = arg > 0 ? process.argv[arg + 1] : "127.0.0.1:8080";
const colon = addr.lastIndexOf(":");
const hostname = addr.slice(0, colon) || "0.0.0.0";
const port = Number(addr.slice(colon + 1));

const server = Bun.serve({
  hostname,
  port,
  fetch(req, server) {
    const upgrade = (req.headers.get("upgrade") || "").toLowerCase() === "websocket";
    if (!upgrade) return new Response("ok");
    const path = new URL(req.url).pathname;
    let data;
    if (path === "/echo") data = { echo: true };
    else if (path === "/ws") data = { room: "default" };
    else if (path.startsWith("/ws/") && path.length > 4) data = { room: path.slice(4) };
    else return new Response("not found", { status: 404 });
    if (server.upgrade(req, { data })) return;
    return new Response("bad handshake", { status: 400 });
  },
  websocket: {
    maxPayloadLength: 1 << 20, // loopcast's --max-message default
    backpressureLimit: 1 << 20, // loopcast's --max-pending default
    closeOnBackpressureLimit: true,
    idleTimeout: 120,
    // --deflate: permessage-deflate with Bun's shared compressor (one
    // compression per publish), as loopcast compresses once per message.
    perMessageDeflate: process.argv.includes("--deflate"),
    open(ws) {
      if (!ws.data.echo) ws.subscribe(ws.data.room);
    },
    message(ws, msg) {
      if (ws.data.echo) ws.send(msg);
      else server.publish(ws.data.room, msg);
    },
  },
});
console.log(`bun peer listening on ${server.hostname}:${server.port}`);
