// Package peers holds the peer servers loopcast is benchmarked against.
//
// Each peer lives in its own directory as one small main package (or, for
// Bun, one script) serving the same routes as loopcast:
//
//	GET /echo      WebSocket upgrade: every data message comes back with its opcode
//	GET /ws/{room} WebSocket upgrade: every member of {room} gets every message
//	GET /ws        the room "default"
//	any other GET  200 "ok" (health)
//
// This module has its own go.mod so the server's module does not carry the
// peers' dependencies (coder/websocket keeps its comparisons in
// internal/thirdparty for the same reason). bench/run builds and runs them.
package peers
