// Package wsclient is the load generator's minimal WebSocket client
// (RFC 6455): a hand-written handshake, masked client frames written from a
// reused buffer, and frames read in place from a reused buffer, so that a
// message costs the load generator no allocation and one goroutine per
// connection stays cheap at tens of thousands of connections.
//
// It is a measuring tool, not a general client: it dials with a chosen local
// address (to spread sockets over 127.0.0.x), answers pings and closes, and
// reports what the server did (handshake status, close code) as typed errors.
package wsclient
